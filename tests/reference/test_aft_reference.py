"""The AFT references (reference/aft) against loops written from the paper's equations, the
variants as AFT-full with their biases, unchanged by constants added to k or w, finite where the
naive sums overflow, RWKV-4's WKV as causal ungated AFT; and their argument checks."""

import numpy as np
import pytest

from seqcheck.reference.aft import aft_conv, aft_full, aft_full_naive, aft_local, aft_simple
from seqcheck.reference.rwkv import wkv4_recurrent


def equation(q, k, v, w, causal=False):
    """Y_t element by element, as eq. 2 writes it; w (T, T) or (T, T, D)."""
    B, T, D = k.shape
    w = w if w.ndim == 3 else np.repeat(w[..., None], D, axis=2)
    out = np.zeros((B, T, D))
    for b in range(B):
        for t in range(T):
            for d in range(D):
                keys = range(t + 1) if causal else range(T)
                num = sum(np.exp(k[b, j, d] + w[t, j, d]) * v[b, j, d] for j in keys)
                den = sum(np.exp(k[b, j, d] + w[t, j, d]) for j in keys)
                gate = 1.0 if q is None else 1 / (1 + np.exp(-q[b, t, d]))
                out[b, t, d] = gate * num / den
    return out


def inputs(seed=0, B=2, T=7, D=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D)), rng.standard_normal((B, T, D)),
            rng.standard_normal((T, T)))


@pytest.mark.parametrize("causal", [False, True])
def test_full_and_naive_equal_the_equation(causal):
    q, k, v, w = inputs()
    per_channel = np.random.default_rng(9).standard_normal(w.shape + (3,))
    for biases in (w, per_channel):
        want = equation(q, k, v, biases, causal)
        np.testing.assert_allclose(aft_full(q, k, v, biases, causal=causal), want, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(aft_full_naive(q, k, v, biases, causal=causal), want, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(aft_full(None, k, v, w, causal=causal), equation(None, k, v, w, causal), rtol=1e-13,
                               atol=1e-13)


@pytest.mark.parametrize("causal", [False, True])
def test_local_keeps_the_keys_outside_the_window_with_bias_zero(causal):
    q, k, v, w = inputs(1)
    T = k.shape[1]
    for window in range(1, T + 2):
        local = np.array([[w[t, j] if abs(t - j) < window else 0.0 for j in range(T)] for t in range(T)])
        np.testing.assert_allclose(aft_local(q, k, v, w, window=window, causal=causal), equation(q, k, v, local, causal),
                                   rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(aft_local(q, k, v, w, window=T, causal=causal), aft_full(q, k, v, w, causal=causal))
    # not a -inf mask: with window 1 every key still counts, with weight e^K
    assert not np.allclose(aft_local(q, k, v, w, window=1, causal=causal), 1 / (1 + np.exp(-q)) * v)


@pytest.mark.parametrize("causal", [False, True])
def test_simple_is_the_softmax_over_time(causal):
    q, k, v, w = inputs(2)
    np.testing.assert_allclose(aft_simple(q, k, v, causal=causal), equation(q, k, v, 0 * w, causal), rtol=1e-13,
                               atol=1e-13)
    if not causal:
        softmax = np.exp(k) / np.exp(k).sum(axis=1, keepdims=True)
        np.testing.assert_allclose(aft_simple(q, k, v), 1 / (1 + np.exp(-q)) * (softmax * v).sum(axis=1, keepdims=True),
                                   rtol=1e-13)


def conv_loop(q, k, v, w):
    """Eq. 6 in one dimension, element by element: the kernel's excess convolved plus every key."""
    B, T, H, D = k.shape
    r = w.shape[1] // 2
    out = np.zeros((B, T, H, D))
    for b, t, h, d in np.ndindex(B, T, H, D):
        ek = np.exp(k[b, :, h, d])
        window = [j for j in range(T) if abs(j - t) <= r]
        num = sum(ek[j] * v[b, j, h, d] * (np.exp(w[h, j - t + r]) - 1) for j in window) + (ek * v[b, :, h, d]).sum()
        den = sum(ek[j] * (np.exp(w[h, j - t + r]) - 1) for j in window) + ek.sum()
        out[b, t, h, d] = num / den / (1 + np.exp(-q[b, t, h, d]))
    return out


def test_conv_is_the_papers_formula_and_full_with_a_toeplitz_bias_per_head():
    rng = np.random.default_rng(3)
    B, T, H, D = 2, 6, 2, 2
    q, k, v = (rng.standard_normal((B, T, H, D)) for _ in range(3))
    for s in (1, 3, 5, 13):
        w = rng.standard_normal((H, s))
        got = aft_conv(q, k, v, w)
        np.testing.assert_allclose(got, conv_loop(q, k, v, w), rtol=1e-12, atol=1e-13)
        biases = np.zeros((T, T, H, D))
        for t, j, h in np.ndindex(T, T, H):
            if abs(j - t) <= s // 2:
                biases[t, j, h] = w[h, j - t + s // 2]
        flat = [a.reshape(B, T, H * D) for a in (q, k, v)]
        want = aft_full(*flat, biases.reshape(T, T, H * D)).reshape(B, T, H, D)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
    # one head's kernel of size 2 window - 1 is AFT-local with the kernel's Toeplitz w
    w = rng.standard_normal((1, 5))
    toeplitz = np.array([[w[0, j - t + 2] if abs(j - t) <= 2 else 0.0 for j in range(T)] for t in range(T)])
    np.testing.assert_allclose(aft_conv(q[:, :, :1], k[:, :, :1], v[:, :, :1], w)[:, :, 0],
                               aft_local(q[:, :, 0], k[:, :, 0], v[:, :, 0], toeplitz, window=3), rtol=1e-12)


def test_constants_added_to_k_or_w_cancel_and_the_stable_forms_stay_finite():
    q, k, v, w = inputs(4)
    for causal in (False, True):
        want = aft_full(q, k, v, w, causal=causal)
        for shift in (-50.0, 3.0, 800.0):
            np.testing.assert_allclose(aft_full(q, k + shift, v, w, causal=causal), want, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(aft_full(q, k, v, w + shift, causal=causal), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(aft_simple(q, k + 800, v, causal=causal), aft_simple(q, k, v, causal=causal),
                                   rtol=1e-12, atol=1e-12)
    big = k * 300 + 700  # up to about 1e3
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(aft_full_naive(q, big, v, w)).all()
    assert np.isfinite(aft_full(q, big, v, w)).all()
    assert np.isfinite(aft_simple(q, big, v, causal=True)).all()
    assert np.isfinite(aft_conv(q[..., None], big[..., None], v[..., None], np.ones((3, 3)))).all()


def test_wkv4_is_causal_ungated_aft_with_per_channel_biases():
    rng = np.random.default_rng(5)
    B, T, C = 2, 8, 3
    k, v = rng.standard_normal((B, T, C)), rng.standard_normal((B, T, C))
    decay, bonus = np.exp(rng.standard_normal(C)), rng.standard_normal(C)
    biases = np.zeros((T, T, C))
    for t, i in np.ndindex(T, T):
        biases[t, i] = -(t - 1 - i) * decay if i < t else (bonus if i == t else 0.0)
    np.testing.assert_allclose(aft_full(None, k, v, biases, causal=True), wkv4_recurrent(k, v, decay, bonus),
                               rtol=1e-12, atol=1e-13)
    # a gate of q = 40 is 1 in float64
    np.testing.assert_array_equal(aft_full(np.full((B, T, C), 40.0), k, v, biases, causal=True),
                                  aft_full(None, k, v, biases, causal=True))


def test_empty_sequence():
    q, k, v, w = inputs(T=0)
    assert aft_full(q, k, v, w, causal=True).shape == (2, 0, 3)
    assert aft_simple(q, k, v, causal=True).shape == (2, 0, 3)
    assert aft_conv(q[..., None], k[..., None], v[..., None], np.ones((3, 1))).shape == (2, 0, 3, 1)


@pytest.mark.parametrize("call, error, match", [
    (lambda q, k, v, w: aft_full(q, k, v, w[:-1]), ValueError, r"w must have shape \(T, T\)"),
    (lambda q, k, v, w: aft_full(q, k, v, np.where(np.tri(7) > 0, w, -np.inf), causal=True), ValueError,
     "w must be finite"),
    (lambda q, k, v, w: aft_full(q, k, v[:, :-1], w), ValueError, "v must have shape"),
    (lambda q, k, v, w: aft_full(q[..., :-1], k, v, w), ValueError, "q must have shape"),
    (lambda q, k, v, w: aft_full(q, k, v, w, causal=1), TypeError, "causal must be a bool"),
    (lambda q, k, v, w: aft_local(q, k, v, w, window=0), ValueError, "window"),
    (lambda q, k, v, w: aft_conv(q[..., None], k[..., None], v[..., None], np.ones((3, 2))), ValueError,
     r"w must have shape \(H, s\)=\(3, s\) to match k, s odd"),
    (lambda q, k, v, w: aft_simple(q, k[..., None], v), ValueError, r"k must have shape \(B, T, D\)"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(*inputs())
