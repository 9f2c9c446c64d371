"""RWKV-4's WKV operator (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era",
arXiv:2305.13048), per channel c with decay w_c > 0 and bonus u_c:

    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
            / (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})

k, v (B, T, C), w, u (C,). ``wkv4_naive`` evaluates the sums as written (it overflows once k
reaches about 700); ``wkv4_parallel`` the same weights as a T x T matrix with each row's largest
exponent subtracted; ``wkv4_recurrent`` the stable recurrence of ``BlinkDL/RWKV-LM:
RWKV-v4/cuda/wkv_cuda.cu`` (state (p, q, o): the numerator's and denominator's sums scaled by
e^{-o}, o their running maximum exponent); ``wkv4_chunked`` the state across chunks and within a
chunk the weights factored into a decay matrix per channel times e^{k_i} under one scale (a matrix
product; chunks whose k spread more than ``SPREAD`` take every pair's exponent). The state travels as one array (B, C, 3), [p, q, o], o = -inf for none.
Differences: float64; the kernel takes w as -exp(time_decay) (negative, added), here the decay
w = exp(time_decay) > 0 is subtracted; batch-first (B, T, C) as the kernel's.
"""

import numpy as np

from .._checks import as_real, check_bool, check_layout, check_shape, positive_int


def _prepare(k, v, w, u, initial_state):
    k, v = as_real("k", k), as_real("v", v)
    batch, T, C = check_layout("k", k, "(B, T, C)")
    check_shape("v", v, k.shape, "(B, T, C)", match="k")
    w, u = as_real("w", w), as_real("u", u)
    check_shape("w", w, (C,), "(C,)", match="k")
    check_shape("u", u, (C,), "(C,)", match="k")
    if not (w > 0).all() or not np.isfinite(w).all():
        raise ValueError(f"w must hold finite decays > 0 (the kernel's -w); got {w}")
    if initial_state is None:
        state = np.stack([np.zeros((batch, C)), np.zeros((batch, C)), np.full((batch, C), -np.inf)], axis=-1)
    else:
        state = as_real("initial_state", initial_state)
        check_shape("initial_state", state, (batch, C, 3), "(B, C, 3), [p, q, o]", match="k")
    return k, v, w, u, state


def wkv4_naive(k, v, w, u):
    """The definition as written (module docstring): e^{k} overflows for k beyond about 700."""
    k, v, w, u, _ = _prepare(k, v, w, u, None)
    T = k.shape[1]
    out = np.empty_like(v)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            gaps = (t - 1 - np.arange(t))[:, None]  # (t, 1)
            weights = np.exp(-gaps * w + k[:, :t])  # (B, t, C)
            bonus = np.exp(u + k[:, t])
            out[:, t] = ((weights * v[:, :t]).sum(axis=1) + bonus * v[:, t]) / (weights.sum(axis=1) + bonus)
    return out


def wkv4_logits(k, w, u):
    """The exponents of every row's weights, (B, T, T, C): k_i - (t-1-i) w for i < t, u + k_t on
    the diagonal, -inf above it (prepared float64 k (B, T, C), w, u (C,))."""
    T = k.shape[1]
    t, i = np.arange(T)[:, None], np.arange(T)[None, :]
    exponents = np.where((i < t)[..., None], -(t - 1 - i)[..., None] * w + k[:, None, :, :], -np.inf)
    diagonal = np.arange(T)
    exponents[:, diagonal, diagonal] = u + k
    return exponents


def wkv4_parallel(k, v, w, u):
    """The weights of every row as one T x T matrix of exponents, each row's maximum subtracted."""
    k, v, w, u, _ = _prepare(k, v, w, u, None)
    if k.shape[1] == 0:
        return v.copy()
    exponents = wkv4_logits(k, w, u)
    weights = np.exp(exponents - exponents.max(axis=2, keepdims=True))
    return (weights * v[:, None]).sum(axis=2) / weights.sum(axis=2)


def wkv4_recurrent(k, v, w, u, *, initial_state=None, return_state=False):
    """The CUDA kernel's stable recurrence, one step at a time (module docstring). Returns wkv
    (B, T, C), and the state (B, C, 3) [p, q, o] with ``return_state``."""
    check_bool("return_state", return_state)
    k, v, w, u, state = _prepare(k, v, w, u, initial_state)
    p, q, o = state[..., 0], state[..., 1], state[..., 2]
    outs = [v[:, :0]]
    for t in range(k.shape[1]):
        top = np.maximum(o, u + k[:, t])
        a, b = np.exp(o - top), np.exp(u + k[:, t] - top)
        outs.append(((a * p + b * v[:, t]) / (a * q + b))[:, None])
        top = np.maximum(o - w, k[:, t])
        a, b = np.exp(o - w - top), np.exp(k[:, t] - top)
        p, q, o = a * p + b * v[:, t], a * q + b, top
    out = np.concatenate(outs, axis=1)
    return (out, np.stack([p, q, o], axis=-1)) if return_state else out


SPREAD = 300
"""The largest gap, in exponent, between a chunk's common scale and a row's largest weight that
the factored rows allow (e^-300 keeps every weight that matters a normal float); chunks beyond it
take every pair's exponent."""


def _pairwise_rows(kc, vc, w, u, p, q, o):
    """The rows of chunks kc, vc (C, M, c) from the state (p, q, o) (C, M) before them: every pair's
    exponent, each row's largest subtracted (c x c exponentials per channel)."""
    c = kc.shape[-1]
    t, i = np.arange(c)[:, None], np.arange(c)[None, :]
    inner = np.where(i < t, -(t - 1 - i) * w[:, None, None, None] + kc[:, :, None, :], -np.inf)  # (C, M, c, c)
    inner[..., np.arange(c), np.arange(c)] = u[:, None, None] + kc
    carried = o[..., None] - np.arange(c) * w[:, None, None]  # the state's exponent at each row
    top = np.maximum(inner.max(axis=-1), carried)
    weights, scale = np.exp(inner - top[..., None]), np.exp(carried - top)
    return (((weights * vc[:, :, None, :]).sum(axis=-1) + scale * p[..., None])
            / (weights.sum(axis=-1) + scale * q[..., None]))


def _chunks(kc, vc, w, u, p, q, o):
    """Chunks kc, vc (C, B, N, c), channels first, from the state (p, q, o) (C, B) before the first:
    outputs (C, B, N, c) and the state after the last.

    Each chunk's summary (its tokens' weights at its end, their largest exponent subtracted) passes
    the state from chunk to chunk. Within a chunk every exponent is at most R = max(m + max(u, 0),
    o), m its largest k, o the state's, and row t's weights factor: e^{k_i - (t-1-i) w - R} =
    e^{-(t-1-i) w} e^{k_i - m} e^{m - R}, one (c x c) decay matrix per channel for every chunk (a
    matrix product), the bonus e^{k_t - m} e^{u + m - R} and the state's e^{-t w} e^{o - R}, none
    above 1. Where a row's largest weight may lie more than ``SPREAD`` below R (a chunk whose k spread
    that far) the chunk takes the pairwise rows instead."""
    C, B, N, c = kc.shape
    steps, w4, u3 = np.arange(c), w[:, None, None, None], u[:, None, None]
    to_end = kc - (c - 1 - steps) * w4  # each token's exponent at its chunk's end
    end = to_end.max(axis=-1)
    totals = np.exp(to_end - end[..., None])
    sums, counts = (totals * vc).sum(axis=-1), totals.sum(axis=-1)  # (C, B, N)
    before = []
    for n in range(N):
        before.append((p, q, o))
        new_o = np.maximum(o - c * w[:, None], end[..., n])
        decayed, added = np.exp(o - c * w[:, None] - new_o), np.exp(end[..., n] - new_o)
        p, q, o = decayed * p + added * sums[..., n], decayed * q + added * counts[..., n], new_o
    p0, q0, o0 = (np.stack(x, axis=-1) for x in zip(*before))  # the state before each chunk (C, B, N)

    m = kc.max(axis=-1)
    R = np.maximum(m + np.maximum(u3, 0), o0)
    scaled = np.exp(kc - m[..., None])
    t, i = np.arange(c)[:, None], np.arange(c)[None, :]
    decay = np.where(i < t, np.exp(-np.maximum(t - 1 - i, 0) * w[:, None, None]), 0)  # (C, c, c), [t, i]
    rows_v, rows_1 = ((x.reshape(C, B * N, c) @ np.swapaxes(decay, -1, -2)).reshape(C, B, N, c)
                      for x in (scaled * vc, scaled))  # sum_{i<t} e^{-(t-1-i)w} x_i
    factor = np.exp(m - R)[..., None]
    bonus = scaled * np.exp(u3 + m - R)[..., None]
    state = np.exp(o0 - R)[..., None] * np.exp(-steps * w4)
    with np.errstate(invalid="ignore"):  # 0 / 0 only in the wide chunks, replaced below
        out = ((factor * rows_v + bonus * vc + state * p0[..., None])
               / (factor * rows_1 + bonus + state * q0[..., None]))
    # row t's largest exponent is at least the state's at the chunk's end, or u + k_t and k_{t-1} >= min k + min(u, 0)
    least = np.maximum(o0 - (c - 1) * w[:, None, None], kc.min(axis=-1) + np.minimum(u3, 0))
    wide = (R - least > SPREAD).any(axis=0)  # (B, N)
    if wide.any():
        out[:, wide] = _pairwise_rows(kc[:, wide], vc[:, wide], w, u, p0[:, wide], q0[:, wide], o0[:, wide])
    return out, (p, q, o)


def wkv4_chunked(k, v, w, u, *, chunk_size, initial_state=None, return_state=False):
    """WKV by chunks of ``chunk_size`` steps (the last may be shorter): within a chunk every
    row's weights over the carried state, the chunk's earlier tokens and the bonus, with their
    largest exponent subtracted; the state (p, q, o) carried across chunks (``_chunks``)."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    k, v, w, u, state = _prepare(k, v, w, u, initial_state)
    (B, T, C), whole = k.shape, k.shape[1] - k.shape[1] % chunk_size
    state, outs = (state[..., 0].T, state[..., 1].T, state[..., 2].T), [v[:, :0]]  # channels first
    for start, stop, c in ((0, whole, chunk_size), (whole, T, T - whole)):  # the whole chunks, then the rest
        if stop > start:
            kc, vc = (np.ascontiguousarray(x[:, start:stop].reshape(B, (stop - start) // c, c, C).transpose(3, 0, 1, 2))
                      for x in (k, v))
            out, state = _chunks(kc, vc, w, u, *state)
            outs.append(out.transpose(1, 2, 3, 0).reshape(B, stop - start, C))
    out = np.concatenate(outs, axis=1)
    return (out, np.stack(state, axis=-1).transpose(1, 0, 2)) if return_state else out
