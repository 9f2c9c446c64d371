"""Deliberately wrong selective scans, scan operators and SSDs: each must be rejected by a claim.

Written the way a kernel author's bugs look, as small NumPy functions with the form's signature.
Only what each mutant needs is implemented.
"""

import numpy as np

from seqcheck.reference.mamba import (associative_scan, scan_combine, selective_scan_chunked, selective_scan_step,
                                      ssd_quadratic, ssd_recurrent)
from seqcheck.reference.mamba.grad import selective_scan_vjp, ssd_vjp
from seqcheck.reference.mamba.selective_scan import _prepare as _prepare_scan
from seqcheck.reference.mamba.ssd import _prepare as _prepare_ssd, segsum


def _scan_terms(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state):
    return _prepare_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)


def _finish(terms, states, return_state):
    return terms.finish(states, return_state)


# ----------------------------------------------------------------------------- selective scan

def parallel_scan_with_euler_A(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False,
                               initial_state=None, return_state=False, tree="balanced", rng=None):
    """The parallel scan with A discretised by Euler, 1 + dt A, instead of ZOH's exp(dt A)."""
    s = _scan_terms(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    a = np.concatenate([np.ones_like(s.dtA[:, :1]), 1 + s.dtA], axis=1)
    b = np.concatenate([s.h0[:, None], s.dBu], axis=1)
    _, states = associative_scan(a, b, tree=tree, rng=rng)
    return _finish(s, states[:, 1:], return_state)


def chunked_scan_dropping_the_state(u, delta, A, B, C, D=None, z=None, *, chunk_size, delta_bias=None,
                                    delta_softplus=False, initial_state=None, return_state=False):
    """Chunks scanned independently: every chunk restarts from the initial state instead of the
    state the previous chunk ended in."""
    s = _scan_terms(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    dA, states = np.exp(s.dtA), []
    for start in range(0, dA.shape[1], chunk_size):
        x = s.h0
        for t in range(start, min(start + chunk_size, dA.shape[1])):
            x = dA[:, t] * x + s.dBu[:, t]
            states.append(x)
    return _finish(s, np.stack(states, axis=1), return_state)


def chunked_scan_ignoring_initial_state(*args, initial_state=None, **options):
    """A chunked scan that always starts from zeros (the initial_state argument is dropped)."""
    return selective_scan_chunked(*args, initial_state=None, **options)


def step_with_D_twice(u_t, delta_t, A, B_t, C_t, D=None, z_t=None, *, state, delta_bias=None,
                      delta_softplus=False):
    """A decoding step that adds the skip connection D u_t a second time (after the gate)."""
    y, state = selective_scan_step(u_t, delta_t, A, B_t, C_t, D, z_t, state=state, delta_bias=delta_bias,
                                   delta_softplus=delta_softplus)
    return (y if D is None else y + D * np.asarray(u_t)), state


def combine_in_the_wrong_order(left, right):
    """(a1 a2, a1 b2 + b1): the composition of the two steps taken the other way round."""
    (a1, b1), (a2, b2) = left, right
    return a1 * a2, a1 * b2 + b1


def _scan_with_first_prefix(a, b, *, tree="balanced", rng=None):
    """A tree scan whose combine step carries the left half's first prefix, not its total."""
    split = {"balanced": lambda n: n // 2, "sequential": lambda n: n - 1,
             "random": lambda n: int(rng.integers(1, n))}[tree]

    def scan(a, b):
        n = a.shape[1]
        if n == 1:
            return a, b
        m = split(n)
        (la, lb), (ra, rb) = scan(a[:, :m], b[:, :m]), scan(a[:, m:], b[:, m:])
        ra, rb = scan_combine((la[:, :1], lb[:, :1]), (ra, rb))
        return np.concatenate([la, ra], axis=1), np.concatenate([lb, rb], axis=1)

    return scan(a, b)


def parallel_scan_carrying_the_first_prefix(u, delta, A, B, C, D=None, z=None, *, delta_bias=None,
                                            delta_softplus=False, initial_state=None, return_state=False,
                                            tree="balanced", rng=None):
    """The parallel scan with ``_scan_with_first_prefix``: right only where every left half has one step."""
    s = _scan_terms(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    a = np.concatenate([np.ones_like(s.dtA[:, :1]), np.exp(s.dtA)], axis=1)
    b = np.concatenate([s.h0[:, None], s.dBu], axis=1)
    _, states = _scan_with_first_prefix(a, b, tree=tree, rng=rng)
    return _finish(s, states[:, 1:], return_state)


# ----------------------------------------------------------------------------- SSD

def _unstable_segsum(x):
    """exp(cumsum_i - cumsum_j) first, masked afterwards by multiplying with the 0/1 mask: above
    the diagonal the exponent is -(a sum of negative terms), exp overflows, and inf * 0 = NaN."""
    cumulative = np.cumsum(x, axis=-1)
    n = x.shape[-1]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.exp(cumulative[..., :, None] - cumulative[..., None, :]) * np.tril(np.ones((n, n)))


def _chunked_ssd(x, dt, A, B, C, *, chunk_size, initial_state=None, return_state=False, decay=None,
                 boundary_off_by_one=False, undecayed_initial_state=False, unstable=False):
    """ssd_minimal_discrete's four steps (log decays only), with a bug switched on by a flag."""
    s = _prepare_ssd(x, dt, A, B, C, decay, initial_state)
    batch, T, H, P = s.xdt.shape
    Q, n = chunk_size, -(-T // chunk_size)
    seg = _unstable_segsum if unstable else (lambda v: np.exp(segsum(v)))

    def chunks(a):
        pad = np.zeros((batch, n * Q - T) + a.shape[2:])
        return np.concatenate([a, pad], axis=1).reshape((batch, n, Q) + a.shape[2:])

    X, Bc, Cc = chunks(s.xdt), chunks(s.B), chunks(s.C)
    logs = np.moveaxis(chunks(s.decay.v), 3, 1)  # (B, H, n, Q)
    cumulative = np.cumsum(logs, axis=-1)
    L = seg(logs)
    with np.errstate(invalid="ignore"):
        Y_diag = np.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", Cc, Bc, L, X)
        states = np.einsum("bclhn,bhcl,bclhp->bchpn", Bc, np.exp(cumulative[..., -1:] - cumulative), X)
        states = np.concatenate([s.h0[:, None], states], axis=1)
        chunk_logs = np.concatenate([np.zeros((batch, H, 1)), cumulative[..., -1]], axis=-1)
        decay_chunk = seg(chunk_logs)
        if undecayed_initial_state:
            decay_chunk[..., :, 0] = np.where(np.arange(n + 1) > 0, 1.0, decay_chunk[..., :, 0])
        states = np.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
        into = cumulative - logs if boundary_off_by_one else cumulative
        Y_off = np.einsum("bclhn,bchpn,bhcl->bclhp", Cc, states[:, :-1], np.exp(into))
    y = (Y_diag + Y_off).reshape(batch, n * Q, H, P)[:, :T]
    return (y, states[:, -1]) if return_state else y


def ssd_chunked_boundary_off_by_one(x, dt, A, B, C, *, chunk_size, decay=None, initial_state=None,
                                    return_state=False):
    """The incoming state reaches step t of a chunk decayed by a_start .. a_{t-1}, one step short."""
    return _chunked_ssd(x, dt, A, B, C, chunk_size=chunk_size, initial_state=initial_state,
                        return_state=return_state, boundary_off_by_one=True)


def ssd_chunked_initial_state_undecayed(x, dt, A, B, C, *, chunk_size, decay=None, initial_state=None,
                                        return_state=False):
    """The initial state enters every chunk boundary without the decays since the sequence start."""
    return _chunked_ssd(x, dt, A, B, C, chunk_size=chunk_size, initial_state=initial_state,
                        return_state=return_state, undecayed_initial_state=True)


def ssd_chunked_unstable_segsum(x, dt, A, B, C, *, chunk_size, decay=None, initial_state=None, return_state=False):
    """Chunked SSD with segsum_unstable's idea taken one step further: exp of prefix-sum
    differences, then the mask (mamba issues #352, #558): NaN once a decay exceeds exp(709)."""
    return _chunked_ssd(x, dt, A, B, C, chunk_size=chunk_size, initial_state=initial_state,
                        return_state=return_state, unstable=True)


def ssd_quadratic_inclusive_decay(x, dt, A, B, C, *, decay=None):
    """The quadratic form with L[t, s] = prod_{s <= r <= t} a_r: the decay of step s itself included."""
    s = _prepare_ssd(x, dt, A, B, C, decay, None)
    v = np.moveaxis(s.decay.v, 1, -1)
    L = np.exp(segsum(v) + v[..., None, :])
    return np.einsum("bthn,bshn,bhts,bshp->bthp", s.C, s.B, L, s.xdt)


def ssd_quadratic_B_and_C_swapped(x, dt, A, B, C, *, decay=None):
    """B (the key) and C (the query) swapped."""
    return ssd_quadratic(x, dt, A, C, B, decay=decay)


def ssd_recurrent_without_dt_on_x(x, dt, A, B, C, *, decay=None, initial_state=None, return_state=False):
    """The input enters undiscretised, x_t B_t^T instead of dt_t x_t B_t^T (ssd_minimal_discrete
    takes X * dt premultiplied; a caller that forgets)."""
    return ssd_recurrent(np.asarray(x) / np.asarray(dt)[..., None], dt, A, B, C, decay=decay,
                         initial_state=initial_state, return_state=return_state)


def ssd_chunked_decays_in_float(x, dt, A, B, C, *, chunk_size, decay=None, initial_state=None, return_state=False):
    """Exact inputs, but the decays rounded to float64 (a kernel that keeps log decays in floats)."""
    from seqcheck.reference.mamba import ssd_chunked

    return ssd_chunked(x, dt, A, B, C, chunk_size=chunk_size, decay=np.asarray(decay, dtype=np.float64),
                       initial_state=initial_state, return_state=return_state)


def ssd_chunked_backward_without_the_state_passings_dA(x, dt, A, B, C, *, chunk_size, cotangent,
                                                      state_cotangent=None, initial_state=None):
    """The chunks' backwards run last to first with the state's cotangent handed on, but dt and A
    given only the terms of each chunk's own inputs: the share of the state carried into a chunk
    (its decay across the chunk, d exp(sum dt A) / d dt) forgotten, as a kernel that drops the
    state-passing step's contribution to ddA."""
    T = x.shape[1]
    starts = list(range(0, T, chunk_size))
    before, h = [], initial_state
    for start in starts:
        before.append(h)
        span = slice(start, start + chunk_size)
        h = ssd_recurrent(x[:, span], dt[:, span], A, B[:, span], C[:, span], initial_state=h, return_state=True)[1]
    dH, parts, dA = state_cotangent, [], 0
    for start, h_prev in reversed(list(zip(starts, before))):
        span = slice(start, start + chunk_size)
        chunk = (x[:, span], dt[:, span], A, B[:, span], C[:, span])
        own = ssd_vjp(*chunk, cotangent=cotangent[:, span], state_cotangent=dH, initial_state=h_prev)
        alone = ssd_vjp(*chunk, cotangent=cotangent[:, span], state_cotangent=dH)
        parts.insert(0, {**own, "dt": alone["dt"]})
        dA = dA + alone["A"]
        dH = own["initial_state"]
    grads = {n: np.concatenate([part[n] for part in parts], axis=1) for n in ("x", "dt", "B", "C")}
    return {**grads, "A": dA, "initial_state": dH}


def chunked_scan_backward_recomputing_states_from_zero(u, delta, A, B, C, D=None, z=None, *, chunk_size, cotangent,
                                                        state_cotangent=None, delta_bias=None, delta_softplus=False,
                                                        initial_state=None):
    """The chunks' backwards run last to first with the state's cotangent handed on, but each
    chunk's states recomputed from zero instead of from the state the chunk started from (the
    saved chunk-start states not read back): dC, dA and ddelta lose the carried state's terms."""
    T, timed = np.shape(u)[1], {"u", "delta", "z"} | {n for n, M in (("B", B), ("C", C)) if np.ndim(M) > 2}
    options = dict(D=D, delta_bias=delta_bias, delta_softplus=delta_softplus)
    dH, parts = state_cotangent, []
    for start in reversed(range(0, T, chunk_size)):
        span = slice(start, start + chunk_size)
        chunk = {n: (M[:, span] if n in timed and M is not None else M)
                 for n, M in (("u", u), ("delta", delta), ("B", B), ("C", C), ("z", z))}
        parts.insert(0, selective_scan_vjp(**chunk, A=A, **options, cotangent=cotangent[:, span], state_cotangent=dH))
        dH = parts[0]["initial_state"]
    if not parts:  # T = 0: nothing to recompute
        return selective_scan_vjp(u, delta, A, B, C, z=z, cotangent=cotangent, state_cotangent=state_cotangent,
                                  initial_state=initial_state, **options)
    joined = {n: (np.concatenate([p[n] for p in parts], axis=1) if n in timed else sum(p[n] for p in parts))
              for n in parts[0] if n != "initial_state"}
    return {**joined, "initial_state": dH}


def scan_vjp_ignoring_the_state_cotangent(u, delta, A, B, C, D=None, z=None, *, cotangent, state_cotangent=None,
                                          delta_bias=None, delta_softplus=False, initial_state=None):
    """A backward that never reads the final state's cotangent (transformers PR #23774: the
    Function's backward takes it and drops it): right for the output alone, wrong when the state
    is carried on."""
    return selective_scan_vjp(u, delta, A, B, C, D, z, cotangent=cotangent, delta_bias=delta_bias,
                              delta_softplus=delta_softplus, initial_state=initial_state)


MUTANTS = {
    "mamba.selective_scan.parallel == mamba.selective_scan.recurrent": parallel_scan_with_euler_A,
    "mamba.selective_scan.chunked == mamba.selective_scan.recurrent": chunked_scan_dropping_the_state,
    "mamba.selective_scan.continuation": chunked_scan_ignoring_initial_state,
    "mamba.selective_scan.step": step_with_D_twice,
    "mamba.scan.associative": combine_in_the_wrong_order,
    "mamba.scan.tree_shape": parallel_scan_carrying_the_first_prefix,
    "mamba.ssd.quadratic == mamba.ssd.recurrent": ssd_quadratic_inclusive_decay,
    "mamba.ssd.chunked == mamba.ssd.recurrent": ssd_chunked_boundary_off_by_one,
    "mamba.ssd.continuation": ssd_chunked_initial_state_undecayed,
    "mamba.ssd.exact": ssd_chunked_decays_in_float,
    "mamba.ssd.selective_scan": ssd_recurrent_without_dt_on_x,
    "mamba.ssd.gated_linear_attention": ssd_quadratic_B_and_C_swapped,
    "mamba.ssd.large_decay_finite": ssd_chunked_unstable_segsum,
    "mamba.ssd.chunked_backward": ssd_chunked_backward_without_the_state_passings_dA,
    "mamba.selective_scan.chunked_backward": chunked_scan_backward_recomputing_states_from_zero,
    "mamba.selective_scan.gradient_continuation": scan_vjp_ignoring_the_state_cotangent,
}
"""The mutant each claim of the family must reject, by claim key."""
