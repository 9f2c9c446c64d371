"""ALiBi: attention with linear biases (Press, Smith & Lewis 2022, arXiv:2108.12409)."""

import numpy as np

from .._checks import as_real, check_layout, int_in_range, positive_int


def alibi_slopes(num_heads):
    """Per-head ALiBi slopes, shape (H,), float64.

    For H a power of two the slopes are the geometric sequence
    ``m_h = 2 ** (-8 (h + 1) / H)``, h = 0..H-1. Otherwise, with ``c`` the largest power
    of two below H, they are the c slopes for ``c`` heads followed by every other slope
    (indices 0, 2, 4, ...) of the sequence for ``2c`` heads, the first ``H - c`` of them.
    For H = 6: [1/4, 1/16, 1/64, 1/256, 1/2, 1/8].

    Matches ``ofirpress/attention_with_linear_biases: fairseq/models/transformer.py
    get_slopes``. Difference: each slope is ``exp2`` of its exact exponent, where the
    original forms ``start * ratio ** i``; the two can differ in the last bit.
    """
    n = positive_int("num_heads", num_heads)

    def power_of_two(count):
        return np.exp2(-8.0 * np.arange(1, count + 1) / count)

    if n & (n - 1) == 0:
        return power_of_two(n)
    closest = 1 << (n.bit_length() - 1)
    return np.concatenate([power_of_two(closest), power_of_two(2 * closest)[0::2][: n - closest]])


def _relative_distance(seqlen_q, seqlen_k):
    """|i + Tk - Tq - j| for query i and key j, shape (Tq, Tk): queries aligned to the end of the keys."""
    i = np.arange(seqlen_q)[:, None]
    j = np.arange(seqlen_k)[None, :]
    return np.abs(i + seqlen_k - seqlen_q - j)


def alibi_bias(slopes, Tq, Tk):
    """ALiBi bias added to the attention scores, shape (H, Tq, Tk), float64.

        bias[h, i, j] = -slopes[h] * |i + Tk - Tq - j|

    Queries are aligned to the end of the key sequence (query i sits at key position
    i + Tk - Tq), as in ``Dao-AILab/flash-attention: tests/test_flash_attn.py
    attn_bias_from_alibi_slopes`` (non-causal branch) and ``csrc/flash_attn/src/alibi.h``.
    Difference: flash-attention's causal branch uses ``+slopes[h] * j`` instead, which differs
    from this bias by a constant per row: same softmax, log-sum-exp shifted by
    ``slopes[h] * (i + Tk - Tq)``.
    """
    s = as_real("slopes", slopes)
    check_layout("slopes", s, "(H,)")
    tq = int_in_range("Tq", Tq, 0)
    tk = int_in_range("Tk", Tk, 0)
    return -s[:, None, None] * _relative_distance(tq, tk)
