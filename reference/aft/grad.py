"""Exact float64 gradients of the Attention Free Transformer's forms.

Every form is Y_t = sigmoid(Q_t) m_t with m_t = sum_t' P_tt' V_t' and P_t = softmax_t'(K_t' +
W_tt') per channel (W the form's effective biases: AFT-full's w, AFT-local's w inside the window
and 0 outside, 0 for AFT-simple, AFT-conv's kernel on its diagonals; causal: t' <= t). So, as
attention's backward, with dY the cotangent and dm_t = dY_t sigmoid(Q_t),

    dQ_t = dY_t m_t sigmoid'(Q_t),   dV_t' = sum_t P_tt' dm_t,
    dS_tt' = P_tt' dm_t (V_t' - m_t),   dK_t' = sum_t dS_tt',   dW_tt' = sum_batch dS_tt'

and each form's w gets dW where its bias is w (summed over the channels a (T, T) w shares;
AFT-conv's w^h_j: the diagonal t' - t = j - s//2 of dW summed over time and the head's channels).
Each row's largest exponent is subtracted, so k up to 1e3 stays exact. Verified in the tests
against central differences and torch autograd of the definitions.
"""

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_bool, check_shape, positive_int
from .aft import _biases, _prepare, aft_conv


def aft_weights(k, W, causal):
    """P (B, T, T', C): every row's softmax over t' of k_t' + W_tt' (t' <= t if causal)."""
    exponents = k[:, None, :, :] + W[None]
    if causal:
        exponents = np.where(np.tri(k.shape[1], dtype=bool)[None, :, :, None], exponents, -np.inf)
    P = np.exp(exponents - exponents.max(axis=2, keepdims=True, initial=-np.inf))
    return P / P.sum(axis=2, keepdims=True)


def _backward(q, k, v, W, causal, cotangent):
    """{"q" (if given), "k", "v", "W" (T, T', C)} for Y = sigmoid(q) m (module docstring)."""
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, k.shape, "(B, T, D)", match="k")
    P = aft_weights(k, W, causal)
    mean = (P * v[:, None]).sum(axis=2)
    dmean = cotangent if q is None else cotangent * expit(q)
    dS = P * dmean[:, :, None] * (v[:, None] - mean[:, :, None])
    grads = {"k": dS.sum(axis=1), "v": (P * dmean[:, :, None]).sum(axis=1), "W": dS.sum(axis=0)}
    if q is not None:
        gate = expit(q)
        grads["q"] = cotangent * mean * gate * (1 - gate)
    return grads


def _shared(dW, w):
    """dW (T, T, D) into w's shape (T, T) or (T, T, D)."""
    return dW if np.ndim(w) == 3 else dW.sum(axis=-1)


def aft_full_vjp(q, k, v, w, *, cotangent, causal=False):
    """The gradients of <aft_full(q, k, v, w, causal=), cotangent>: {"q" (unless None), "k", "v",
    "w"} (module docstring); entries of w that the causal triangle hides get 0."""
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    W = _biases(w, k.shape[1], k.shape[2])
    grads = _backward(q, k, v, W, causal, cotangent)
    return {**{n: g for n, g in grads.items() if n != "W"}, "w": _shared(grads["W"], w)}


def aft_local_vjp(q, k, v, w, *, window, cotangent, causal=False):
    """The gradients of <aft_local(q, k, v, w, window=, causal=), cotangent>: w's gradient is 0
    outside the window, where its entries are not used."""
    window = positive_int("window", window)
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    T = k.shape[1]
    t = np.arange(T)
    inside = (np.abs(t[:, None] - t[None, :]) < window)[..., None]
    grads = _backward(q, k, v, np.where(inside, _biases(w, T, k.shape[2]), 0.0), causal, cotangent)
    return {**{n: g for n, g in grads.items() if n != "W"}, "w": _shared(np.where(inside, grads["W"], 0.0), w)}


def aft_simple_vjp(q, k, v, *, cotangent, causal=False):
    """The gradients of <aft_simple(q, k, v, causal=), cotangent>: {"q" (unless None), "k", "v"}."""
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    T = k.shape[1]
    return {n: g for n, g in _backward(q, k, v, np.zeros((T, T, 1)), causal, cotangent).items() if n != "W"}


def conv_offsets(T, size):
    """(T, T') the kernel index t' - t + size//2 of every pair, and where it lies in the kernel."""
    offsets = np.arange(T)[None, :] - np.arange(T)[:, None] + size // 2
    return offsets, (offsets >= 0) & (offsets < size)


def conv_biases(w, T, D):
    """AFT-conv's kernel (H, s) as AFT-full's biases (T, T', H * D): w_{t,t'} = w^h_{t'-t+s//2}
    within the kernel, 0 outside, the same for every channel of head h."""
    offsets, inside = conv_offsets(T, w.shape[1])
    return np.repeat(np.where(inside[..., None], w.T[np.clip(offsets, 0, w.shape[1] - 1)], 0.0), D, axis=2)


def aft_conv_vjp(q, k, v, w, *, cotangent):
    """The gradients of <aft_conv(q, k, v, w), cotangent>, q, k, v (B, T, H, D) and w (H, s):
    AFT-full's on H * D channels with the kernel's biases, w^h_j the sum of its diagonal."""
    aft_conv(q, k, v, w)  # the forward's checks, by name
    q, k, v = _prepare(q, k, v, "(B, T, H, D)")
    w = as_real("w", w)
    B, T, H, D = k.shape
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, k.shape, "(B, T, H, D)", match="k")
    W = conv_biases(w, T, D)
    flat = [None if a is None else a.reshape(B, T, H * D) for a in (q, k, v)]
    grads = _backward(*flat, W, False, cotangent.reshape(B, T, H * D))
    out = {n: grads[n].reshape(B, T, H, D) for n in ("q", "k", "v") if n in grads}
    return {**out, "w": kernel_sums(grads["W"].reshape(T, T, H, D), w.shape[1])}


def kernel_sums(dW, size):
    """The gradient (H, s) of AFT-conv's kernel from that of its biases dW (T, T', H, D): each
    w^h_j is the diagonal t' - t = j - s//2 of dW summed over time and the head's channels."""
    T, _, H, _ = dW.shape
    offsets, inside = conv_offsets(T, size)
    per_head = dW.sum(axis=-1)  # (T, T', H)
    return np.stack([per_head[inside & (offsets == j)].sum(axis=0) for j in range(size)], axis=1).reshape(H, size)
