"""Deliberately wrong attention implementations: each must be rejected by a claim or by check().

They are written the way a kernel author's bugs look, as small plain-NumPy functions with the
reference's signature. Only the features each mutant needs are supported; the tests narrow the
inputs accordingly.
"""

import numpy as np

from seqcheck.reference.attention import flash_attention_backward, flash_attention_mp, softmax_attention


def _scores(q, k, scale):
    group = q.shape[2] // k.shape[2]
    scale = 1.0 / np.sqrt(q.shape[3]) if scale is None else scale
    return scale * np.einsum("bqhd,bkhd->bhqk", q, np.repeat(k, group, axis=2))


def _softmax(s):
    with np.errstate(invalid="ignore"):  # rows with no visible key become NaN: these are mutants
        weights = np.exp(s - s.max(axis=-1, keepdims=True))
        return weights / weights.sum(axis=-1, keepdims=True)


def _finish(weights, v, q):
    group = q.shape[2] // v.shape[2]
    return np.einsum("bhqk,bkhd->bqhd", weights, np.repeat(v, group, axis=2))


def flash_without_rescale(q, k, v, *, block_q=64, block_k=64, scale=None, causal=False, window=None,
                          key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False):
    """Online softmax that rescales the running sum but forgets to rescale the running output."""
    s = _scores(q, k, scale)
    out = np.zeros(s.shape[:3] + (v.shape[3],))
    running_max = np.full(s.shape[:3], -np.inf)
    running_sum = np.zeros(s.shape[:3])
    for start in range(0, s.shape[3], block_k):
        block = s[..., start:start + block_k]
        new_max = np.maximum(running_max, block.max(axis=-1))
        p = np.exp(block - new_max[..., None])
        running_sum = running_sum * np.exp(running_max - new_max) + p.sum(axis=-1)
        group = q.shape[2] // v.shape[2]
        out = out + np.einsum("bhqk,bkhd->bhqd", p, np.repeat(v[:, start:start + block_k], group, axis=2))
        running_max = new_max
    result = (out / running_sum[..., None]).transpose(0, 2, 1, 3)
    return (result, (running_max + np.log(running_sum)).transpose(0, 2, 1)) if return_lse else result


def causal_off_by_one(q, k, v, *, scale=None, causal=False, return_lse=False, **unused):
    """Causal mask that lets each query see one key past the diagonal."""
    s = _scores(q, k, scale)
    Tq, Tk = q.shape[1], k.shape[1]
    visible = np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + Tk - Tq + (1 if causal else Tk)
    return _finish(_softmax(np.where(visible, s, -np.inf)), v, q)


def causal_top_left(q, k, v, *, scale=None, causal=False, return_lse=False, **unused):
    """Causal mask aligned top-left (torch's is_causal) instead of bottom-right (flash-attention)."""
    s = _scores(q, k, scale)
    Tq, Tk = q.shape[1], k.shape[1]
    visible = np.arange(Tk)[None, :] <= np.arange(Tq)[:, None] + (0 if causal else Tk)
    return _finish(_softmax(np.where(visible, s, -np.inf)), v, q)


def split_kv_averaged(q, k, v, *, num_splits, return_lse=False, **options):
    """Split-KV that averages the partial outputs instead of weighting them by their lse."""
    bounds = np.linspace(0, k.shape[1], num_splits + 1).astype(int)
    partials = [softmax_attention(q, k[:, a:b], v[:, a:b], **options) for a, b in zip(bounds, bounds[1:]) if b > a]
    return np.mean(partials, axis=0)


def gqa_modulo_heads(q, k, v, **options):
    """GQA that maps query head h to kv head h % Hkv instead of h // (H / Hkv)."""
    H, Hkv = q.shape[2], k.shape[2]
    order = np.arange(H) % Hkv
    return softmax_attention(q, k[:, :, order], v[:, :, order], **options)


def lse_without_max(q, k, v, **options):
    """Attention whose log-sum-exp forgets to add back the row maximum."""
    out, lse = softmax_attention(q, k, v, **{**options, "return_lse": True})
    s = _scores(q, k, options.get("scale"))
    return out, lse - s.max(axis=-1).transpose(0, 2, 1)


def flash_at_15_digits(**args):
    """FlashAttention evaluated at 15 digits: float64-level agreement is not 50-digit exactness."""
    return flash_attention_mp(**{**args, "dps": 15})


def scale_over_d(q, k, v, *, scale=None, **options):
    """The default scale 1/D instead of 1/sqrt(D)."""
    return softmax_attention(q, k, v, scale=1.0 / q.shape[3] if scale is None else scale, **options)


def backward_ignoring_causal(q, k, v, out, lse, *, causal=False, **options):
    """The backward recomputes P = exp(s - lse) over every key, the causal mask forgotten
    (triton-lang/triton #4541: the fused-attention tutorial's backward ignores ``causal``)."""
    return flash_attention_backward(q, k, v, out, lse, causal=False, **options)


MUTANTS = {
    "attention.flash.tiled == attention.softmax.parallel": flash_without_rescale,
    "attention.flash.split_kv == attention.softmax.parallel": split_kv_averaged,
    "attention.softmax.gqa": gqa_modulo_heads,
    "attention.softmax.row_shift": lse_without_max,
    "attention.flash.mpmath": flash_at_15_digits,
    "attention.softmax.torch_sdpa": scale_over_d,
    "attention.flash.backward": backward_ignoring_causal,
}
"""The mutant each claim of the family must reject, by claim key."""
