"""Deliberately wrong RWKV-5/6 WKVs: each must be rejected by a claim. Small NumPy functions with
the form's signature; each one bug of the kind RWKV-6 users reported (fla #36: chunk != recurrent;
fla #11, #19: decays as exp of differences of cumulative sums; the read before or after the
step's decay, the bonus, the state carried between chunks)."""

from fractions import Fraction

import numpy as np

from seqcheck.reference.gla import gla_recurrent
from seqcheck.reference.rwkv import wkv6_chunked, wkv6_recurrent


def _full(g, shape):
    """Log-decays of any accepted shape as (B, T, H, K)."""
    g = np.asarray(g, dtype=np.float64)
    B, T, H, K = shape
    return np.broadcast_to(g[..., None] if g.shape in ((B, T, H), (H,)) else g, shape)


def _bonus(r, k, v, u):
    H, K = r.shape[2:]
    u = np.broadcast_to(np.asarray(u).reshape(H, -1), (H, K))
    return np.einsum("bthk,hk,bthk->bth", r, u, k)[..., None] * v


def parallel_reading_the_decayed_state(r, k, v, g=None, *, u, decay=None):
    """o_t = r_t S_t (GLA's read, after the step's decay and update) instead of r_t S_{t-1} plus the bonus."""
    return gla_recurrent(r, k, v, _full(g, r.shape), scale=1.0)


def parallel_with_powers_one_too_high(r, k, v, g=None, *, u, decay=None):
    """RWKV-5's decay matrix w^(i-j) for j < i instead of w^(i-1-j): every earlier token decayed
    once more (r_t diag(w_t) S_{t-1}), the bonus as it should be."""
    g = _full(g, r.shape)
    decayed = r * np.exp(g)
    return wkv6_recurrent(decayed, k, v, g, u=u) - _bonus(decayed, k, v, u) + _bonus(r, k, v, u)


def chunked_reading_the_state_after_the_rows_decay(r, k, v, g=None, *, u, chunk_size, decay=None,
                                                   initial_state=None, return_state=False):
    """Within a chunk the carried state read with prod_{start<=s<=i} w_s (the row's own decay
    included): right for the first chunk without an initial state, wrong from the second on."""
    g = _full(g, r.shape)
    B, T, H, K = r.shape
    S = np.zeros((B, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    outs = []
    for start in range(0, T, chunk_size):
        part = slice(start, start + chunk_size)
        out = wkv6_recurrent(r[:, part], k[:, part], v[:, part], g[:, part], u=u)  # the chunk from zero
        carried = np.exp(np.cumsum(g[:, part], axis=1))  # inclusive of the row's step
        outs.append(out + np.einsum("bthk,bhkv->bthv", r[:, part] * carried, S))
        _, S = wkv6_recurrent(r[:, part], k[:, part], v[:, part], g[:, part], u=u, initial_state=S, return_state=True)
    out = np.concatenate(outs, axis=1) if outs else np.zeros(r.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


def chunked_ignoring_initial_state(r, k, v, g=None, *, u, chunk_size, decay=None, initial_state=None,
                                   return_state=False):
    """The initial state accepted and dropped (fla PR #48's class: h0 absent or ignored)."""
    return wkv6_chunked(r, k, v, g, u=u, chunk_size=chunk_size, decay=decay, return_state=return_state)


def chunked_with_the_first_decay_for_every_step(r, k, v, g=None, *, u, chunk_size, decay=None, initial_state=None,
                                                return_state=False):
    """Data-dependent decays read once per call, the first step's for all (a v5 kernel given v6 decays)."""
    g = _full(g, r.shape)
    g = np.broadcast_to(g[:, :1], g.shape) if g.shape[1] else g
    return wkv6_chunked(r, k, v, g, u=u, chunk_size=chunk_size, initial_state=initial_state,
                        return_state=return_state)


def step_with_the_decay_before_the_read(r_t, k_t, v_t, g_t=None, *, u, state, decay_t=None):
    """The state decayed by w_t before o_t reads it."""
    B, H, K = r_t.shape
    S = np.zeros((B, H, K, v_t.shape[2])) if state is None else np.asarray(state, dtype=np.float64)
    w = np.exp(_full(np.asarray(g_t)[:, None], (B, 1, H, K))[:, 0])
    S = w[..., None] * S
    u = np.broadcast_to(np.asarray(u).reshape(H, -1), (H, K))
    kv = k_t[..., None] * v_t[:, :, None, :]
    out = np.einsum("bhk,bhkv->bhv", r_t, u[None, :, :, None] * kv + S)
    return out, S + kv


def chunked_in_float64(r, k, v, g=None, *, u, chunk_size, decay=None, initial_state=None, return_state=False):
    """The exact inputs converted to float64 first: right to rounding, not exactly."""
    def as_float(x):
        return None if x is None else np.asarray(x, dtype=np.float64)

    return wkv6_chunked(as_float(r), as_float(k), as_float(v), u=as_float(u), chunk_size=chunk_size,
                        decay=as_float(decay), initial_state=as_float(initial_state), return_state=return_state)


def recurrent_without_the_bonus_weight(r, k, v, g=None, *, u, decay=None, initial_state=None, return_state=False):
    """The current token added with weight r_t . k_t, u forgotten (u = 1)."""
    ones = np.frompyfunc(lambda _: Fraction(1), 1, 1)(np.zeros(np.shape(u))).astype(object)
    return wkv6_recurrent(r, k, v, g, u=ones, decay=decay, initial_state=initial_state, return_state=return_state)


def chunked_by_cumsum_differences(r, k, v, g=None, *, u, chunk_size, decay=None, initial_state=None,
                                  return_state=False):
    """Decay products as exp(cumsum(g)_i - cumsum(g)_j) over the chunk: inf - inf = NaN at a reset
    (fla #11, #19's class)."""
    g = _full(g, r.shape)
    B, T, H, K = r.shape
    S = np.zeros((B, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    uk = np.broadcast_to(np.asarray(u).reshape(H, -1), (H, K))
    outs = []
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, T, chunk_size):
            rc, kc, vc, gc = (np.swapaxes(a[:, start:start + chunk_size], 1, 2) for a in (r, k, v, g))
            c = rc.shape[2]
            b = np.cumsum(gc, axis=2)  # (B, H, c, K), inclusive
            before = b - gc  # exclusive
            P = np.exp(before[:, :, :, None, :] - b[:, :, None, :, :])  # prod_{j<s<i}
            P = np.where(np.tril(np.ones((c, c), bool), -1)[..., None], P, 0.0)
            scores = np.einsum("bhik,bhijk,bhjk->bhij", rc, P, kc)
            bonus = np.einsum("bhik,hk,bhik->bhi", rc, uk, kc)[..., None] * vc
            outs.append(np.swapaxes(scores @ vc + (rc * np.exp(before)) @ S + bonus, 1, 2))
            S = np.exp(b[:, :, -1])[..., None] * S + np.swapaxes(kc * np.exp(b[:, :, -1:] - b), -1, -2) @ vc
    out = np.concatenate(outs, axis=1) if outs else np.zeros(r.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


MUTANTS = {
    "rwkv.wkv6.parallel == rwkv.wkv6.recurrent": parallel_reading_the_decayed_state,
    "rwkv.wkv5.parallel == rwkv.wkv6.recurrent": parallel_with_powers_one_too_high,
    "rwkv.wkv6.chunked == rwkv.wkv6.recurrent": chunked_reading_the_state_after_the_rows_decay,
    "rwkv.wkv6.continuation": chunked_ignoring_initial_state,
    "rwkv.wkv6.continuation_data": chunked_with_the_first_decay_for_every_step,
    "rwkv.wkv6.step": step_with_the_decay_before_the_read,
    "rwkv.wkv6.exact": chunked_in_float64,
    "rwkv.wkv6.gla": recurrent_without_the_bonus_weight,
    "rwkv.wkv6.extreme_decays": chunked_by_cumsum_differences,
}
"""The mutant each claim of the family must reject, by claim key."""
