"""Gradients of softmax attention: the exact float64 vector-Jacobian product of the definition,
and FlashAttention-2's tiled backward (Dao 2023, arXiv:2307.08691, Algorithm 2).

For an output cotangent dO (B, Tq, H, Dv) and, when lse is an output, its cotangent dL (B, Tq, H),
with s_ij the scores (``softmax_attention``: scale, softcap, ALiBi bias), P_ij = exp(s_ij - lse_i)
over the visible keys and D_i = dO_i . out_i:

    dV_j   = sum_i P_ij dO_i                      (summed over the query heads of a kv head)
    dP_ij  = dO_i . v_j
    dS_ij  = P_ij (dP_ij - D_i + dL_i)            (d lse_i / d s_ij = P_ij)
    dR_ij  = dS_ij (1 - tanh^2(r_ij / softcap))   (through the softcap; r = scale q.k)
    dQ_i   = scale sum_j dR_ij k_j,   dK_j = scale sum_i dR_ij q_i

A fully masked row (out 0, lse -inf) has P = 0 and contributes nothing. The gradients are with
respect to q, k and v; the mask, the scale, the softcap and the ALiBi slopes are constants.

Matches ``Dao-AILab/flash-attention: csrc/flash_attn/src/flash_bwd_kernel.h`` (D from
``dot_do_o``, P recomputed from the saved lse, dS = P (dP - D)) and torch autograd of the
definition; the lse cotangent is fla's and flash-attention's ``dlse`` extension of it.
"""

import numpy as np

from .._checks import as_real, check_shape, float_dtype, positive_int
from .softmax import _FLOAT64, _prepare, _rounding_arith, _softmax_core


def _cotangents(p, ar, cotangent, lse_cotangent):
    """dO (B, H, Tq, Dv) and dL (B, H, Tq, 1) heads first, checked against q and v, in ``ar``."""
    batch, heads, tq, _ = p.q.shape
    dv = p.v.shape[3]
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, (batch, tq, heads, dv), "(B, Tq, H, Dv)", match="q and v")
    if lse_cotangent is None:
        dl = np.zeros((batch, heads, tq, 1), dtype=ar.dtype)
    else:
        lse_cotangent = as_real("lse_cotangent", lse_cotangent)
        check_shape("lse_cotangent", lse_cotangent, (batch, tq, heads), "(B, Tq, H)", match="q")
        dl = ar.cast(lse_cotangent).transpose(0, 2, 1)[..., None]
    return ar.cast(cotangent).transpose(0, 2, 1, 3), dl


def _tile(p, ar, rows, cols, lse, do, delta, dl):
    """P and dR (the scores' cotangent before the softcap) for query rows x key cols, (B, H, r, c)."""
    raw = ar.round(ar.round(p.q[:, :, rows] @ p.kt[..., cols]) * p.scale)
    s, slope = raw, 1.0
    if p.softcap is not None:
        capped = ar.round(ar.tanh(ar.round(raw / p.softcap)))
        s, slope = ar.round(p.softcap * capped), ar.round(1 - ar.round(capped ** 2))
    if p.bias is not None:
        s = ar.round(s + p.bias[:, :, rows, cols])
    row_lse = lse[:, :, rows]
    seen = p.mask[:, :, rows, cols] & np.isfinite(row_lse)  # a fully masked row's lse is -inf
    shifted = ar.round(np.where(seen, s - np.where(np.isfinite(row_lse), row_lse, 0.0), 0.0))
    P = np.where(seen, ar.round(ar.exp(shifted)), 0.0)
    dP = ar.round(do[:, :, rows] @ np.swapaxes(p.v[:, :, cols], -1, -2))
    return P, ar.round(ar.round(P * ar.round(ar.round(dP - delta[:, :, rows]) + dl[:, :, rows])) * slope)


def _backward(p, ar, out, lse, cotangent, lse_cotangent, block_q, block_k):
    """FlashAttention-2's loops: key blocks outside, query blocks inside; P from the saved lse.
    Every operation rounded by ``ar`` (float64: none), the blocks' sums accumulated unrounded."""
    do, dl = _cotangents(p, ar, cotangent, lse_cotangent)
    lse = lse[..., None]  # (B, H, Tq, 1)
    delta = ar.round((do * out).sum(axis=-1, keepdims=True))  # D_i = dO_i . out_i
    k = np.swapaxes(p.kt, -1, -2)
    dq, dk, dv = (np.zeros(x.shape, dtype=ar.dtype) for x in (p.q, k, p.v))
    tq, tk = p.q.shape[2], k.shape[2]
    for k0 in range(0, tk, block_k):
        cols = slice(k0, min(k0 + block_k, tk))
        for q0 in range(0, tq, block_q):
            rows = slice(q0, min(q0 + block_q, tq))
            P, dR = _tile(p, ar, rows, cols, lse, do, delta, dl)
            dv[:, :, cols] += np.swapaxes(P, -1, -2) @ do[:, :, rows]
            dq[:, :, rows] += p.scale * dR @ k[:, :, cols]
            dk[:, :, cols] += p.scale * np.swapaxes(dR, -1, -2) @ p.q[:, :, rows]
    return ar.round(dq), ar.round(dk), ar.round(dv)


def _batch_first(dq, dk, dv, kv_heads):
    """Heads-first gradients back to (B, T, H, .), the kv heads' summed over their query heads."""
    batch, heads = dq.shape[:2]

    def folded(g):
        return g.reshape(batch, kv_heads, heads // kv_heads, *g.shape[2:]).sum(axis=2).transpose(0, 2, 1, 3)

    return {"q": dq.transpose(0, 2, 1, 3), "k": folded(dk), "v": folded(dv)}


def softmax_attention_vjp(q, k, v, *, cotangent, lse_cotangent=None, scale=None, causal=False, window=None,
                          key_padding_mask=None, alibi_slopes=None, softcap=None):
    """The gradients of <out, cotangent> (+ <lse, lse_cotangent>) with respect to q, k and v, in
    float64 (module docstring): {"q": (B, Tq, H, D), "k": (B, Tk, Hkv, D), "v": (B, Tk, Hkv, Dv)}.
    Same options as ``softmax_attention``; ``lse_cotangent`` (B, Tq, H) when lse is an output."""
    p = _prepare(q, k, v, _FLOAT64, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                 alibi_slopes=alibi_slopes, softcap=softcap, return_lse=True)
    out, lse = _softmax_core(p, _FLOAT64)
    one_tile = max(p.q.shape[2], 1), max(p.v.shape[2], 1)
    return _batch_first(*_backward(p, _FLOAT64, out, lse, cotangent, lse_cotangent, *one_tile), np.shape(k)[2])


def flash_attention_backward(q, k, v, out, lse, *, cotangent, lse_cotangent=None, block_q=64, block_k=64,
                             scale=None, causal=False, window=None, key_padding_mask=None, alibi_slopes=None,
                             softcap=None):
    """FlashAttention-2's backward in float64 from the forward's saved out (B, Tq, H, Dv) and lse
    (B, Tq, H): D = rowsum(dO o out) once, then for each key block and each query block P
    recomputed as exp(s - lse), dV += P^T dO, dS = P (dP - D + dL), dQ += scale dS K, dK +=
    scale dS^T Q. Any block sizes >= 1. Returns the gradients as ``softmax_attention_vjp``."""
    block_q, block_k = positive_int("block_q", block_q), positive_int("block_k", block_k)
    p = _prepare(q, k, v, _FLOAT64, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                 alibi_slopes=alibi_slopes, softcap=softcap, return_lse=True)
    batch, heads, tq, _ = p.q.shape
    out, lse = as_real("out", out), as_real("lse", lse)
    check_shape("out", out, (batch, tq, heads, p.v.shape[3]), "(B, Tq, H, Dv)", match="q and v")
    check_shape("lse", lse, (batch, tq, heads), "(B, Tq, H)", match="q")
    return _batch_first(*_backward(p, _FLOAT64, out.transpose(0, 2, 1, 3), lse.transpose(0, 2, 1), cotangent,
                                   lse_cotangent, block_q, block_k), np.shape(k)[2])


def attention_vjp_in_dtype(q, k, v, *, dtype, cotangent, lse_cotangent=None, scale=None, causal=False, window=None,
                           key_padding_mask=None, alibi_slopes=None, softcap=None):
    """``softmax_attention_vjp``'s backward evaluated in a low precision ``dtype``; returns that
    dtype. The baseline a low-precision backward kernel is judged against (docs/gradients.md).

    The forward as ``attention_in_dtype`` (inputs, constants and every intermediate rounded to
    dtype, sums accumulated in float32), then the cotangents rounded to dtype and every step of
    the backward as well: D = dO . out, the recomputed P = exp(s - lse), dP = dO v^T,
    dS = P (dP - D + dL), the softcap's slope, and dQ, dK, dV accumulated in float32 and rounded
    once (the kv heads' after their query heads' sum)."""
    dt = float_dtype("dtype", dtype)
    ar = _rounding_arith(dt)
    with np.errstate(over="ignore", invalid="ignore"):
        p = _prepare(q, k, v, ar, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                     alibi_slopes=alibi_slopes, softcap=softcap, return_lse=True)
        out, lse = _softmax_core(p, ar)
        one_tile = max(p.q.shape[2], 1), max(p.v.shape[2], 1)
        grads = _batch_first(*_backward(p, ar, out, lse, cotangent, lse_cotangent, *one_tile), np.shape(k)[2])
        return {name: ar.round(g).astype(dt) for name, g in grads.items()}
