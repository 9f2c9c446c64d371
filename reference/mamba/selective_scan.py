"""Mamba's selective scan (Gu & Dao 2023, "Mamba", arXiv:2312.00752), batch-first.

Per batch b and channel d, with state x (B, D, N):

    dt = softplus(delta + delta_bias)      (softplus and bias optional)
    x_t = exp(dt_t A) * x_{t-1} + dt_t B_t u_t       ZOH for A, Euler for B (elementwise in N)
    y_t = C_t . x_t                         2 Re(C_t . x_t) when A is complex
    out_t = (y_t + D u_t) * silu(z_t)      (D and z optional)

u, delta, z (B, T, D); A (D, N) real or complex; D, delta_bias (D,). B and C each (D, N)
(time-invariant), (B, T, N) (shared by all channels) or (B, T, G, N) (G groups dividing D;
channel d reads group d // (D / G)).

Matches ``state-spaces/mamba: mamba_ssm/ops/selective_scan_interface.py selective_scan_ref``.
Differences: batch-first layout (u is (B, T, D), not (B, D, L); the adapter lives in
``seqcheck.equiv``); float64 / complex128 instead of float32 / complex64; an optional initial
state; no ``cu_seqlens``. With complex A, B and C may be complex in every layout and are
passed as complex arrays: selective_scan_ref's time-varying complex B (B, N, 2L), real storage
with (re, im) interleaved along time, is the adapter's business; a real B or C with complex A is
used as complex with zero imaginary part; complex B or C with real A is a TypeError. The
2 Re(.) is selective_scan_ref's (and the CUDA kernel's): a complex mode stands for itself and
its conjugate. softplus is torch's, ``log1p(exp(x))`` for x <= 20 and x above 20.
NaN in any input propagates to the outputs it reaches; it is not checked for.
"""

from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_bool, check_layout, check_pair, check_rng, check_shape, positive_int
from .ssd import segsum


def scan_combine(left, right):
    """The selective scan's associative operator on pairs (a, b), left earlier in time:

        (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2)

    (x -> a2 (a1 x + b1) + b2 is the composition of the two affine steps.) Elementwise on
    arrays or scalars of any numeric type (Fractions included); Blelloch 1990, "Prefix sums and
    their applications", as used by the Mamba paper's parallel scan.
    """
    def numbers(name, pair):
        return tuple(as_real(f"{name}[{i}]", x, complex_ok=True, exact_ok=True)
                     for i, x in enumerate(check_pair(name, pair)))

    return _combine(numbers("left", left), numbers("right", right))


def _combine(left, right):
    (a1, b1), (a2, b2) = left, right
    return a1 * a2, a2 * b1 + b2


def associative_scan(a, b, *, tree="balanced", rng=None):
    """Inclusive prefixes of ``scan_combine`` along axis 1 (time, batch-first (B, T, ...)).

        (A_t, H_t) = (a_0, b_0) o (a_1, b_1) o ... o (a_t, b_t)

    so H_t solves h_t = a_t h_{t-1} + b_t from h_{-1} = 0 and A_t = prod_{r <= t} a_r.
    Evaluated as a binary tree: a range is split in two, each half scanned, and the left half's
    total combined into every prefix of the right half. ``tree`` chooses the split:
    "balanced" (middle; depth log T), "sequential" (before the last element: the left fold
    (((e0 o e1) o e2) ...), depth T) or "random" (uniform split points drawn from ``rng``, a
    numpy Generator). In exact arithmetic every tree gives the same result (associativity).
    Arrays are used in their own dtype (object arrays of Fractions stay exact).
    """
    if tree not in ("balanced", "sequential", "random"):
        raise ValueError(f"tree must be 'balanced', 'sequential' or 'random'; got {tree!r}")
    if tree == "random" or rng is not None:
        if tree == "random" and rng is None:
            raise TypeError("rng must be a numpy.random.Generator or an int seed >= 0 for tree='random'; got None")
        rng = check_rng("rng", rng)
    a = as_real("a", a, complex_ok=True, exact_ok=True)
    b = as_real("b", b, complex_ok=True, exact_ok=True)
    if a.ndim < 2:
        raise ValueError(f"a must have shape (B, T, ...); got shape {a.shape}")
    check_shape("b", b, a.shape, "(B, T, ...)", match="a")
    split = {
        "balanced": lambda n: n // 2,
        "sequential": lambda n: n - 1,
        "random": lambda n: int(rng.integers(1, n)),
    }[tree]

    def scan(a, b):
        n = a.shape[1]
        if n <= 1:  # one step, or none (T = 0)
            return a, b
        m = split(n)
        (la, lb), (ra, rb) = scan(a[:, :m], b[:, :m]), scan(a[:, m:], b[:, m:])
        ra, rb = _combine((la[:, -1:], lb[:, -1:]), (ra, rb))
        return np.concatenate([la, ra], axis=1), np.concatenate([lb, rb], axis=1)

    return scan(a, b)


class _Scan(NamedTuple):
    dtA: np.ndarray  # dt_t A, (B, T, D, N), complex with A
    dBu: np.ndarray  # dt_t B_t u_t, (B, T, D, N)
    h0: np.ndarray  # (B, D, N)
    finish: Callable  # (states (B, T, D, N), return_state) -> out or (out, last state)
    u: np.ndarray  # (B, T, D)
    dt: np.ndarray  # (B, T, D), after the bias and softplus
    raw_dt: np.ndarray  # delta + delta_bias, before softplus
    B: np.ndarray  # per channel, broadcasting against (B, T, D, N)
    C: np.ndarray
    D: object  # (D,) or None
    z: object  # (B, T, D) or None


_SCAN_NAMES = {n: n for n in ("u", "delta", "B", "C", "z", "initial_state")}
_STEP_NAMES = {"u": "u_t", "delta": "delta_t", "B": "B_t", "C": "C_t", "z": "z_t", "initial_state": "state"}


def _per_channel(name, M, lead, dim, N, complex_ok, u_name):
    """B or C as an array that broadcasts against lead + (D, N); lead = (B, T), or (B,) for a step."""
    M = np.asarray(M)
    if M.dtype.kind == "c" and not complex_ok:
        raise TypeError(f"{name} may be complex only with a complex A; got {M.dtype} with a real A")
    M = as_real(name, M, complex_ok=True)
    symbols = "(B, T" if len(lead) == 2 else "(B"
    layouts = {len(lead) + 1: f"{symbols}, N)", len(lead) + 2: f"{symbols}, G, N)"}
    if len(lead) == 2:
        layouts[2] = "(D, N)"
    if M.ndim not in layouts:
        raise ValueError(f"{name} must have shape {' or '.join(layouts[n] for n in sorted(layouts))}; "
                         f"got shape {M.shape}")
    match = f"{u_name} and A"
    if M.ndim == 2 and len(lead) == 2:
        check_shape(name, M, (dim, N), "(D, N)", match=match)
        return M
    if M.ndim == len(lead) + 1:
        check_shape(name, M, lead + (N,), layouts[M.ndim], match=match)
        return M[..., None, :]
    G = M.shape[-2]
    check_shape(name, M, lead + (G, N), layouts[M.ndim], match=match)
    if G < 1 or dim % G:
        raise ValueError(f"{name} has G={G} groups, which must divide the D={dim} channels of {u_name}")
    return np.repeat(M, dim // G, axis=-2)


def _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, step=False):
    """The scan's terms, time-major (B, T, D, N); ``step``: the arguments of one step, without T."""
    n = _STEP_NAMES if step else _SCAN_NAMES
    layout = "(B, D)" if step else "(B, T, D)"
    u = as_real(n["u"], u)
    lead, dim = check_layout(n["u"], u, layout)[:-1], u.shape[-1]
    batch = lead[0]
    delta = as_real(n["delta"], delta)
    check_shape(n["delta"], delta, u.shape, layout, match=n["u"])
    A = as_real("A", A, complex_ok=True)
    check_layout("A", A, "(D, N)")
    check_shape("A", A, (dim, A.shape[1]), "(D, N)", match=n["u"])
    N = A.shape[1]
    is_complex = A.dtype.kind == "c"
    B = _per_channel(n["B"], B, lead, dim, N, is_complex, n["u"])
    C = _per_channel(n["C"], C, lead, dim, N, is_complex, n["u"])
    if D is not None:
        D = as_real("D", D)
        check_shape("D", D, (dim,), "(D,)", match=n["u"])
    if z is not None:
        z = as_real(n["z"], z)
        check_shape(n["z"], z, u.shape, layout, match=n["u"])
    if delta_bias is not None:
        delta_bias = as_real("delta_bias", delta_bias)
        check_shape("delta_bias", delta_bias, (dim,), "(D,)", match=n["u"])
        delta = delta + delta_bias
    check_bool("delta_softplus", delta_softplus)
    raw_dt = delta
    if delta_softplus:
        delta = np.where(delta <= 20, np.log1p(np.exp(np.minimum(delta, 20))), delta)
    if initial_state is None:
        initial_state = np.zeros((batch, dim, N), dtype=A.dtype)
    else:
        initial_state = as_real(n["initial_state"], initial_state, complex_ok=is_complex)
        check_shape(n["initial_state"], initial_state, (batch, dim, N), "(B, D, N)", match=f"{n['u']} and A")
    if step:  # one time step: T = 1
        u, delta, raw_dt, B, C = u[:, None], delta[:, None], raw_dt[:, None], B[:, None], C[:, None]
        z = None if z is None else z[:, None]

    def finish(states, return_state):
        y = np.sum(states * C, axis=-1)
        if is_complex:
            y = 2 * y.real
        out = y if D is None else y + u * D
        if z is not None:
            out = out * (z * expit(z))
        if not return_state:
            return out
        return out, (states[:, -1] if states.shape[1] else initial_state)  # T = 0: the initial state

    dtA = delta[..., None] * A
    dBu = (delta * u)[..., None] * B
    return _Scan(dtA, dBu, initial_state, finish, u, delta, raw_dt, B, C, D, z)


def _recurrent(s, return_state):
    dA = np.exp(s.dtA)
    x = s.h0
    states = np.empty(s.dBu.shape, dtype=np.result_type(dA, s.dBu, x))
    for t in range(dA.shape[1]):
        x = dA[:, t] * x + s.dBu[:, t]
        states[:, t] = x
    return s.finish(states, return_state)


def selective_scan_recurrent(u, delta, A, B, C, D=None, z=None, *, delta_bias=None,
                             delta_softplus=False, initial_state=None, return_state=False):
    """The selective scan one step at a time, as selective_scan_ref's loop (module docstring):

        x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t,   y_t = C_t . x_t

    Returns out (B, T, D) float64, and the last state (B, D, N) if return_state (complex128
    with a complex A, like selective_scan_ref's ``last_state``).
    """
    check_bool("return_state", return_state)
    return _recurrent(_prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state), return_state)


def selective_scan_parallel(u, delta, A, B, C, D=None, z=None, *, delta_bias=None,
                            delta_softplus=False, initial_state=None, return_state=False,
                            tree="balanced", rng=None):
    """The selective scan as an associative scan over the pairs (exp(dt_t A), dt_t B_t u_t):

        x_t = second part of (1, x_{-1}) o (dA_0, dBu_0) o ... o (dA_t, dBu_t)

    with ``scan_combine`` evaluated in the tree chosen by ``tree`` / ``rng`` (see
    ``associative_scan``). The parallel scan of Gu & Dao 2023, section 3.3; the same result as
    ``selective_scan_recurrent`` up to rounding.
    """
    check_bool("return_state", return_state)
    s = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    dA = np.exp(s.dtA)
    a = np.concatenate([np.ones((dA.shape[0], 1) + dA.shape[2:], dA.dtype), dA], axis=1)  # step -1: the initial state
    b = np.concatenate([s.h0[:, None], s.dBu], axis=1)
    _, states = associative_scan(a, b, tree=tree, rng=rng)
    return s.finish(states[:, 1:], return_state)


def selective_scan_chunked(u, delta, A, B, C, D=None, z=None, *, chunk_size, delta_bias=None,
                           delta_softplus=False, initial_state=None, return_state=False):
    """The selective scan by chunks of ``chunk_size`` steps (the last one may be shorter).

    Within a chunk starting from state x_s, in closed form (no loop over time):

        x_t = exp(sum_{s < r <= t} dt_r A) x_s + sum_{s < j <= t} exp(sum_{j < r <= t} dt_r A) dBu_j

    evaluated as one matrix of exp(segsum(.)) (``ssd.segsum``, overflow-free) over the chunk with
    the incoming state as an extra first input; the state at the chunk end is passed on. The
    same result as ``selective_scan_recurrent`` up to rounding.
    """
    check_bool("return_state", return_state)
    size = positive_int("chunk_size", chunk_size)
    s = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    return s.finish(_chunk_states(s, size), return_state)


def _chunk_states(s, size):
    """Every state x_t (B, T, D, N), chunk by chunk in closed form from the state the chunk
    before left (``selective_scan_chunked``)."""
    x, states = s.h0, [np.zeros(s.dBu[:, :0].shape)]  # T = 0: no state
    for start in range(0, s.dtA.shape[1], size):
        dtA, dBu = s.dtA[:, start:start + size], s.dBu[:, start:start + size]
        logs = np.concatenate([np.zeros_like(dtA[:, :1]), dtA], axis=1)
        inputs = np.concatenate([x[:, None], dBu], axis=1)
        decays = np.exp(segsum(np.moveaxis(logs, 1, -1)))  # (B, D, N, L+1, L+1)
        chunk = np.einsum("bdnts,bsdn->btdn", decays[..., 1:, :], inputs)
        states.append(chunk)
        x = chunk[:, -1]
    return np.concatenate(states, axis=1)


def selective_scan_step(u_t, delta_t, A, B_t, C_t, D=None, z_t=None, *, state, delta_bias=None,
                        delta_softplus=False):
    """One step of the selective scan (decoding), from ``state`` (B, D, N) (None: zeros):

        x = exp(dt A) state + dt B_t u_t,   y_t = C_t . x  (then D, z as the scan)

    u_t, delta_t, z_t (B, D); B_t, C_t (B, N) or (B, G, N). A time-invariant B (D, N) is
    passed as ``np.broadcast_to(B, (batch, D, N))`` (G = D groups). Returns (y_t (B, D),
    new state). Matches ``state-spaces/mamba: mamba_ssm/ops/triton/selective_state_update.py
    selective_state_update_ref`` up to layout (ours has no head axis).
    """
    s = _prepare(u_t, delta_t, A, B_t, C_t, D, z_t, delta_bias, delta_softplus, state, step=True)
    y, state = _recurrent(s, True)
    return y[:, 0], state
