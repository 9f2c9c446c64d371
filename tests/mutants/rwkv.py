"""Deliberately wrong RWKV-4 WKV operators: each must be rejected by a claim. Small NumPy functions
with the form's signature; each one bug of the kind WKV implementations hit (exp without the
running maximum overflows at large k; the carried state off by a decay)."""

import numpy as np

from seqcheck.reference.rwkv import wkv4_chunked, wkv4_naive


def naive_without_the_bonus_in_the_denominator(k, v, w, u):
    """The bonus e^{u + k_t} added to the numerator only."""
    B, T, C = k.shape
    out = np.empty_like(v)
    for t in range(T):
        weights = np.exp(-(t - 1 - np.arange(t))[:, None] * w + k[:, :t])
        bonus = np.exp(u + k[:, t])
        out[:, t] = ((weights * v[:, :t]).sum(axis=1) + bonus * v[:, t]) / (weights.sum(axis=1) + 1.0)
    return out


def parallel_without_the_row_maximum(k, v, w, u):
    """The T x T weights exponentiated directly: inf / inf = NaN once k passes about 700."""
    with np.errstate(over="ignore", invalid="ignore"):
        return wkv4_naive(k, v, w, u)


def chunked_with_the_state_undecayed_within_a_chunk(k, v, w, u, *, chunk_size, initial_state=None,
                                                    return_state=False):
    """Every row of a chunk reads the carried state at the chunk's start exponent o, not o - i w."""
    B, T, C = k.shape
    p, q, o = np.zeros((B, C)), np.zeros((B, C)), np.full((B, C), -np.inf)
    if initial_state is not None:
        p, q, o = (np.asarray(initial_state, dtype=np.float64)[..., j] for j in range(3))
    outs = []
    for start in range(0, T, chunk_size):
        kc, vc = k[:, start:start + chunk_size], v[:, start:start + chunk_size]
        c = kc.shape[1]
        t, i = np.arange(c)[:, None], np.arange(c)[None, :]
        inner = np.where((i < t)[..., None], -(t - 1 - i)[..., None] * w + kc[:, None], -np.inf)
        inner[:, np.arange(c), np.arange(c)] = u + kc
        carried = np.broadcast_to(o[:, None], (B, c, C))
        top = np.maximum(inner.max(axis=2), carried)
        weights, scale = np.exp(inner - top[:, :, None]), np.exp(carried - top)
        outs.append(((weights * vc[:, None]).sum(axis=2) + scale * p[:, None]) / (weights.sum(axis=2) + scale * q[:, None]))
        to_end = -(c - 1 - np.arange(c))[:, None] * w + kc
        new_o = np.maximum(o - c * w, to_end.max(axis=1))
        weights, scale = np.exp(to_end - new_o[:, None]), np.exp(o - c * w - new_o)
        p, q, o = scale * p + (weights * vc).sum(axis=1), scale * q + weights.sum(axis=1), new_o
    out = np.concatenate(outs, axis=1) if outs else v.copy()
    return (out, np.stack([p, q, o], axis=-1)) if return_state else out


def chunked_ignoring_initial_state(k, v, w, u, *, chunk_size, initial_state=None, return_state=False):
    """Starts every call from an empty state: a second part forgets the first."""
    return wkv4_chunked(k, v, w, u, chunk_size=chunk_size, return_state=return_state)


def recurrent_without_the_running_maximum(k, v, w, u, *, initial_state=None, return_state=False):
    """The sums kept as plain e^{k}-weighted sums: they overflow where the kernel's (p, q, o) does not."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = wkv4_naive(k, v, w, u)
    return (out, None) if return_state else out


MUTANTS = {
    "rwkv.wkv4.naive == rwkv.wkv4.recurrent": naive_without_the_bonus_in_the_denominator,
    "rwkv.wkv4.parallel == rwkv.wkv4.recurrent": parallel_without_the_row_maximum,
    "rwkv.wkv4.chunked == rwkv.wkv4.recurrent": chunked_with_the_state_undecayed_within_a_chunk,
    "rwkv.wkv4.continuation": chunked_ignoring_initial_state,
    "rwkv.wkv4.shift_invariance": recurrent_without_the_running_maximum,
}
"""The mutant each claim of the family must reject, by claim key."""
