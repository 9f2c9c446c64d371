"""Softmax attention (Vaswani et al. 2017, arXiv:1706.03762) with FlashAttention's options.

One private core evaluates the definition under an ``_Arith``: float64 (``softmax_attention``),
a low-precision dtype with every intermediate rounded (``attention_in_dtype``), or mpmath
(``softmax_attention_mp``). ``flash.py`` reuses ``_prepare`` and ``_scores``.
"""

import numbers
from typing import Callable, NamedTuple

import numpy as np

from ..arith import accumulator, round_to
from .._checks import as_real, check_bool, check_layout, finite_real, float_dtype, int_in_range, positive_int
from ..positional.alibi import _relative_distance


class _Arith(NamedTuple):
    """How one evaluation represents numbers."""

    dtype: np.dtype  # storage dtype of every intermediate
    cast: Callable  # array-like -> array in this arithmetic (rounded)
    round: Callable  # rounds an intermediate to the evaluation precision
    exp: Callable
    log: Callable
    tanh: Callable
    sqrt: Callable
    neg_inf: object


def _identity(x):
    return x


_FLOAT64 = _Arith(
    np.dtype(np.float64), lambda x: np.asarray(x, dtype=np.float64), _identity,
    np.exp, np.log, np.tanh, np.sqrt, -np.inf,
)


def _rounding_arith(dtype):
    """Values kept in float32 (float64 for a 64-bit dtype) and rounded to ``dtype`` after each op.

    So elementwise operations are correctly rounded to dtype, and reductions (dot products,
    the softmax sum) accumulate in float32 and are rounded once, as in GPU kernels and in
    ``ml_dtypes`` matmul, which returns float32.
    """
    work = accumulator(dtype)

    def rnd(x):
        return round_to(x, dtype).astype(work)

    return _Arith(
        work, lambda x: rnd(np.asarray(x, dtype=np.float64)), rnd,
        np.exp, np.log, np.tanh, np.sqrt, -np.inf,
    )


def _mp_arith():
    import mpmath

    def vec(f):
        return np.vectorize(f, otypes=[object])

    to_mpf = vec(mpmath.mpf)

    def cast(x):
        a = np.asarray(x)
        return to_mpf(a if a.dtype == object else a.astype(np.float64).astype(object))

    return _Arith(
        np.dtype(object), cast, _identity,
        vec(mpmath.exp), vec(mpmath.log), vec(mpmath.tanh), vec(mpmath.sqrt), mpmath.mpf("-inf"),
    )


# ----------------------------------------------------------------------------- validation

def _window(window):
    """(left, right) with None for unbounded; flash-attention's window_size=(-1, -1) is (None, None)."""
    if window is None:
        return None, None
    if isinstance(window, (str, bytes)) or not hasattr(window, "__len__") or len(window) != 2:
        raise ValueError(f"window must be None or a pair (left, right); got {window!r}")
    sides = []
    for side, w in zip(("left", "right"), window):
        if w is not None and (isinstance(w, (bool, np.bool_)) or not isinstance(w, numbers.Integral)):
            raise TypeError(f"window {side} must be None or an int >= 0; got {w!r}")
        if w is not None and w < 0:
            raise ValueError(
                f"window {side} must be None or an int >= 0; got {w} "
                "(flash-attention's -1, an unbounded side, corresponds to None here)"
            )
        sides.append(None if w is None else int(w))
    return tuple(sides)


def attention_mask(batch, Tq, Tk, *, causal=False, window=None, key_padding_mask=None):
    """Which keys each query sees: bool (B, Tq, Tk), True = attend.

    Queries are aligned to the end of the keys (bottom-right), as in FlashAttention: query i
    sees key j iff

        i + Tk - Tq - left <= j <= i + Tk - Tq + right   and   key_padding_mask[b, j]

    with ``window=(left, right)`` (None = unbounded on that side) and ``causal=True`` meaning
    right = 0, intersected with the window. key_padding_mask is bool (B, Tk), True = valid.

    Matches ``Dao-AILab/flash-attention: tests/test_flash_attn.py construct_local_mask``.
    Difference: there, with a key_padding_mask, the diagonal is aligned to each row's count
    of valid keys (right padding assumed); here it is always aligned to Tk and the padding
    mask only removes keys.
    """
    b = int_in_range("batch", batch, 0)
    tq = int_in_range("Tq", Tq, 0)
    tk = int_in_range("Tk", Tk, 0)
    check_bool("causal", causal)
    left, right = _window(window)
    if causal:
        right = 0
    diagonal = np.arange(tq)[:, None] + tk - tq
    j = np.arange(tk)[None, :]
    visible = np.ones((tq, tk), dtype=bool)
    if left is not None:
        visible &= j >= diagonal - left
    if right is not None:
        visible &= j <= diagonal + right
    mask = np.broadcast_to(visible, (b, tq, tk))
    if key_padding_mask is None:
        return mask.copy()
    kpm = np.asarray(key_padding_mask)
    if kpm.dtype != bool:
        raise TypeError(f"key_padding_mask must be a bool array (True = valid key); got dtype {kpm.dtype}")
    if kpm.shape != (b, tk):
        raise ValueError(f"key_padding_mask must have shape (B, Tk)=({b}, {tk}); got {kpm.shape}")
    return mask & kpm[:, None, :]


class _Problem(NamedTuple):
    q: np.ndarray  # (B, H, Tq, D)
    kt: np.ndarray  # (B, H, D, Tk), kv heads repeated to H
    v: np.ndarray  # (B, H, Tk, Dv)
    scale: object
    softcap: object  # None when off
    bias: object  # (B or 1, H, Tq, Tk) or None
    mask: np.ndarray  # (B, 1, Tq, Tk), True = attend
    return_lse: bool


def _prepare(q, k, v, ar, *, scale, causal, window, key_padding_mask, alibi_slopes, softcap, return_lse):
    q, k, v = (as_real(name, x, exact_ok=True) for name, x in (("q", q), ("k", k), ("v", v)))
    batch, tq, heads, d = check_layout("q", q, "(B, Tq, H, D)", ("B", "Tq"))
    check_layout("k", k, "(B, Tk, Hkv, D)", ("B", "Tk"))
    if k.shape[0] != batch or k.shape[3] != d:
        raise ValueError(f"k must have shape (B, Tk, Hkv, D)=({batch}, Tk, Hkv, {d}) to match q; got {k.shape}")
    _, tk, kv_heads, _ = k.shape
    check_layout("v", v, "(B, Tk, Hkv, Dv)", ("B", "Tk"))
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(
            f"v must have shape (B, Tk, Hkv, Dv)=({batch}, {tk}, {kv_heads}, Dv) to match k; got {v.shape}"
        )
    if heads % kv_heads:
        raise ValueError(f"q's head count H={heads} must be a multiple of k's head count Hkv={kv_heads} (GQA/MQA)")
    check_bool("return_lse", return_lse)
    mask = attention_mask(batch, tq, tk, causal=causal, window=window, key_padding_mask=key_padding_mask)

    def const(x):
        return ar.cast(x)[()]

    if scale is None:
        scale = np.asarray(ar.round(1 / ar.sqrt(ar.cast(d))))[()]
    else:
        scale = const(finite_real("scale", scale))
    if softcap is not None and finite_real("softcap", softcap) < 0:
        raise ValueError(f"softcap must be None, 0 (off) or > 0; got {softcap!r}")
    softcap = const(softcap) if softcap else None
    bias = None
    if alibi_slopes is not None:
        slopes = as_real("alibi_slopes", alibi_slopes, exact_ok=True)
        if slopes.shape not in ((heads,), (batch, heads)):
            raise ValueError(
                f"alibi_slopes must have shape (H,)=({heads},) or (B, H)=({batch}, {heads}) to match q; "
                f"got {slopes.shape}"
            )
        distance = _relative_distance(tq, tk).astype(ar.dtype)
        bias = ar.round(-(ar.cast(slopes.reshape(-1, heads))[:, :, None, None] * distance))
    group = heads // kv_heads
    return _Problem(
        q=ar.cast(q).transpose(0, 2, 1, 3),
        kt=np.repeat(ar.cast(k), group, axis=2).transpose(0, 2, 3, 1),
        v=np.repeat(ar.cast(v), group, axis=2).transpose(0, 2, 1, 3),
        scale=scale, softcap=softcap, bias=bias, mask=mask[:, None], return_lse=return_lse,
    )


# ----------------------------------------------------------------------------- core

def _scores(p, ar, rows, cols):
    """s = scale * q.k, then softcap * tanh(s / softcap), then + ALiBi bias; (B, H, rows, cols), unmasked."""
    s = ar.round(ar.round(p.q[:, :, rows] @ p.kt[..., cols]) * p.scale)
    if p.softcap is not None:
        s = ar.round(p.softcap * ar.round(ar.tanh(ar.round(s / p.softcap))))
    if p.bias is not None:
        s = ar.round(s + p.bias[:, :, rows, cols])
    return s


def _softmax_core(p, ar):
    """out = softmax(s) v over the visible keys; lse = log sum exp s. Shapes (B, H, Tq, Dv), (B, H, Tq)."""
    zero, one = ar.cast(0.0)[()], ar.cast(1.0)[()]
    visible = p.mask
    s = _scores(p, ar, slice(None), slice(None))
    m = np.where(visible, s, ar.neg_inf).max(axis=-1, keepdims=True, initial=ar.neg_inf)  # Tk = 0: no key
    m = np.where(m == ar.neg_inf, zero, m)  # a fully masked row: any finite shift will do
    e = np.where(visible, ar.round(ar.exp(ar.round(np.where(visible, s - m, zero)))), zero)
    total = ar.round(e.sum(axis=-1, keepdims=True))
    probs = ar.round(e / np.where(total == 0, one, total))
    out = ar.round(probs @ p.v)
    with np.errstate(divide="ignore"):  # log(0) = -inf for a fully masked row
        lse = ar.round(m + ar.round(ar.log(total)))
    return out, lse[..., 0]


def _finish(p, out, lse):
    """Back to batch-first: out (B, Tq, H, Dv), lse (B, Tq, H)."""
    out = out.transpose(0, 2, 1, 3)
    return (out, lse.transpose(0, 2, 1)) if p.return_lse else out


# ----------------------------------------------------------------------------- public

def softmax_attention(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                      alibi_slopes=None, softcap=None, return_lse=False):
    """Softmax attention in float64: out (B, Tq, H, Dv), and lse (B, Tq, H) if return_lse.

    q (B, Tq, H, D), k (B, Tk, Hkv, D), v (B, Tk, Hkv, Dv); H a multiple of Hkv, query head h
    reading kv head h // (H / Hkv) (GQA, MQA). For query i, head h and key j:

        s_ij  = scale * q_i . k_j                                scale defaults to 1/sqrt(D)
        s_ij  = softcap * tanh(s_ij / softcap)                   if softcap (None or 0: off)
        s_ij += -slope_h * |i + Tk - Tq - j|                     if alibi_slopes, (H,) or (B, H)
        out_i = sum_j P_ij v_j,  P_ij = exp(s_ij) / sum_j' exp(s_ij') over the visible keys
        lse_i = log sum_j exp(s_ij) over the visible keys

    Visible keys are those of ``attention_mask`` (causal and window=(left, right) aligned
    bottom-right, key_padding_mask True = valid). A row with no visible key gets out = 0 and
    lse = -inf, without NaN or warnings; torch's scaled_dot_product_attention also returns 0
    there (older versions gave NaN).

    Matches ``Dao-AILab/flash-attention: tests/test_flash_attn.py attention_ref`` (order: scale,
    softcap, mask, bias, softmax). Differences: lse is batch-first (B, Tq, H) where
    flash_attn_func returns softmax_lse as (B, H, Tq); with causal ALiBi, flash-attention's
    kernel and attn_bias_from_alibi_slopes add ``+slope_h * j`` instead, a per-row constant
    away from this bias, so out agrees and their lse is this lse + slope_h * (i + Tk - Tq).
    Note that torch's ``scaled_dot_product_attention(is_causal=True)`` aligns the causal
    diagonal top-left (query i sees keys j <= i) when Tq != Tk, unlike flash-attention and
    this reference; they agree when Tq == Tk.
    """
    p = _prepare(q, k, v, _FLOAT64, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                 alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)
    return _finish(p, *_softmax_core(p, _FLOAT64))


def attention_in_dtype(q, k, v, *, dtype, scale=None, causal=False, window=None, key_padding_mask=None,
                       alibi_slopes=None, softcap=None, return_lse=False):
    """``softmax_attention``'s definition evaluated in a low precision ``dtype``; returns that dtype.

    The baseline a low-precision kernel is judged against (DESIGN.md, "Tolerance").
    ``dtype``: numpy float16/float32/float64 or an ml_dtypes float (bfloat16, float8_*).
    Inputs and constants (scale, softcap, slopes) are rounded to dtype; so is every
    intermediate: q.k, the scaled, capped and biased scores, s - max, exp, the row sum, the
    probabilities and P @ v, and the lse terms. Elementwise operations are correctly rounded;
    reductions accumulate in float32 (float64 for a 64-bit dtype) and are rounded once.
    Overflow to inf, and the NaN it leads to, are part of the result (no warnings).
    A fully masked row gives out = 0 and lse = -inf, or NaN in a dtype without infinities
    (float8_e4m3fn).
    """
    dt = float_dtype("dtype", dtype)
    ar = _rounding_arith(dt)
    with np.errstate(over="ignore", invalid="ignore"):
        p = _prepare(q, k, v, ar, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                     alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)
        out, lse = _softmax_core(p, ar)
        out, lse = out.astype(dt), lse.astype(dt)
    return _finish(p, out, lse)


def softmax_attention_mp(q, k, v, *, dps=50, scale=None, causal=False, window=None, key_padding_mask=None,
                         alibi_slopes=None, softcap=None, return_lse=False):
    """``softmax_attention`` in mpmath at ``dps`` decimal digits; returns object arrays of mpf.

    Inputs are converted exactly (float64 values, or mpf in object arrays); the default scale
    is 1/sqrt(D) to dps digits.
    """
    import mpmath

    dps = positive_int("dps", dps)
    ar = _mp_arith()
    with mpmath.workdps(dps):
        p = _prepare(q, k, v, ar, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                     alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)
        return _finish(p, *_softmax_core(p, ar))
