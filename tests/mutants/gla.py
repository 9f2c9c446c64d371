"""Deliberately wrong gated linear attentions: each must be rejected by a claim. Small NumPy
functions with the form's signature; each one bug of a kind GLA users reported (fla #20: cumsum
differences give NaN at a reset; fla #547: chunked != the naive recurrence; fla #285: a sequence
!= two chunks carried through the state)."""

import numpy as np

from seqcheck.reference.gla import gla_chunked, gla_recurrent, gla_vjp


def _decays(g, decay, shape):
    rates = np.exp(np.asarray(g, dtype=np.float64)) if decay is None else np.asarray(decay, dtype=np.float64)
    return np.broadcast_to(rates[..., None], shape) if rates.ndim == 3 else rates


def parallel_without_the_diagonal_gate(q, k, v, g=None, *, decay=None, scale=None):
    """The quadratic form with P_ij = prod_{j<=s<=i} a_s: the key's own step decayed as well."""
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    a = _decays(g, decay, q.shape)
    out = np.zeros(q.shape[:3] + v.shape[3:])
    for i in range(T):
        for j in range(i + 1):
            P = np.prod(a[:, j:i + 1], axis=1)
            out[:, i] += np.einsum("bhk,bhk->bh", scale * q[:, i] * P, k[:, j])[..., None] * v[:, j]
    return out


def chunked_by_cumsum_differences(q, k, v, g=None, *, chunk_size, decay=None, scale=None, initial_state=None,
                                  return_state=False):
    """Decay products as exp(cumsum(g)_i - cumsum(g)_j) within a chunk: inf - inf = NaN at a reset,
    and float64 cancellation at large |g| (fla's naive chunked form, fla #20)."""
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    g = np.broadcast_to(np.asarray(g)[..., None], q.shape) if np.ndim(g) == 3 else np.asarray(g)
    S = np.zeros((B, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    outs = []
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, T, chunk_size):
            qc, kc, vc, gc = (np.swapaxes(a[:, start:start + chunk_size], 1, 2) for a in (q, k, v, g))
            b = np.cumsum(gc, axis=2)  # (B, H, c, K)
            c = qc.shape[2]
            P = np.exp(b[:, :, :, None, :] - b[:, :, None, :, :])  # (B, H, i, j, K)
            P = np.where(np.tril(np.ones((c, c), bool))[..., None], P, 0.0)
            scores = np.einsum("bhik,bhijk,bhjk->bhij", scale * qc, P, kc)
            outs.append(np.swapaxes(scores @ vc + (scale * qc * np.exp(b)) @ S, 1, 2))
            S = np.exp(b[:, :, -1])[..., None] * S + np.swapaxes(kc * np.exp(b[:, :, -1:] - b), -1, -2) @ vc
    out = np.concatenate(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


def chunked_dropping_the_state_decay(q, k, v, g=None, *, chunk_size, decay=None, scale=None, initial_state=None,
                                     return_state=False):
    """The state carried to the next chunk not decayed (S = S_prev + sum_j ...): right within the
    first chunk, wrong after chunk_size tokens."""
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    a = _decays(g, decay, q.shape)
    S = np.zeros((B, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    outs = []
    for start in range(0, T, chunk_size):
        qc, kc, vc, ac = (np.swapaxes(x[:, start:start + chunk_size], 1, 2) for x in (q, k, v, a))  # (B, H, c, .)
        c = qc.shape[2]
        Q = np.cumprod(ac, axis=2)  # prod_{start<=s<=i} a_s
        P = np.ones((B, H, c, c, K))
        for i in range(c):
            for j in range(i):
                P[:, :, i, j] = np.prod(ac[:, :, j + 1:i + 1], axis=2)
        P = np.where(np.tril(np.ones((c, c), bool))[..., None], P, 0.0)
        scores = np.einsum("bhik,bhijk,bhjk->bhij", scale * qc, P, kc)
        outs.append(np.swapaxes(scores @ vc + (scale * qc * Q) @ S, 1, 2))
        S = S + np.swapaxes(kc * P[:, :, -1], -1, -2) @ vc
    out = np.concatenate(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


def step_with_the_gate_after_the_update(q_t, k_t, v_t, g_t=None, *, state, decay_t=None, scale=None):
    """S_t = diag(a_t) (S_{t-1} + k_t^T v_t): the new token gated before it is read."""
    B, H, K = q_t.shape
    scale = K ** -0.5 if scale is None else scale
    a = np.exp(np.asarray(g_t, dtype=np.float64)) if decay_t is None else np.asarray(decay_t, dtype=np.float64)
    a = a[..., None] if a.ndim == 2 else a
    S = np.zeros((B, H, K, v_t.shape[2])) if state is None else np.asarray(state, dtype=np.float64)
    S = a[..., None] * (S + k_t[..., None] * v_t[:, :, None, :])
    return np.einsum("bhk,bhkv->bhv", scale * q_t, S), S


def chunked_in_float64(q, k, v, g=None, *, chunk_size, decay=None, scale=None, initial_state=None,
                       return_state=False):
    """The chunked form evaluated in float64: right to rounding, not exactly."""
    floats = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    state = None if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    return gla_chunked(*floats, g, decay=np.asarray(decay, dtype=np.float64), chunk_size=chunk_size,
                       scale=float(scale), initial_state=state, return_state=return_state)


def recurrent_with_the_decay_one_step_late(q, k, v, g=None, *, decay=None, scale=None, initial_state=None,
                                           return_state=False):
    """Step t decays the state by a_{t-1} (the gates shifted by one step, a layout slip)."""
    shifted = lambda x: None if x is None else np.concatenate([np.ones_like(x[:, :1]), x[:, :-1]], axis=1)  # noqa: E731
    return gla_recurrent(q, k, v, None, decay=shifted(decay if decay is not None else np.exp(g)), scale=scale,
                         initial_state=initial_state, return_state=return_state)


def vjp_dropping_the_initial_state_gradient(q, k, v, g, *, cotangent, state_cotangent=None, scale=None,
                                            initial_state=None):
    """The initial state's gradient returned as zeros (fla PR #48 / #102's class: dh0 absent or
    None): right for one call, wrong once a sequence is split across calls."""
    grads = gla_vjp(q, k, v, g, cotangent=cotangent, state_cotangent=state_cotangent, scale=scale,
                    initial_state=initial_state)
    return {**grads, "initial_state": np.zeros_like(grads["initial_state"])}


def chunked_backward_with_an_undecayed_state_cotangent(q, k, v, g, *, chunk_size, cotangent, state_cotangent=None,
                                                       scale=None, initial_state=None):
    """The chunks visited last to first, but the cotangent from later chunks handed to the chunk
    before as it came, not through the chunk's decay diag(Q_last) (a state gradient carried with
    the wrong decay across a chunk boundary)."""
    T = q.shape[1]
    starts = list(range(0, T, chunk_size))
    before, S = [], initial_state
    for start in starts:
        before.append(S)
        span = slice(start, start + chunk_size)
        S = gla_recurrent(q[:, span], k[:, span], v[:, span], g[:, span], scale=scale, initial_state=S,
                          return_state=True)[1]
    dH, parts = state_cotangent, []
    for start, S_prev in reversed(list(zip(starts, before))):
        span = slice(start, start + chunk_size)
        own = gla_vjp(q[:, span], k[:, span], v[:, span], g[:, span], cotangent=cotangent[:, span],
                      state_cotangent=dH, scale=scale, initial_state=S_prev)
        parts.insert(0, own)
        from_outputs = gla_vjp(q[:, span], k[:, span], v[:, span], g[:, span], cotangent=cotangent[:, span],
                               scale=scale, initial_state=S_prev)["initial_state"]
        dH = from_outputs + (0 if dH is None else dH)  # not decayed through the chunk
    grads = {n: np.concatenate([part[n] for part in parts], axis=1) for n in ("q", "k", "v", "g")}
    return {**grads, "initial_state": dH}


MUTANTS = {
    "gla.gla.parallel == gla.gla.recurrent": parallel_without_the_diagonal_gate,
    "gla.gla.chunked == gla.gla.recurrent": chunked_dropping_the_state_decay,
    "gla.gla.continuation": chunked_dropping_the_state_decay,
    "gla.gla.step": step_with_the_gate_after_the_update,
    "gla.gla.exact": chunked_in_float64,
    "gla.gla.retention": recurrent_with_the_decay_one_step_late,
    "gla.gla.ssd": recurrent_with_the_decay_one_step_late,
    "gla.gla.resets": chunked_by_cumsum_differences,
    "gla.gla.gradient_continuation": vjp_dropping_the_initial_state_gradient,
    "gla.gla.chunked_backward": chunked_backward_with_an_undecayed_state_cotangent,
}
"""The mutant each claim of the family must reject, by claim key."""
