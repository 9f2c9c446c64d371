"""CoLT5's conditional computation (Ainslie et al. 2023, "CoLT5: Faster Long-Range Transformers
with Conditional Computation", sec. 3): a light branch on every token plus a heavy branch on the
k tokens a router picks, scaled by their router scores.

    feed-forward   y_t = FFN_light(x_t) + 1[t in top_k(s)] s_t FFN_heavy(x_t)
    attention      y_t = A_light(x)_t + 1[t in top_kq(s^q)] s^q_t A_heavy(x)_t,
                   A_heavy: the routed queries attend to the routed keys and values only,
                   the values scaled by their kv scores s^kv

x (B, T, D); router scores (B, T), one per token, given (the paper normalises them with a soft
top-k, Lei et al. 2023's coordinate descent: the scores' normalisation is the caller's); each
batch row routes its own k tokens, the top scores with ties to the earlier token (the project's
tie rule, ``reference.eviction.topk_lowest_index``). The feed-forwards are SwiGLU
(``moe.expert_ffn``), light and heavy with their own hidden sizes. The light attention is local,
``window`` keys on each side (non-causal: CoLT5 is an encoder), the heavy one full over the
routed set; both multi-head, q, k, v projections ``*_qkv`` (3, D, H, d), output projection
``*_out`` (H, d, D), scale 1/sqrt(d), no positional bias.

lucidrains/CoLT5-attention: colt5_attention/transformer_block.py ConditionalRoutedFeedForward and
ConditionalRoutedAttention compute these sums; its README says the paper leaves open how the kv
scores are used and multiplies them into the projected values, as here. Differences: scores
given, no soft top-k, no null key, no masks.
"""

import numpy as np

from .._checks import as_real, check_layout, check_shape, int_in_range, positive_int
from ..attention import softmax_attention
from ..eviction import topk_lowest_index
from .layer import _ffn


def _scores(name, scores, x):
    s = as_real(name, scores)
    check_shape(name, s, x.shape[:2], "(B, T)", match="x")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} must be finite")
    return s


def _ffn_weights(prefix, w_gate, w_up, w_down, D):
    w_gate = as_real(f"{prefix}_gate", w_gate)
    _, F = check_layout(f"{prefix}_gate", w_gate, "(D, F)")
    check_shape(f"{prefix}_gate", w_gate, (D, F), "(D, F)", match="x")
    w_up, w_down = as_real(f"{prefix}_up", w_up), as_real(f"{prefix}_down", w_down)
    check_shape(f"{prefix}_up", w_up, (D, F), "(D, F)", match=f"{prefix}_gate")
    check_shape(f"{prefix}_down", w_down, (F, D), "(F, D)", match=f"{prefix}_gate")
    return w_gate, w_up, w_down


def _routed(name, scores, k, k_name="k"):
    """(B, k) the routed tokens of every batch row of ``scores`` (B, T), ascending: the top k
    scores, ties to the earlier token."""
    k = int_in_range(k_name, k, 0, scores.shape[1])
    if scores.shape[1] == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    return topk_lowest_index(scores, k)


def routed_mask(scores, k):
    """(B, T) bool: True at the k routed tokens of each batch row of ``scores`` (B, T), the top k
    scores with ties to the earlier token."""
    scores = as_real("scores", scores)
    check_layout("scores", scores, "(B, T)")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    mask = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(mask, _routed("scores", scores, k), True, axis=1)
    return mask


def colt5_ffn(x, scores, light_gate, light_up, light_down, heavy_gate, heavy_up, heavy_down, *, k):
    """CoLT5's conditional feed-forward (eq. 1; module docstring): the light FFN on every token,
    the heavy FFN gathered onto the k routed tokens of each row, scaled by their scores and
    scattered back. Returns y (B, T, D)."""
    x = as_real("x", x)
    B, T, D = check_layout("x", x, "(B, T, D)")
    s = _scores("scores", scores, x)
    light = _ffn_weights("light", light_gate, light_up, light_down, D)
    heavy = _ffn_weights("heavy", heavy_gate, heavy_up, heavy_down, D)
    routed = _routed("scores", s, k)
    y = _ffn(x.reshape(-1, D), *light).reshape(x.shape)
    rows = np.arange(B)[:, None]
    heavy_out = _ffn(x[rows, routed].reshape(-1, D), *heavy).reshape(routed.shape + (D,))
    y[rows, routed] += s[rows, routed][..., None] * heavy_out
    return y


def _attention_weights(qkv_name, qkv, out, D, *, out_name, match="x"):
    qkv = as_real(qkv_name, qkv)
    three, D_qkv, H, d = check_layout(qkv_name, qkv, "(3, D, H, d)")
    if (three, D_qkv) != (3, D):
        raise ValueError(f"{qkv_name} must have shape (3, D, H, d) with D={D} to match {match}; got shape {qkv.shape}")
    out = as_real(out_name, out)
    check_shape(out_name, out, (H, d, D), "(H, d, D)", match=qkv_name)
    return qkv, out


def multi_head(x_q, x_kv, qkv, out, *, value_scale=None, window=None, key_padding_mask=None):
    """Softmax attention of x_q's queries (B, n, D) over x_kv's keys (B, m, D), projected by qkv
    (3, D, H, d) and out (H, d, D), scale 1/sqrt(d); ``value_scale`` (B, m) multiplies the values;
    ``window`` and ``key_padding_mask`` as ``attention.softmax_attention``'s. Returns (B, n, D)."""
    x_q, x_kv = as_real("x_q", x_q), as_real("x_kv", x_kv)
    B, _, D = check_layout("x_q", x_q, "(B, n, D)", may_be_empty=("B", "n"))
    _, m, D_kv = check_layout("x_kv", x_kv, "(B, m, D)", may_be_empty=("B", "m"))
    if (x_kv.shape[0], D_kv) != (B, D):
        raise ValueError(f"x_kv must have shape (B, m, D) with (B, D)={(B, D)} to match x_q; got shape {x_kv.shape}")
    qkv, out = _attention_weights("qkv", qkv, out, D, out_name="out", match="x_q")
    if value_scale is not None:
        value_scale = as_real("value_scale", value_scale)
        check_shape("value_scale", value_scale, (B, m), "(B, m)", match="x_kv")
    return _heads(x_q, x_kv, qkv, out, value_scale, window=window, key_padding_mask=key_padding_mask)


def _heads(x_q, x_kv, qkv, out, value_scale, **attention):
    q = np.einsum("btd,dhe->bthe", x_q, qkv[0])
    k, v = np.einsum("btd,dhe->bthe", x_kv, qkv[1]), np.einsum("btd,dhe->bthe", x_kv, qkv[2])
    if value_scale is not None:
        v = v * value_scale[..., None, None]
    return np.einsum("bthe,hed->btd", softmax_attention(q, k, v, **attention), out)


def colt5_attention(x, q_scores, kv_scores, light_qkv, light_out, heavy_qkv, heavy_out, *, window, k_q, k_kv):
    """CoLT5's conditional attention (module docstring): local multi-head attention over
    ``window`` keys on each side for every token, plus, for the k_q routed queries of each row,
    full attention over the k_kv routed keys and values (values scaled by their kv scores),
    scaled by the query's score. Returns y (B, T, D)."""
    x = as_real("x", x)
    B, T, D = check_layout("x", x, "(B, T, D)")
    s_q, s_kv = _scores("q_scores", q_scores, x), _scores("kv_scores", kv_scores, x)
    light_qkv, light_out = _attention_weights("light_qkv", light_qkv, light_out, D, out_name="light_out")
    heavy_qkv, heavy_out = _attention_weights("heavy_qkv", heavy_qkv, heavy_out, D, out_name="heavy_out")
    window = positive_int("window", window)
    queries, keys = _routed("q_scores", s_q, k_q, "k_q"), _routed("kv_scores", s_kv, k_kv, "k_kv")
    y = _heads(x, x, light_qkv, light_out, None, window=(window, window))
    rows = np.arange(B)[:, None]
    heavy = _heads(x[rows, queries], x[rows, keys], heavy_qkv, heavy_out, s_kv[rows, keys])
    y[rows, queries] += s_q[rows, queries][..., None] * heavy
    return y
