"""Unit tests of the softmax-attention references against a naive loop over (b, h, i, j)."""

import math
import warnings

import ml_dtypes
import mpmath
import numpy as np
import pytest

from seqcheck.reference.attention import (
    attention_in_dtype,
    attention_mask,
    combine_partials,
    flash_attention,
    flash_attention_mp,
    softmax_attention,
    softmax_attention_mp,
    split_kv_attention,
)


def naive_attention(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                    alibi_slopes=None, softcap=None):
    """One query row at a time with Python floats: the definition as written in the docstring."""
    batch, tq, heads, d = q.shape
    _, tk, kv_heads, dv = v.shape
    scale = 1 / math.sqrt(d) if scale is None else scale
    left, right = window if window is not None else (None, None)
    if causal:
        right = 0
    out = np.zeros((batch, tq, heads, dv))
    lse = np.full((batch, tq, heads), -np.inf)
    for b in range(batch):
        for h in range(heads):
            kh = h // (heads // kv_heads)
            slope = None
            if alibi_slopes is not None:
                slopes = np.asarray(alibi_slopes)
                slope = slopes[h] if slopes.ndim == 1 else slopes[b, h]
            for i in range(tq):
                scores = {}
                for j in range(tk):
                    diag = i + tk - tq
                    if left is not None and j < diag - left:
                        continue
                    if right is not None and j > diag + right:
                        continue
                    if key_padding_mask is not None and not key_padding_mask[b, j]:
                        continue
                    s = scale * sum(q[b, i, h, c] * k[b, j, kh, c] for c in range(d))
                    if softcap:
                        s = softcap * math.tanh(s / softcap)
                    if slope is not None:
                        s -= slope * abs(i + tk - tq - j)
                    scores[j] = s
                if not scores:
                    continue
                top = max(scores.values())
                total = sum(math.exp(s - top) for s in scores.values())
                for j, s in scores.items():
                    out[b, i, h] += math.exp(s - top) / total * v[b, j, kh]
                lse[b, i, h] = top + math.log(total)
    return out, lse


def make_qkv(rng, batch=2, tq=5, tk=7, heads=4, kv_heads=2, d=3, dv=2):
    return (rng.standard_normal((batch, tq, heads, d)), rng.standard_normal((batch, tk, kv_heads, d)),
            rng.standard_normal((batch, tk, kv_heads, dv)))


def assert_lse_equal(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_array_equal(np.isneginf(actual), np.isneginf(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=atol)


CASES = [
    dict(),
    dict(causal=True),
    dict(window=(1, 2)),
    dict(window=(2, None), causal=True),
    dict(window=(None, 0)),
    dict(scale=0.7, softcap=2.0),
    dict(alibi_slopes=np.array([0.5, 0.25, 0.125, 0.0625]), causal=True),
    dict(alibi_slopes=np.array([[0.5, 0.1, 0.2, 0.3], [1.0, 0.0, 0.4, 0.05]]), softcap=1.5, window=(3, 1)),
    dict(key_padding_mask=np.array([[True] * 5 + [False] * 2, [False, True] * 3 + [True]])),
]
LENGTHS = [(5, 5), (3, 7), (7, 3)]


def kv_padding_for(case, tk):
    case = dict(case)
    if "key_padding_mask" in case:
        case["key_padding_mask"] = np.resize(case["key_padding_mask"], (2, tk))
    return case


@pytest.mark.parametrize("tq,tk", LENGTHS)
@pytest.mark.parametrize("case", CASES)
def test_softmax_attention_matches_naive_loop(case, tq, tk):
    rng = np.random.default_rng(0)
    q, k, v = make_qkv(rng, tq=tq, tk=tk)
    case = kv_padding_for(case, tk)
    out, lse = softmax_attention(q, k, v, return_lse=True, **case)
    out_ref, lse_ref = naive_attention(q, k, v, **case)
    assert out.dtype == np.float64 and out.shape == (2, tq, 4, 2) and lse.shape == (2, tq, 4)
    np.testing.assert_allclose(out, out_ref, rtol=1e-12, atol=1e-13)
    assert_lse_equal(lse, lse_ref)


@pytest.mark.parametrize("tq,tk", LENGTHS)
@pytest.mark.parametrize(
    "causal,window", [(False, None), (True, None), (False, (1, 0)), (True, (0, 3)), (False, (None, 2))]
)
def test_attention_mask_matches_loop(tq, tk, causal, window):
    kpm = np.random.default_rng(1).random((2, tk)) < 0.7
    mask = attention_mask(2, tq, tk, causal=causal, window=window, key_padding_mask=kpm)
    left, right = window or (None, None)
    right = 0 if causal else right
    for b in range(2):
        for i in range(tq):
            for j in range(tk):
                lo = -np.inf if left is None else i + tk - tq - left
                hi = np.inf if right is None else i + tk - tq + right
                assert mask[b, i, j] == (lo <= j <= hi and kpm[b, j])


def test_causal_is_bottom_right_aligned():
    mask = attention_mask(1, 2, 4, causal=True)[0]
    np.testing.assert_array_equal(mask, [[True, True, True, False], [True, True, True, True]])


def test_fully_masked_rows_give_zero_and_neg_inf_without_warnings():
    rng = np.random.default_rng(2)
    q, k, v = make_qkv(rng, tq=6, tk=3)
    kpm = np.array([[False, False, False], [True, False, True]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [
            softmax_attention(q, k, v, causal=True, key_padding_mask=kpm, return_lse=True),
            flash_attention(q, k, v, block_q=2, block_k=1, causal=True, key_padding_mask=kpm, return_lse=True),
            split_kv_attention(q, k, v, num_splits=5, causal=True, key_padding_mask=kpm, return_lse=True),
        ]
    for out, lse in results:
        assert not np.isnan(out).any() and not np.isnan(lse).any()
        assert (out[0] == 0).all() and np.isneginf(lse[0]).all()
        # batch 1, causal with Tq > Tk: queries 0..2 see no key
        assert (out[1, :3] == 0).all() and np.isneginf(lse[1, :3]).all()
        assert np.isfinite(lse[1, 3:]).all()


@pytest.mark.parametrize("tq,tk", LENGTHS)
@pytest.mark.parametrize("case", CASES)
def test_flash_attention_equals_softmax_attention(case, tq, tk):
    rng = np.random.default_rng(3)
    q, k, v = make_qkv(rng, tq=tq, tk=tk)
    case = kv_padding_for(case, tk)
    out_ref, lse_ref = softmax_attention(q, k, v, return_lse=True, **case)
    for block_q in (1, 3, tq, tq + 5):
        for block_k in (1, 3, tk, tk + 5):
            out, lse = flash_attention(q, k, v, block_q=block_q, block_k=block_k, return_lse=True, **case)
            np.testing.assert_allclose(out, out_ref, rtol=1e-13, atol=1e-14)
            assert_lse_equal(lse, lse_ref, rtol=1e-13, atol=1e-14)


def test_flash_attention_key_blocks_fully_masked_before_visible_ones():
    # window (0, 0) with Tq = Tk: only the diagonal is visible; most key blocks are empty
    rng = np.random.default_rng(4)
    q, k, v = make_qkv(rng, tq=9, tk=9)
    out, lse = flash_attention(q, k, v, block_q=4, block_k=2, window=(0, 0), return_lse=True)
    g = 2
    np.testing.assert_allclose(out, np.repeat(v, g, axis=2), rtol=1e-14)
    scores = np.einsum("bihd,bihd->bih", q, np.repeat(k, g, axis=2)) / math.sqrt(3)
    np.testing.assert_allclose(lse, scores, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("num_splits", [1, 2, 3, 7, 12])
@pytest.mark.parametrize("case", CASES)
def test_split_kv_attention_equals_softmax_attention(case, num_splits):
    rng = np.random.default_rng(5)
    q, k, v = make_qkv(rng, tq=5, tk=7)
    out_ref, lse_ref = softmax_attention(q, k, v, return_lse=True, **case)
    out, lse = split_kv_attention(q, k, v, num_splits=num_splits, return_lse=True, **case)
    np.testing.assert_allclose(out, out_ref, rtol=1e-13, atol=1e-14)
    assert_lse_equal(lse, lse_ref, rtol=1e-13, atol=1e-14)
    assert split_kv_attention(q, k, v, num_splits=num_splits, **case).shape == out_ref.shape


def test_combine_partials_formula_and_empty_partials():
    rng = np.random.default_rng(6)
    outs = rng.standard_normal((3, 1, 2, 1, 4))
    lses = np.array([1.0, -np.inf, 2.5]).reshape(3, 1, 1, 1).repeat(2, axis=2)
    lses[:, 0, 1, 0] = -np.inf
    outs[1] = np.nan  # an empty partial contributes nothing, whatever it holds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, lse = combine_partials(outs, lses)
    expected_lse = math.log(math.exp(1.0) + math.exp(2.5))
    assert lse[0, 0, 0] == pytest.approx(expected_lse, rel=1e-15)
    expected = math.exp(1.0 - expected_lse) * outs[0, 0, 0, 0] + math.exp(2.5 - expected_lse) * outs[2, 0, 0, 0]
    np.testing.assert_allclose(out[0, 0, 0], expected, rtol=1e-14)
    assert np.isneginf(lse[0, 1, 0]) and (out[0, 1, 0] == 0).all()


def test_attention_in_float32_is_close_to_float64_and_returns_float32():
    rng = np.random.default_rng(7)
    q, k, v = make_qkv(rng, tq=6, tk=9)
    kw = dict(causal=True, alibi_slopes=np.array([0.5, 0.25, 0.125, 0.0625]), softcap=3.0, return_lse=True)
    out_ref, lse_ref = softmax_attention(q, k, v, **kw)
    out, lse = attention_in_dtype(q, k, v, dtype=np.float32, **kw)
    assert out.dtype == np.float32 and lse.dtype == np.float32
    np.testing.assert_allclose(out, out_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lse, lse_ref, rtol=1e-5, atol=1e-6)


def test_attention_in_bfloat16_rounds_every_step():
    rng = np.random.default_rng(8)
    q, k, v = make_qkv(rng, tq=4, tk=6)
    out_ref = softmax_attention(q, k, v)
    out = attention_in_dtype(q, k, v, dtype=ml_dtypes.bfloat16)
    assert out.dtype == ml_dtypes.bfloat16
    err = np.abs(out.astype(np.float64) - out_ref).max()
    assert 0 < err < 0.05  # about a few bfloat16 ulps (2**-8) at magnitude ~1
    assert not np.array_equal(attention_in_dtype(q, k, v, dtype=np.float16), out)


def test_attention_in_dtype_fully_masked_row():
    rng = np.random.default_rng(9)
    q, k, v = make_qkv(rng, tq=3, tk=2)
    out, lse = attention_in_dtype(q, k, v, dtype=np.float16, causal=True, return_lse=True)
    assert (out[:, 0] == 0).all() and np.isneginf(lse[:, 0]).all()


def test_mpmath_versions_agree_with_float64_and_with_each_other():
    rng = np.random.default_rng(10)
    q, k, v = make_qkv(rng, batch=1, tq=3, tk=5)
    kw = dict(causal=True, alibi_slopes=np.array([0.5, 0.25, 0.125, 0.0625]), softcap=2.0, return_lse=True)
    out_ref, lse_ref = softmax_attention(q, k, v, **kw)
    out_mp, lse_mp = softmax_attention_mp(q, k, v, dps=40, **kw)
    flash_mp, flash_lse_mp = flash_attention_mp(q, k, v, dps=40, block_q=2, block_k=2, **kw)
    assert out_mp.dtype == object and isinstance(out_mp[0, 0, 0, 0], mpmath.mpf)
    np.testing.assert_allclose(out_mp.astype(np.float64), out_ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(lse_mp.astype(np.float64), lse_ref, rtol=1e-13, atol=1e-14)
    with mpmath.workdps(40):
        assert max(abs(a - b) for a, b in zip(out_mp.ravel(), flash_mp.ravel())) < mpmath.mpf(10) ** -35
        assert max(abs(a - b) for a, b in zip(lse_mp.ravel(), flash_lse_mp.ravel())) < mpmath.mpf(10) ** -35


def test_causal_alibi_flash_attention_kernel_bias_shifts_lse_only():
    # flash-attention's kernel adds +slope * j under causal masking: same out, lse + slope * (i + Tk - Tq)
    rng = np.random.default_rng(11)
    q, k, v = make_qkv(rng, batch=1, tq=3, tk=5, heads=2, kv_heads=2)
    slopes = np.array([0.5, 0.25])
    out, lse = softmax_attention(q, k, v, causal=True, alibi_slopes=slopes, return_lse=True)
    s = np.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(3) + slopes[None, :, None, None] * np.arange(5)
    s = np.where(attention_mask(1, 3, 5, causal=True)[:, None], s, -np.inf)
    lse_kernel = np.log(np.exp(s).sum(-1)).transpose(0, 2, 1)
    out_kernel = np.einsum("bhij,bjhd->bihd", np.exp(s - np.log(np.exp(s).sum(-1, keepdims=True))), v)
    np.testing.assert_allclose(out_kernel, out, rtol=1e-13)
    np.testing.assert_allclose(lse_kernel, lse + slopes * (np.arange(3)[:, None] + 2), rtol=1e-13)


def test_inputs_are_not_mutated_and_float32_inputs_give_float64():
    rng = np.random.default_rng(12)
    q, k, v = (x.astype(np.float32) for x in make_qkv(rng))
    copies = [x.copy() for x in (q, k, v)]
    out = flash_attention(q, k, v, block_q=2, block_k=2, causal=True)
    assert out.dtype == np.float64
    for x, c in zip((q, k, v), copies):
        np.testing.assert_array_equal(x, c)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(q=np.zeros((2, 5, 4))), ValueError, "q must have shape"),
        (dict(k=np.zeros((2, 7, 2, 5))), ValueError, "k must have shape"),
        (dict(v=np.zeros((2, 6, 2, 2))), ValueError, "v must have shape"),
        (dict(k=np.zeros((2, 7, 3, 3)), v=np.zeros((2, 7, 3, 2))), ValueError, "multiple of k's head count"),
        (dict(q=np.zeros((2, 5, 4, 3), dtype=complex)), TypeError, "q must hold real numbers"),
        (dict(window=(-1, 0)), ValueError, r"window left .*-1.*None"),
        (dict(window=(0, 1, 2)), ValueError, "window must be None or a pair"),
        (dict(causal=1), TypeError, "causal must be a bool"),
        (dict(key_padding_mask=np.ones((2, 7))), TypeError, "key_padding_mask must be a bool"),
        (dict(key_padding_mask=np.ones((2, 5), bool)), ValueError, "key_padding_mask must have shape"),
        (dict(alibi_slopes=np.ones(3)), ValueError, "alibi_slopes must have shape"),
        (dict(softcap=-1.0), ValueError, "softcap"),
        (dict(scale=float("nan")), ValueError, "scale"),
        (dict(return_lse="yes"), TypeError, "return_lse"),
    ],
)
def test_bad_inputs_name_the_argument(kwargs, error, match):
    rng = np.random.default_rng(13)
    q, k, v = make_qkv(rng)
    args = dict(q=q, k=k, v=v)
    args.update(kwargs)
    for fn in (softmax_attention, flash_attention):
        with pytest.raises(error, match=match):
            fn(**args)


def test_bad_block_split_and_dtype_arguments():
    q, k, v = make_qkv(np.random.default_rng(14))
    with pytest.raises(ValueError, match="block_q"):
        flash_attention(q, k, v, block_q=0)
    with pytest.raises(TypeError, match="block_k"):
        flash_attention(q, k, v, block_k=2.0)
    with pytest.raises(ValueError, match="num_splits"):
        split_kv_attention(q, k, v, num_splits=0)
    with pytest.raises(TypeError, match="dtype"):
        attention_in_dtype(q, k, v, dtype=np.int32)
    with pytest.raises(ValueError, match="lses must have shape"):
        combine_partials(np.zeros((2, 1, 3, 4, 5)), np.zeros((2, 1, 3, 5)))
