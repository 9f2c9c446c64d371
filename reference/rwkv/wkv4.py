"""RWKV-4's WKV operator (Peng et al. 2023, "RWKV: Reinventing RNNs for the Transformer Era",
arXiv:2305.13048), per channel c with decay w_c > 0 and bonus u_c:

    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t)
            / (sum_{i<t} e^{-(t-1-i) w + k_i} + e^{u + k_t})

k, v (B, T, C), w, u (C,). ``wkv4_naive`` evaluates the sums as written (it overflows once k
reaches about 700); ``wkv4_parallel`` the same weights as a T x T matrix with each row's largest
exponent subtracted; ``wkv4_recurrent`` the stable recurrence of ``BlinkDL/RWKV-LM:
RWKV-v4/cuda/wkv_cuda.cu`` (state (p, q, o): the numerator's and denominator's sums scaled by
e^{-o}, o their running maximum exponent); ``wkv4_chunked`` the parallel form within a chunk and
the state across chunks. The state travels as one array (B, C, 3), [p, q, o], o = -inf for none.
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


def wkv4_parallel(k, v, w, u):
    """The weights of every row as one T x T matrix of exponents, each row's maximum subtracted."""
    k, v, w, u, _ = _prepare(k, v, w, u, None)
    T = k.shape[1]
    if T == 0:
        return v.copy()
    t, i = np.arange(T)[:, None], np.arange(T)[None, :]
    exponents = np.where((i < t)[..., None], -(t - 1 - i)[..., None] * w + k[:, None, :, :], -np.inf)  # (B, T, T, C)
    diagonal = np.arange(T)
    exponents[:, diagonal, diagonal] = u + k
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


def wkv4_chunked(k, v, w, u, *, chunk_size, initial_state=None, return_state=False):
    """WKV by chunks of ``chunk_size`` steps (the last may be shorter): within a chunk every
    row's weights over the carried state, the chunk's earlier tokens and the bonus, with their
    largest exponent subtracted; the state (p, q, o) carried across chunks."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    k, v, w, u, state = _prepare(k, v, w, u, initial_state)
    p, q, o = state[..., 0], state[..., 1], state[..., 2]
    outs = [v[:, :0]]
    for start in range(0, k.shape[1], chunk_size):
        kc, vc = k[:, start:start + chunk_size], v[:, start:start + chunk_size]
        c = kc.shape[1]
        t, i = np.arange(c)[:, None], np.arange(c)[None, :]
        inner = np.where((i < t)[..., None], -(t - 1 - i)[..., None] * w + kc[:, None], -np.inf)  # (B, c, c, C)
        inner[:, np.arange(c), np.arange(c)] = u + kc
        carried = o[:, None] - np.arange(c)[:, None] * w  # the state's exponent at each row, (B, c, C)
        top = np.maximum(inner.max(axis=2), carried)
        weights = np.exp(inner - top[:, :, None])
        scale = np.exp(carried - top)
        outs.append(((weights * vc[:, None]).sum(axis=2) + scale * p[:, None])
                    / (weights.sum(axis=2) + scale * q[:, None]))
        to_end = -(c - 1 - np.arange(c))[:, None] * w + kc  # (B, c, C): each token's exponent at the chunk's end
        new_o = np.maximum(o - c * w, to_end.max(axis=1))
        weights, scale = np.exp(to_end - new_o[:, None]), np.exp(o - c * w - new_o)
        p, q, o = scale * p + (weights * vc).sum(axis=1), scale * q + weights.sum(axis=1), new_o
    out = np.concatenate(outs, axis=1)
    return (out, np.stack([p, q, o], axis=-1)) if return_state else out
