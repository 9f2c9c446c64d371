"""Deliberately wrong retentions: each must be rejected by a claim. Small NumPy functions with the
form's signature; each is one bug of the kind RetNet users reported (torchscale #54, #77: chunkwise
!= parallel past the first chunk; fla #20: log-space decays at gamma = 0)."""

import numpy as np

from seqcheck.reference.retention import msr_parallel, msr_rotate, retention_chunked, retention_recurrent
from seqcheck.reference.retention import multiscale


def _chunked(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False, cross_power=0, powers=None):
    """Chunkwise retention in NumPy, gamma^n from ``powers(gamma, n)`` (default gamma ** n), the
    state carried across a chunk decayed by gamma^(c + cross_power)."""
    powers = powers or (lambda g, n: g ** n)
    B, T, H, K = q.shape
    S = np.zeros((B, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    outs = []
    for start in range(0, T, chunk_size):
        qc, kc, vc = (np.swapaxes(a[:, start:start + chunk_size], 1, 2) for a in (q, k, v))
        c = qc.shape[2]
        n, m = np.arange(c)[:, None], np.arange(c)[None, :]
        D = np.where(n >= m, powers(gamma[:, None, None], np.maximum(n - m, 0)), 0.0)
        inner = ((qc @ np.swapaxes(kc, -1, -2)) * D) @ vc
        cross = (qc * powers(gamma[:, None, None], np.arange(1, c + 1)[:, None])) @ S
        outs.append(np.swapaxes(inner + cross, 1, 2))
        into_state = powers(gamma[:, None, None], np.arange(c - 1, -1, -1)[:, None])
        S = powers(gamma, c + cross_power)[None, :, None, None] * S + np.swapaxes(kc * into_state, -1, -2) @ vc
    out = np.concatenate(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


def parallel_decay_off_by_one(q, k, v, gamma):
    """D_nm = gamma^(n-m+1): every key decayed once too often, the diagonal included."""
    T = q.shape[1]
    n, m = np.arange(T)[:, None], np.arange(T)[None, :]
    D = np.where(n >= m, gamma[:, None, None] ** (n - m + 1), 0.0)
    scores = np.einsum("bnhk,bmhk->bhnm", q, k) * D
    return np.einsum("bhnm,bmhv->bnhv", scores, v)


def chunked_cross_decay_off_by_one(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False):
    """The state carried to the next chunk decayed by gamma^(c-1) instead of gamma^c: right within
    the first chunk, wrong after chunk_size tokens (torchscale #54, #77)."""
    return _chunked(q, k, v, gamma, chunk_size=chunk_size, initial_state=initial_state, return_state=return_state,
                    cross_power=-1)


def chunked_ignoring_initial_state(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False):
    """Starts every call from zeros: a second chunk carried through the state forgets the first."""
    return retention_chunked(q, k, v, gamma, chunk_size=chunk_size, return_state=return_state)


def step_reading_out_before_the_update(q_t, k_t, v_t, gamma, *, state):
    """o_t = q_t S_{t-1}: the current token's k_t^T v_t missing from its own output."""
    B, H, K = q_t.shape
    S = np.zeros((B, H, K, v_t.shape[2])) if state is None else np.asarray(state, dtype=np.float64)
    out = np.einsum("bhk,bhkv->bhv", q_t, S * gamma[None, :, None, None])
    return out, gamma[None, :, None, None] * S + k_t[..., None] * v_t[:, :, None, :]


def chunked_in_float64(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False):
    """The chunked form evaluated in float64: right to rounding, not exactly."""
    floats = (np.asarray(a, dtype=np.float64) for a in (q, k, v, gamma))
    state = None if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    return retention_chunked(*floats, chunk_size=chunk_size, initial_state=state, return_state=return_state)


def recurrent_decaying_after_the_update(q, k, v, gamma, *, initial_state=None, return_state=False):
    """S_n = gamma (S_{n-1} + k_n^T v_n): the new token decayed before it is read."""
    out, state = retention_recurrent(q, k, v, gamma, initial_state=initial_state, return_state=True)
    return ((out * gamma[None, None, :, None], state * gamma[None, :, None, None]) if return_state
            else out * gamma[None, None, :, None])


def chunked_in_log_space(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False):
    """gamma^n as exp(n log gamma) with no guard for gamma = 0: exp(0 * -inf) is NaN (fla #20's class)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _chunked(q, k, v, gamma, chunk_size=chunk_size, initial_state=initial_state, return_state=return_state,
                        powers=lambda g, n: np.exp(n * np.log(g)))


def msr_parallel_without_rotating_k(q, k, v, *, eps=1e-6):
    """torchscale's parallel form with the rotation applied to q only (k enters unrotated)."""
    T = q.shape[1]
    unrotate = msr_rotate(k, -np.arange(T))  # so that the form's own rotation of k cancels
    return msr_parallel(q, unrotate, v, eps=eps)


def msr_chunked_unaligned(q, k, v, *, chunk_size, eps=1e-6):
    """Chunkwise retention adding the inner part over its own scale and the cross part over the
    state's, without aligning both to the larger one (torchscale's commented-out variant): right
    while both scales are 1, wrong once a chunk's scores or the carried state exceed 1."""
    (qr, kr, v), gamma = multiscale._prepare(q, k, v)
    B, H, T, K = qr.shape
    mask = multiscale._mask(gamma, chunk_size)
    last = mask[:, -1]
    value_decay = (last / last.sum(-1, keepdims=True))[None, :, :, None]
    row_scale = np.sqrt(mask.sum(-1, keepdims=True))
    query_decay = (gamma[:, None] ** (np.arange(chunk_size) + 1))[:, :, None] / (row_scale / last.sum(-1)[:, None, None])
    state, state_scale, outs = np.zeros((B, H, K, v.shape[-1])), np.ones((B, H, 1, 1)), []
    for start in range(0, T, chunk_size):
        qc, kc, vc = (a[:, :, start:start + chunk_size] for a in (qr, kr, v))
        c = qc.shape[2]
        scores = (qc @ np.swapaxes(kc, -1, -2)) * (mask / row_scale)[:, :c, :c]
        inner_scale = np.maximum(np.abs(scores).sum(-1, keepdims=True), 1)
        outs.append((scores / inner_scale) @ vc + (qc * query_decay[:, :c]) @ (state / state_scale))
        state = state * (gamma ** chunk_size)[None, :, None, None] + np.swapaxes(kc, -1, -2) @ (vc * value_decay[:, :, :c])
        state_scale = np.maximum(np.abs(state).sum(-2, keepdims=True).max(-1, keepdims=True), 1)
    out = np.concatenate(outs, axis=2) if outs else v
    return multiscale._rms_norm(np.swapaxes(out, 1, 2), eps)


MUTANTS = {
    "retnet.msr.parallel == retnet.msr.recurrent": msr_parallel_without_rotating_k,
    "retnet.msr.chunked == retnet.msr.recurrent": msr_chunked_unaligned,
    "retnet.retention.parallel == retnet.retention.recurrent": parallel_decay_off_by_one,
    "retnet.retention.chunked == retnet.retention.recurrent": chunked_cross_decay_off_by_one,
    "retnet.retention.continuation": chunked_ignoring_initial_state,
    "retnet.retention.step": step_reading_out_before_the_update,
    "retnet.retention.exact": chunked_in_float64,
    "retnet.retention.ssd": recurrent_decaying_after_the_update,
    "retnet.retention.extreme_decays": chunked_in_log_space,
}
"""The mutant each claim of the family must reject, by claim key."""
