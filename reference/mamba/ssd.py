"""Mamba-2's state space duality, SSD (Dao & Gu 2024, "Transformers are SSMs", arXiv:2405.21060).

Per batch b and head h, with a scalar decay per step and head, a_t = exp(dt_t A):

    h_t = a_t h_{t-1} + dt_t x_t B_t^T          h: (P, N)
    y_t = h_t C_t

x (B, T, H, P), dt (B, T, H), A (H,), B and C (B, T, G, N) with G dividing H (head h reads
group h // (H / G), as ``mamba_chunk_scan_combined``), state (B, H, P, N). dt is used as given
(already positive: no bias, no softplus here). A is expected negative; nothing enforces it.

The decays reach the forms in one of two ways, and every form runs one code path for both:

- ``A`` given (float64): each form holds log a_t = dt_t A and exponentiates segment sums, as
  ``ssd_minimal_discrete`` does;
- ``decay=`` given (B, T, H), with ``A=None``: each form holds a_t itself and multiplies.
  Rational decays make this exact: when any argument is an object array, every argument is
  converted to ``fractions.Fraction`` (floats exactly) and the result is a Fraction array.

NaN in any input propagates to the outputs it reaches; it is not checked for.
"""

from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, finite_real, positive_int

# ----------------------------------------------------------------------------- checks


def _exact_if_any_object(**arrays):
    """All arrays as Fraction object arrays if any is an object array, else unchanged."""
    if not any(a is not None and a.dtype == object for a in arrays.values()):
        return arrays
    return {n: None if a is None else as_fractions(n, a) for n, a in arrays.items()}


# ----------------------------------------------------------------------------- segment decays


def segsum(x):
    """Stable segment sums along the last axis: (..., T) -> (..., T, T).

        out[..., i, j] = sum_{j < r <= i} x[..., r]   for j <= i,   -inf above the diagonal

    so ``exp(segsum(log a))[i, j] = prod_{j < r <= i} a_r``, the 1-semiseparable mask L.
    Matches ``state-spaces/mamba: mamba_ssm/modules/ssd_minimal.py segsum``: each entry is a
    cumulative sum of masked increments, never a difference of two prefix sums, and the
    masked entries are -inf before any exp, so large |A dt| underflows to 0 instead of
    overflowing (the failure of ``segsum_unstable``, mamba issues #352 and #558).
    """
    x = _segment_input("x", x, exact_ok=False)
    n = x.shape[-1]
    out = np.full(x.shape[:-1] + (n, n), -np.inf, dtype=x.dtype)
    for i in range(n):  # row i = row i-1 + x_i: each column a running sum, one row at a time
        if i:
            out[..., i, :i] = out[..., i - 1, :i] + x[..., i, None]
        out[..., i, i] = 0
    return out


def _segment_input(name, x, exact_ok):
    """x (..., T) as float64 or complex128 (or, with exact_ok, an object array as it is)."""
    x = as_real(name, x, complex_ok=True, exact_ok=exact_ok)
    if x.ndim < 1:
        raise ValueError(f"{name} must have shape (..., T), at least one axis; got shape {x.shape}")
    return x


def segprod(a):
    """Segment products along the last axis: (..., T) -> (..., T, T).

        out[..., i, j] = prod_{j < r <= i} a[..., r]   for j <= i,   0 above the diagonal

    ``segsum`` with (+, 0, -inf) replaced by (*, 1, 0), so no division and no log: exact on
    Fraction object arrays, and ``segprod(exp(x)) == exp(segsum(x))`` up to rounding.
    """
    a = _segment_input("a", a, exact_ok=True)
    n = a.shape[-1]
    out = np.zeros(a.shape + (n,), dtype=a.dtype)  # an object array's zeros are the int 0
    for i in range(n):  # row i = row i-1 times a_i, as segsum's rows
        if i:
            out[..., i, :i] = out[..., i - 1, :i] * a[..., i, None]
        out[..., i, i] = 1
    return out


class _Decay(NamedTuple):
    """How the per-step decays are held: log a_t (float64) or a_t itself (float64 or exact)."""

    v: np.ndarray  # (B, T, H)
    one: object  # v of a step that does not decay
    cum: Callable  # running sum / product of v along an axis
    linear: Callable  # v -> a
    seg: Callable  # (..., L) -> (..., L, L) prod_{s < r <= t} a_r, 0 above the diagonal


class _SSD(NamedTuple):
    xdt: np.ndarray  # dt_t x_t, (B, T, H, P)
    B: np.ndarray  # per head, (B, T, H, N)
    C: np.ndarray
    decay: _Decay
    h0: np.ndarray  # (B, H, P, N)


def _prepare(x, dt, A, B, C, decay, initial_state):
    exact_ok = decay is not None
    x = as_real("x", x, exact_ok=exact_ok)
    batch, T, H, P = check_layout("x", x, "(B, T, H, P)")
    dt = as_real("dt", dt, exact_ok=exact_ok)
    check_shape("dt", dt, (batch, T, H), "(B, T, H)", match="x")
    Bm = as_real("B", B, exact_ok=exact_ok)
    G, N = check_layout("B", Bm, "(B, T, G, N)")[2:]
    check_shape("B", Bm, (batch, T, G, N), "(B, T, G, N)", match="x")
    if H % G:
        raise ValueError(f"B has G={G} groups, which must divide the H={H} heads of x")
    Cm = as_real("C", C, exact_ok=exact_ok)
    check_shape("C", Cm, (batch, T, G, N), "(B, T, G, N)", match="B")
    if A is None and decay is None:
        raise ValueError("A or decay must be given: give exactly one of A (H,) and decay (B, T, H); got neither")
    if A is not None and decay is not None:
        raise ValueError("A and decay are exclusive: give exactly one of A (H,) and decay (B, T, H); got both")
    if decay is None:
        A = as_real("A", A)
        check_shape("A", A, (H,), "(H,)", match="x")
    else:
        decay = as_real("decay", decay, exact_ok=True)
        check_shape("decay", decay, (batch, T, H), "(B, T, H)", match="x")
    if initial_state is not None:
        initial_state = as_real("initial_state", initial_state, exact_ok=exact_ok)
        check_shape("initial_state", initial_state, (batch, H, P, N), "(B, H, P, N)", match="x and B")
    arrays = _exact_if_any_object(x=x, dt=dt, B=Bm, C=Cm, decay=decay, initial_state=initial_state)
    x, dt, Bm, Cm, decay, h0 = arrays.values()
    if h0 is None:
        h0 = np.zeros((batch, H, P, N), dtype=x.dtype)
    if decay is None:  # log space, as ssd_minimal_discrete
        d = _Decay(dt * A, 0.0, np.cumsum, np.exp, lambda v: np.exp(segsum(v)))
    else:  # the decays themselves: exact on Fractions
        d = _Decay(decay, 1, np.cumprod, lambda v: v, segprod)
    r = H // G  # head h reads group h // r
    return _SSD(x * dt[..., None], np.repeat(Bm, r, axis=2), np.repeat(Cm, r, axis=2), d, h0)


# ----------------------------------------------------------------------------- forms


def ssd_recurrent(x, dt, A, B, C, *, decay=None, initial_state=None, return_state=False):
    """SSD one step at a time (the definition):

        h_t = a_t h_{t-1} + dt_t x_t B_t^T,   y_t = h_t C_t,   a_t = exp(dt_t A) or decay[:, t]

    Returns y (B, T, H, P), and the final state (B, H, P, N) if return_state.
    Dao & Gu 2024, the SSM recurrence with A a scalar times identity per head; the recurrence
    that ``state-spaces/mamba: mamba_ssm/modules/ssd_minimal.py ssd_minimal_discrete`` computes
    when called, as its test does, with ``X * dt`` and ``A * dt``.
    """
    check_bool("return_state", return_state)
    s = _prepare(x, dt, A, B, C, decay, initial_state)
    a = s.decay.linear(s.decay.v)
    h, ys = s.h0, [s.xdt[:, :0]]  # T = 0: an empty output
    for t in range(s.xdt.shape[1]):
        h = a[:, t, :, None, None] * h + s.xdt[:, t, :, :, None] * s.B[:, t, :, None, :]
        ys.append(np.einsum("bhpn,bhn->bhp", h, s.C[:, t])[:, None])
    y = np.concatenate(ys, axis=1)
    return (y, h) if return_state else y


def ssd_quadratic(x, dt, A, B, C, *, decay=None):
    """SSD as masked attention (the dual form), from a zero state:

        Y = (L o C B^T) (dt X),   L[t, s] = prod_{s < r <= t} a_r (0 for s > t)

    per batch and head, with L = exp(segsum(dt A)) (or segprod(decay)).
    Dao & Gu 2024, the quadratic (attention-like) mode of SSD; ``ssd_minimal_discrete`` step 1
    over a single chunk of length T (``state-spaces/mamba: mamba_ssm/modules/ssd_minimal.py``).
    """
    s = _prepare(x, dt, A, B, C, decay, None)
    L = s.decay.seg(np.moveaxis(s.decay.v, 1, -1))  # (B, H, T, T)
    return _masked_products(s.C, s.B, L, s.xdt)


def _masked_products(C, B, L, X):
    """(L o C B^T) X per head: C, B (..., T, H, N), L (..., H, T, S), X (..., S, H, P) -> (..., T, H, P).

    Two matrix products (the sum over N, then over S), not one four-operand einsum: NumPy's
    einsum would loop over T S N P per head, minutes at T = 4096; matmul also keeps Fractions.
    """
    def heads_first(a):  # (..., T, H, .) -> (..., H, T, .)
        return np.swapaxes(a, -3, -2)

    scores = heads_first(C) @ np.swapaxes(heads_first(B), -1, -2)  # (..., H, T, S)
    return np.swapaxes((scores * L) @ heads_first(X), -3, -2)


def ssd_chunked(x, dt, A, B, C, *, chunk_size, decay=None, initial_state=None, return_state=False):
    """SSD by chunks of length Q: the four steps of ``ssd_minimal_discrete``.

        1. diagonal blocks:    Y_diag = (L_c o C_c B_c^T) (dt X)_c           within each chunk
        2. chunk states:       S_c = sum_s (prod_{s < r < end} a_r) (dt x_s) B_s^T
        3. between chunks:     h_c = sum_{c' <= c} (prod of chunk decays c' < k <= c) S_{c'},
                               with the initial state as chunk -1
        4. state to output:    Y_off[t] = (prod_{start <= r <= t} a_r) h_{c-1} C_t

    Matches ``state-spaces/mamba: mamba_ssm/modules/ssd_minimal.py ssd_minimal_discrete``
    (Listing 1 of Dao & Gu 2024).
    Differences: any chunk_size >= 1 is valid: T is padded to a multiple of Q with steps that
    neither decay nor add (a = 1, x = 0), and the padded outputs are dropped, so the final
    state is exact; step 2 reads the decays to the chunk end off step 1's segment matrix instead
    of subtracting prefix sums (no cancellation, no division in exact mode); head h uses
    group h // (H / G) of B and C (ssd_minimal's einsum sums over groups, right only for G = 1).
    """
    check_bool("return_state", return_state)
    Q = positive_int("chunk_size", chunk_size)
    s = _prepare(x, dt, A, B, C, decay, initial_state)
    d = s.decay
    batch, T, H, P = s.xdt.shape
    n = -(-T // Q)

    def chunks(a, fill):  # (B, T, ...) -> (B, n, Q, ...), padded with `fill`
        pad = np.full((batch, n * Q - T) + a.shape[2:], fill, dtype=a.dtype)
        return np.concatenate([a, pad], axis=1).reshape((batch, n, Q) + a.shape[2:])

    X, Bc, Cc = chunks(s.xdt, 0), chunks(s.B, 0), chunks(s.C, 0)
    v = np.moveaxis(chunks(d.v, d.one), 3, 1)  # (B, H, n, Q)
    ones = np.full((batch, H, 1), d.one, dtype=v.dtype)

    # 1. intra-chunk outputs (diagonal blocks)
    L = d.seg(v)  # (B, H, n, Q, Q)
    Y_diag = _masked_products(Cc, Bc, np.moveaxis(L, 1, 2), X)
    # 2. state of each chunk from its own inputs (B terms)
    states = np.einsum("bclhn,bhcl,bclhp->bchpn", Bc, L[..., -1, :], X)
    # 3. inter-chunk recurrence: states at chunk boundaries (A terms)
    states = np.concatenate([s.h0[:, None], states], axis=1)
    decay_chunk = d.seg(np.concatenate([ones, d.cum(v, axis=-1)[..., -1]], axis=-1))
    states = np.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final_state = states[:, :-1], states[:, -1]
    # 4. contribution of the incoming state to each output (C terms)
    Y_off = np.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states, d.linear(d.cum(v, axis=-1)))

    y = (Y_diag + Y_off).reshape(batch, n * Q, H, P)[:, :T]
    return (y, final_state) if return_state else y


def rms_norm_gated(x, z, weight, *, eps=1e-6, group_size=None, norm_before_gate=False, bias=None):
    """Mamba-2's gated RMSNorm over the last axis, in groups of group_size channels:

        g = silu(z) = z sigmoid(z)
        norm(x) = x / sqrt(mean_group(x^2) + eps) * weight (+ bias)
        out = norm(x * g)       if not norm_before_gate   (Mamba2's setting)
        out = norm(x) * g       if norm_before_gate

    x and z (..., F), weight and bias (F,), group_size dividing F (None: one group of F).
    z=None skips the gate. Matches ``state-spaces/mamba: mamba_ssm/ops/triton/layernorm_gated.py
    rms_norm_ref`` (the reference of its ``RMSNorm``, imported by ``Mamba2`` as
    ``RMSNormGated``). Differences: float64 instead of float32 upcast, no cast back to the
    input dtype; the default norm_before_gate=False is ``Mamba2``'s (rms_norm_ref's is True).
    """
    check_bool("norm_before_gate", norm_before_gate)
    eps = finite_real("eps", eps, ">= 0")
    x = as_real("x", x)
    if x.ndim < 1 or x.shape[-1] == 0:
        raise ValueError(f"x must have shape (..., F) with F >= 1; got shape {x.shape}")
    F = x.shape[-1]
    weight = as_real("weight", weight)
    check_shape("weight", weight, (F,), "(F,)", match="x")
    if bias is not None:
        bias = as_real("bias", bias)
        check_shape("bias", bias, (F,), "(F,)", match="x")
    g = F if group_size is None else positive_int("group_size", group_size)
    if F % g:
        raise ValueError(f"group_size must divide the last axis F={F} of x; got {g}")
    if z is not None:
        z = as_real("z", z)
        check_shape("z", z, x.shape, "(..., F)", match="x")
        gate = z * expit(z)
        if not norm_before_gate:
            x = x * gate
    grouped = x.reshape(x.shape[:-1] + (F // g, g))
    rstd = 1 / np.sqrt(np.mean(grouped**2, axis=-1, keepdims=True) + eps)
    out = (grouped * rstd).reshape(x.shape) * weight
    if bias is not None:
        out = out + bias
    if z is not None and norm_before_gate:
        out = out * gate
    return out
