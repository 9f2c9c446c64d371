"""Tiled and split forms of softmax attention: FlashAttention's online softmax, flash-decoding.

FlashAttention: Dao et al. 2022 (arXiv:2205.14135); FlashAttention-2: Dao 2023
(arXiv:2307.08691), Algorithm 1. Split-KV combine: flash-decoding (Dao et al. 2023),
``Dao-AILab/flash-attention: csrc/flash_attn/src/flash_fwd_kernel.h combine_attn_seqk_parallel``.
"""

import numpy as np

from .._checks import as_real, check_layout, check_shape, positive_int
from .softmax import _FLOAT64, _finish, _mp_arith, _prepare, _scores, _softmax_core


def _flash_core(p, ar, block_q, block_k):
    """FlashAttention-2 forward over query blocks and key blocks, in the exact arithmetic ``ar``.

    Per query block, for each key block with scores S (masked keys -inf):
        m_new = max(m, rowmax S);  alpha = exp(m - m_new);  E = exp(S - m_new)
        l = alpha l + rowsum E;    acc = alpha acc + E V;   m = m_new
    then out = acc / l and lse = m + log l. While every key so far is masked m_new = -inf,
    and the shift used is 0 so that exp(-inf - 0) = 0 rather than NaN.
    """
    batch, heads, seqlen_q, _ = p.q.shape
    seqlen_k, dv = p.v.shape[2], p.v.shape[3]
    zero, one = ar.cast(0.0)[()], ar.cast(1.0)[()]
    outs = [np.zeros((batch, heads, 0, dv), dtype=ar.dtype)]  # so that Tq = 0 gives empty outputs
    lses = [np.zeros((batch, heads, 0, 1), dtype=ar.dtype)]
    for q0 in range(0, seqlen_q, block_q):
        rows = slice(q0, min(q0 + block_q, seqlen_q))
        n = rows.stop - rows.start
        m = np.full((batch, heads, n, 1), ar.neg_inf, dtype=ar.dtype)
        l = np.full((batch, heads, n, 1), zero, dtype=ar.dtype)
        acc = np.full((batch, heads, n, dv), zero, dtype=ar.dtype)
        for k0 in range(0, seqlen_k, block_k):
            cols = slice(k0, min(k0 + block_k, seqlen_k))
            s = np.where(p.mask[:, :, rows, cols], _scores(p, ar, rows, cols), ar.neg_inf)
            m_new = np.maximum(m, s.max(axis=-1, keepdims=True))
            shift = np.where(m_new == ar.neg_inf, zero, m_new)
            alpha = ar.exp(m - shift)
            e = ar.exp(s - shift)
            l = alpha * l + e.sum(axis=-1, keepdims=True)
            acc = alpha * acc + e @ p.v[:, :, cols]
            m = m_new
        outs.append(acc / np.where(l == 0, one, l))
        with np.errstate(divide="ignore"):  # log(0) = -inf for a fully masked row
            lses.append(np.where(m == ar.neg_inf, zero, m) + ar.log(l))
    return np.concatenate(outs, axis=2), np.concatenate(lses, axis=2)[..., 0]


def flash_attention(q, k, v, *, block_q=64, block_k=64, scale=None, causal=False, window=None,
                    key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False):
    """FlashAttention's tiled online-softmax forward in float64; same result as ``softmax_attention``.

    Same arguments and outputs as ``softmax_attention``, plus block_q and block_k (ints >= 1;
    they need not divide the lengths and may exceed them). For each block of block_q queries
    the keys are visited in blocks of block_k with a running max m, running sum l and an
    unnormalised accumulator acc (FlashAttention-2, Algorithm 1, rescaling deferred):

        m' = max(m, rowmax S_j),  l' = e^(m - m') l + rowsum e^(S_j - m'),
        acc' = e^(m - m') acc + e^(S_j - m') V_j,   out = acc / l,   lse = m + log l

    where S_j holds the scaled, capped, biased and masked (-inf) scores of key block j.
    Blocks in which every key is masked leave the state unchanged (no NaN); a fully masked
    row gives out = 0 and lse = -inf. Unlike the CUDA kernel, which skips key blocks that
    causal or local masking hides entirely, every block is visited.
    Matches ``Dao-AILab/flash-attention: csrc/flash_attn/src/flash_fwd_kernel.h
    compute_attn_1rowblock`` and ``softmax.h`` (online softmax).
    """
    block_q, block_k = positive_int("block_q", block_q), positive_int("block_k", block_k)
    p = _prepare(q, k, v, _FLOAT64, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                 alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)
    return _finish(p, *_flash_core(p, _FLOAT64, block_q, block_k))


def flash_attention_mp(q, k, v, *, dps=50, block_q=64, block_k=64, scale=None, causal=False, window=None,
                       key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False):
    """``flash_attention`` in mpmath at ``dps`` decimal digits; returns object arrays of mpf."""
    import mpmath

    dps = positive_int("dps", dps)
    block_q, block_k = positive_int("block_q", block_q), positive_int("block_k", block_k)
    ar = _mp_arith()
    with mpmath.workdps(dps):
        p = _prepare(q, k, v, ar, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                     alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)
        return _finish(p, *_flash_core(p, ar, block_q, block_k))


def combine_partials(outputs, lses):
    """Combine split-KV partial results (flash-decoding): returns (out, lse), float64.

    outputs (S, B, Tq, H, Dv), lses (S, B, Tq, H), each partial normalised over its own keys:

        lse = log sum_s exp(lse_s),    out = sum_s exp(lse_s - lse) out_s

    A partial with lse_s = -inf (no visible key) contributes nothing, whatever its output
    holds; if every partial is -inf, out = 0 and lse = -inf.
    """
    outs, lse_s = as_real("outputs", outputs), as_real("lses", lses)
    check_layout("outputs", outs, "(S, B, Tq, H, Dv)", ("B", "Tq"))
    check_shape("lses", lse_s, outs.shape[:4], "(S, B, Tq, H)", match="outputs")
    empty = lse_s == -np.inf
    m = lse_s.max(axis=0)
    m = np.where(m == -np.inf, 0.0, m)
    w = np.exp(lse_s - m)
    total = w.sum(axis=0)
    weighted = (w[..., None] * np.where(empty[..., None], 0.0, outs)).sum(axis=0)
    out = weighted / np.where(total == 0, 1.0, total)[..., None]
    with np.errstate(divide="ignore"):  # log(0) = -inf when every partial is empty
        lse = m + np.log(total)
    return out, lse


def split_kv_attention(q, k, v, *, num_splits, scale=None, causal=False, window=None, key_padding_mask=None,
                       alibi_slopes=None, softcap=None, return_lse=False):
    """Split-KV attention (flash-decoding) in float64; same result as ``softmax_attention``.

    The keys are cut into ``num_splits`` contiguous ranges [Tk s / S, Tk (s+1) / S) (floors;
    sizes differ by at most one, and num_splits > Tk leaves some empty). Partial s is
    ``softmax_attention`` with every key outside range s masked, so causal/window masks and
    ALiBi positions stay those of the full key sequence; an empty or fully masked range is a
    partial with out = 0, lse = -inf. The partials are merged by ``combine_partials``.
    """
    splits = positive_int("num_splits", num_splits)
    p = _prepare(q, k, v, _FLOAT64, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                 alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)
    j = np.arange(p.kt.shape[-1])
    bounds = np.arange(splits + 1) * len(j) // splits
    outs, lses = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        part = p._replace(mask=p.mask & (j >= lo) & (j < hi), return_lse=True)
        out, lse = _finish(part, *_softmax_core(part, _FLOAT64))
        outs.append(out)
        lses.append(lse)
    out, lse = combine_partials(outs, lses)
    return (out, lse) if p.return_lse else out
