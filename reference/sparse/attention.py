"""Attention restricted to a mask, densely and block-sparsely.

q (B, Tq, H, D), k (B, Tk, Hkv, D), v (B, Tk, Hkv, Dv), batch first, H a multiple of Hkv (query
head h reads kv head h // (H / Hkv): GQA, MQA); a mask (Tq, Tk) of bools, True where query i may
see key j. For every query row,

    s_ij = scale q_i . k_j   (scale 1/sqrt(D) by default),   out_i = sum_{j visible} P_ij v_j,
    P_ij = exp(s_ij) / sum_{j' visible} exp(s_ij'),          lse_i = log sum_{j visible} exp(s_ij),

and a row with no visible key has out 0 and lse -inf (no NaN).

``masked_attention`` is the definition. ``block_sparse_attention`` computes it as block-sparse
kernels do (FlashAttention's tiling restricted to a block mask: BigBird's and Longformer's block
kernels, Triton's and FlexAttention's ``BlockMask``): queries and keys in tiles of
``block_size`` (the last tile of each partial when the block size does not divide T), the tile
(I, J) visited only where ``block_mask[I, J]``, the token-level ``token_mask`` applied inside a
visited tile, and the softmax accumulated online over the visited tiles of a row (a running
maximum m, sum l and output, rescaled by exp(m_old - m_new) when the maximum grows).
"""

import numpy as np

from ..arith import accumulator, round_to
from .._checks import (as_real, check_bool, check_layout, check_shape, finite_real, float_dtype, int_in_range,
                       positive_int)


def _qkv(q, k, v):
    """q, and k and v with each kv head repeated for its H / Hkv query heads; and that group size."""
    q, k, v = as_real("q", q), as_real("k", k), as_real("v", v)
    B, Tq, H, D = check_layout("q", q, "(B, Tq, H, D)", may_be_empty=("B", "Tq"))
    _, Tk, Hkv, _ = check_layout("k", k, "(B, Tk, Hkv, D)", may_be_empty=("B", "Tk"))
    if k.shape[0] != B or k.shape[3] != D or H % Hkv:
        raise ValueError(f"k must have shape (B, Tk, Hkv, D) with (B, D)={(B, D)} and Hkv dividing H={H} to match q; "
                         f"got shape {k.shape}")
    check_layout("v", v, "(B, Tk, Hkv, Dv)", may_be_empty=("B", "Tk"))
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v must have shape (B, Tk, Hkv, Dv) with (B, Tk, Hkv)={k.shape[:3]} to match k; "
                         f"got shape {v.shape}")
    for name, a in (("q", q), ("k", k), ("v", v)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
    group = H // Hkv
    return q, np.repeat(k, group, axis=2), np.repeat(v, group, axis=2), group


def _fold(gradient, group):
    """The gradient of a repeated kv head: the sum over its query heads, (B, Tk, Hkv, .)."""
    B, Tk, H, n = gradient.shape
    return gradient.reshape(B, Tk, H // group, group, n).sum(axis=3)


def _mask(name, mask, shape):
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"{name} must be a bool array (True: visible); got dtype {mask.dtype}")
    check_shape(name, mask, shape, "(Tq, Tk)" if name != "block_mask" else "(ceil(Tq / b), ceil(Tk / b))",
                match="q and k")
    return mask


def _scale(scale, D):
    return D ** -0.5 if scale is None else finite_real("scale", scale)


def _masked(q, k, v, mask, scale, r, dot, return_lse):
    """The definition with ``r`` applied to each elementwise result and ``dot`` computing each
    contraction (einsum) and rounding it once: identities in float64, a dtype's rounding otherwise."""
    s = r(scale * dot("bihd,bjhd->bhij", q, k))
    visible = mask[None, None]
    top = np.where(visible, s, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    top = np.where(np.isfinite(top), top, 0.0)
    weights = np.where(visible, r(np.exp(r(np.where(visible, s - top, 0.0)))), 0.0)
    total = r(dot("bhij->bhi", weights)[..., None])
    out = dot("bhij,bjhe->bihe", r(weights / np.where(total > 0, total, 1.0)), v)
    if not return_lse:
        return out
    with np.errstate(divide="ignore"):
        lse = np.where(total > 0, r(top + r(np.log(np.where(total > 0, total, 1.0)))), -np.inf)[..., 0]  # (B, H, Tq)
    return out, np.swapaxes(lse, 1, 2)


def masked_attention(q, k, v, mask, *, scale=None, return_lse=False):
    """Softmax attention over the visible keys of ``mask`` (Tq, Tk) (module docstring), in one
    dense pass with each row's largest visible score subtracted. Returns out (B, Tq, H, Dv), and
    lse (B, Tq, H) if ``return_lse``."""
    q, k, v, _ = _qkv(q, k, v)
    mask = _mask("mask", mask, (q.shape[1], k.shape[1]))
    return_lse = check_bool("return_lse", return_lse)
    return _masked(q, k, v, mask, _scale(scale, q.shape[3]), lambda x: x, np.einsum, return_lse)


def masked_attention_in_dtype(q, k, v, mask, *, dtype, scale=None, return_lse=False):
    """``masked_attention``'s definition evaluated in a low precision ``dtype`` (numpy float16/32
    or an ml_dtypes float): the baseline a low-precision kernel is judged against (DESIGN.md,
    "Tolerance"). q, k, v and the scale are rounded to dtype, then every intermediate: the scores,
    s - max, exp, the weights, P v, log of the row sum and lse; the dot products and the row sum
    accumulate in float32 (float64 for a 64-bit dtype) and are rounded once, as GPU kernels do.
    Overflow to inf is part of the result. Returns float64 arrays holding dtype's values."""
    dt = float_dtype("dtype", dtype)
    work = accumulator(dt)
    q, k, v, _ = _qkv(q, k, v)
    mask = _mask("mask", mask, (q.shape[1], k.shape[1]))
    return_lse = check_bool("return_lse", return_lse)

    def r(x):
        return round_to(x, dt)

    def dot(spec, *operands):
        return r(round_to(np.einsum(spec, *operands), work))

    with np.errstate(over="ignore", invalid="ignore"):
        return _masked(r(q), r(k), r(v), mask, r(_scale(scale, q.shape[3])), r, dot, return_lse)


def block_sparse_attention(q, k, v, block_mask, *, block_size, token_mask=None, scale=None, return_lse=False):
    """The masked attention of ``block_mask`` expanded to tokens (and ``token_mask``, None: all
    visible) computed tile by tile (module docstring): tile (I, J) holds queries I b ..
    min((I + 1) b, Tq) - 1 and keys J b .. min((J + 1) b, Tk) - 1, visited only where
    block_mask[I, J]; online softmax across a row's visited tiles. Returns as ``masked_attention``."""
    q, k, v, _ = _qkv(q, k, v)
    b = positive_int("block_size", block_size)
    B, Tq, H, D = q.shape
    Tk, Dv = k.shape[1], v.shape[3]
    nq, nk = -(-Tq // b), -(-Tk // b)
    block_mask = _mask("block_mask", block_mask, (nq, nk))
    token_mask = np.ones((Tq, Tk), dtype=bool) if token_mask is None else _mask("token_mask", token_mask, (Tq, Tk))
    scale = _scale(scale, D)
    return_lse = check_bool("return_lse", return_lse)
    out, lse = np.zeros((B, Tq, H, Dv)), np.full((B, Tq, H), -np.inf)
    for I in range(nq):
        rows = slice(I * b, min((I + 1) * b, Tq))
        m = np.full((B, H, rows.stop - rows.start, 1), -np.inf)
        total, acc = np.zeros_like(m), np.zeros((B, H, rows.stop - rows.start, Dv))
        for J in np.nonzero(block_mask[I])[0]:
            cols = slice(J * b, min((J + 1) * b, Tk))
            visible = token_mask[rows, cols][None, None]
            s = scale * np.einsum("bihd,bjhd->bhij", q[:, rows], k[:, cols])
            tile_max = np.where(visible, s, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
            new_m = np.maximum(m, tile_max)
            safe = np.where(np.isfinite(new_m), new_m, 0.0)
            rescale = np.where(np.isfinite(m), np.exp(m - safe), 0.0)
            p = np.where(visible, np.exp(np.where(visible, s - safe, 0.0)), 0.0)
            total = rescale * total + p.sum(axis=-1, keepdims=True)
            acc = rescale * acc + np.einsum("bhij,bjhe->bhie", p, v[:, cols])
            m = new_m
        out[:, rows] = np.swapaxes(acc / np.where(total > 0, total, 1.0), 1, 2)
        with np.errstate(divide="ignore"):
            lse[:, rows] = np.swapaxes(np.where(total > 0, m + np.log(np.where(total > 0, total, 1.0)), -np.inf)[..., 0],
                                       1, 2)
    return (out, lse) if return_lse else out


def block_mask_of(mask, block_size):
    """The block mask a kernel derives from a token mask (Tq, Tk): tile (I, J) is visited where any
    of its tokens is visible (FlexAttention's ``create_block_mask``). Returns (ceil(Tq / b),
    ceil(Tk / b)) bool."""
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"mask must be a bool array (True: visible); got dtype {mask.dtype}")
    Tq, Tk = check_layout("mask", mask, "(Tq, Tk)", may_be_empty=("Tq", "Tk"))
    b = positive_int("block_size", block_size)
    nq, nk = -(-Tq // b), -(-Tk // b)
    padded = np.zeros((nq * b, nk * b), dtype=bool)
    padded[:Tq, :Tk] = mask
    return padded.reshape(nq, b, nk, b).any(axis=(1, 3))


def expand_block_mask(block_mask, block_size, Tq, Tk):
    """The token mask (Tq, Tk) a block mask stands for: True wherever the tile holding (i, j) is
    visited."""
    block_mask = np.asarray(block_mask)
    if block_mask.dtype != bool:
        raise TypeError(f"block_mask must be a bool array; got dtype {block_mask.dtype}")
    b = positive_int("block_size", block_size)
    Tq, Tk = int_in_range("Tq", Tq, 0), int_in_range("Tk", Tk, 0)
    check_shape("block_mask", block_mask, (-(-Tq // b), -(-Tk // b)), "(ceil(Tq / b), ceil(Tk / b))",
                match="Tq and Tk")
    return np.repeat(np.repeat(block_mask, b, axis=0), b, axis=1)[:Tq, :Tk]


def _cotangents(cotangent, lse_cotangent, q, v):
    B, Tq, H, _ = q.shape
    c = as_real("cotangent", cotangent)
    check_shape("cotangent", c, (B, Tq, H, v.shape[3]), "(B, Tq, H, Dv)", match="q and v")
    if lse_cotangent is None:
        return c, np.zeros((B, Tq, H))
    dl = as_real("lse_cotangent", lse_cotangent)
    check_shape("lse_cotangent", dl, (B, Tq, H), "(B, Tq, H)", match="q")
    return c, dl


def masked_attention_vjp(q, k, v, mask, *, scale=None, cotangent, lse_cotangent=None):
    """The VJP of ``masked_attention`` (FlashAttention-2's backward in one dense pass): with P the
    visible rows' softmax, out O, D_i = rowsum(dO o O) - dlse_i,

        dV = P^T dO,   dS = P o (dO V^T - D),   dQ = scale dS K,   dK = scale dS^T Q;

    a row with no visible key (lse -inf) has P = 0 and contributes nothing (no NaN); a kv head's
    dK and dV sum over its query heads. Returns {"q", "k", "v": gradient}."""
    q, k, v, group = _qkv(q, k, v)
    mask = _mask("mask", mask, (q.shape[1], k.shape[1]))
    c, dl = _cotangents(cotangent, lse_cotangent, q, v)
    scale = _scale(scale, q.shape[3])
    out, lse = masked_attention(q, k, v, mask, scale=scale, return_lse=True)
    s = scale * np.einsum("bihd,bjhd->bhij", q, k)
    finite = np.isfinite(lse)[..., None]  # (B, Tq, H, 1)
    shift = np.swapaxes(np.where(finite[..., 0], lse, 0.0), 1, 2)[..., None]  # (B, H, Tq, 1)
    P = np.where(mask[None, None], np.exp(np.where(mask[None, None], s - shift, 0.0)), 0.0)
    D = np.swapaxes((c * out).sum(axis=-1) - dl, 1, 2)[..., None]
    dS = P * (np.einsum("bihe,bjhe->bhij", c, v) - D)
    return {"q": scale * np.einsum("bhij,bjhd->bihd", dS, k),
            "k": _fold(scale * np.einsum("bhij,bihd->bjhd", dS, q), group),
            "v": _fold(np.einsum("bhij,bihe->bjhe", P, c), group)}


def block_sparse_attention_vjp(q, k, v, block_mask, *, block_size, token_mask=None, scale=None, cotangent,
                               lse_cotangent=None):
    """The VJP of ``block_sparse_attention`` as block-sparse backward kernels compute it: the
    forward's out and lse; per visited tile, P recomputed as exp(s - lse) on the visible tokens
    (0 on a row whose lse is -inf: no key visible), dV and dK accumulated per key tile, dQ per
    query tile, D_i = rowsum(dO o O) - dlse_i. Returns {"q", "k", "v": gradient}."""
    q, k, v, group = _qkv(q, k, v)
    b = positive_int("block_size", block_size)
    B, Tq, H, D = q.shape
    Tk = k.shape[1]
    nq, nk = -(-Tq // b), -(-Tk // b)
    block_mask = _mask("block_mask", block_mask, (nq, nk))
    token_mask = np.ones((Tq, Tk), dtype=bool) if token_mask is None else _mask("token_mask", token_mask, (Tq, Tk))
    c, dl = _cotangents(cotangent, lse_cotangent, q, v)
    scale = _scale(scale, D)
    out, lse = block_sparse_attention(q, k, v, block_mask, block_size=b, token_mask=token_mask, scale=scale,
                                      return_lse=True)
    Dr = (c * out).sum(axis=-1) - dl  # (B, Tq, H)
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    for I in range(nq):
        rows = slice(I * b, min((I + 1) * b, Tq))
        row_lse = np.swapaxes(lse[:, rows], 1, 2)[..., None]  # (B, H, r, 1)
        finite = np.isfinite(row_lse)
        for J in np.nonzero(block_mask[I])[0]:
            cols = slice(J * b, min((J + 1) * b, Tk))
            visible = token_mask[rows, cols][None, None] & finite
            s = scale * np.einsum("bihd,bjhd->bhij", q[:, rows], k[:, cols])
            P = np.where(visible, np.exp(np.where(visible, s - np.where(finite, row_lse, 0.0), 0.0)), 0.0)
            dP = np.einsum("bihe,bjhe->bhij", c[:, rows], v[:, cols])
            dS = P * (dP - np.swapaxes(Dr[:, rows], 1, 2)[..., None])
            dv[:, cols] += np.einsum("bhij,bihe->bjhe", P, c[:, rows])
            dk[:, cols] += scale * np.einsum("bhij,bihd->bjhd", dS, q[:, rows])
            dq[:, rows] += scale * np.einsum("bhij,bjhd->bihd", dS, k[:, cols])
    return {"q": dq, "k": _fold(dk, group), "v": _fold(dv, group)}
