"""Deliberately wrong Attention Free Transformers: each must be rejected by a claim. Small NumPy
functions with the form's signature; each one bug of the kind AFT implementations hit (exp
without the maximum overflows; the maximum taken over k alone; a -inf mask where AFT-local keeps
the keys; the window read as a width; a flipped kernel; the causal triangle transposed; the gate
or the softmax's axis wrong)."""

import numpy as np

from seqcheck.reference.aft import aft_full, aft_full_naive


def _biases(w, D):
    w = np.asarray(w, dtype=np.float64)
    return w if w.ndim == 3 else np.repeat(w[..., None], D, axis=2)


def naive_gated_by_q(q, k, v, w, *, causal=False):
    """The gate applied as Q, not sigmoid(Q)."""
    return q * aft_full_naive(None, k, v, w, causal=causal)


def full_without_the_maximum(q, k, v, w, *, causal=False):
    """e^{k + w} exponentiated directly: inf / inf = NaN once k + w passes about 709."""
    with np.errstate(over="ignore", invalid="ignore"):
        return aft_full_naive(q, k, v, w, causal=causal)


def full_with_the_maximum_of_k_alone(q, k, v, w, *, causal=False):
    """e^{k - max k} e^{w}, as the matrix-product form exp(w) @ (exp(k - max k) v) writes it: the
    biases' share of the exponent is not subtracted, and e^{w} overflows past 709."""
    T = k.shape[1]
    a = np.exp(k - k.max(axis=1, keepdims=True, initial=-np.inf))
    with np.errstate(over="ignore", invalid="ignore"):
        weights = np.exp(_biases(w, k.shape[2]))[None] * a[:, None]  # (B, T, T', D)
        if causal:
            weights = weights * np.tri(T)[None, :, :, None]
        return 1 / (1 + np.exp(-q)) * (weights * v[:, None]).sum(axis=2) / weights.sum(axis=2)


def full_with_the_causal_triangle_transposed(q, k, v, w, *, causal=False):
    """Causal as t' >= t (np.triu for np.tril): row t reads the future."""
    T = k.shape[1]
    exponents = k[:, None] + _biases(w, k.shape[2])[None]
    if causal:
        exponents = np.where(np.tri(T, dtype=bool).T[None, :, :, None], exponents, -np.inf)
    weights = np.exp(exponents - exponents.max(axis=2, keepdims=True, initial=-np.inf))
    gate = 1.0 if q is None else 1 / (1 + np.exp(-q))
    return gate * (weights * v[:, None]).sum(axis=2) / weights.sum(axis=2)


def local_masked_outside_the_window(q, k, v, w, *, window, causal=False):
    """The local-attention habit: -inf outside the window, so the keys there no longer count."""
    T = k.shape[1]
    inside = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]) < window
    w = np.where(inside if np.ndim(w) == 2 else inside[..., None], w, -np.inf)
    exponents = k[:, None] + _biases(w, k.shape[2])[None]
    if causal:
        exponents = np.where(np.tri(T, dtype=bool)[None, :, :, None], exponents, -np.inf)
    weights = np.exp(exponents - exponents.max(axis=2, keepdims=True, initial=-np.inf))
    return 1 / (1 + np.exp(-q)) * (weights * v[:, None]).sum(axis=2) / weights.sum(axis=2)


def local_with_the_window_as_a_width(q, k, v, w, *, window, causal=False):
    """The window read as a centred span's width: |t - t'| <= window // 2."""
    T = k.shape[1]
    inside = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]) <= window // 2
    return aft_full(q, k, v, np.where(inside if np.ndim(w) == 2 else inside[..., None], w, 0.0), causal=causal)


def simple_softmax_over_channels(q, k, v, *, causal=False):
    """softmax(K) over the channel axis instead of time."""
    weights = np.exp(k - k.max(axis=2, keepdims=True))
    weights = weights / weights.sum(axis=2, keepdims=True)
    context = np.cumsum(weights * v, axis=1) if causal else (weights * v).sum(axis=1, keepdims=True)
    return 1 / (1 + np.exp(-q)) * context


def conv_with_the_kernel_flipped(q, k, v, w):
    """A true convolution (np.convolve's orientation): w^h_{t-t'} where AFT-conv reads w^h_{t'-t}."""
    B, T, H, D = k.shape
    s = w.shape[1]
    offsets = np.arange(T)[:, None] - np.arange(T)[None, :] + s // 2  # t - t' + s//2: flipped
    inside = (offsets >= 0) & (offsets < s)
    biases = np.repeat(np.where(inside[..., None], np.asarray(w).T[np.clip(offsets, 0, s - 1)], 0.0), D, axis=2)
    flat = [a.reshape(B, T, H * D) for a in (q, k, v)]
    return aft_full(*flat, biases).reshape(B, T, H, D)


MUTANTS = {
    "aft.full.naive == aft.full.parallel": naive_gated_by_q,
    "aft.full.key_shift": full_without_the_maximum,
    "aft.full.bias_shift": full_with_the_maximum_of_k_alone,
    "aft.full.wkv4": full_with_the_causal_triangle_transposed,
    "aft.local.as_full": local_masked_outside_the_window,
    "aft.local.full_window": local_with_the_window_as_a_width,
    "aft.simple.as_full": simple_softmax_over_channels,
    "aft.conv.as_full": conv_with_the_kernel_flipped,
}
"""The mutant each claim of the family must reject, by claim key."""
