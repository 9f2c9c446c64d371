"""The Attention Free Transformer (Zhai et al. 2021, "An Attention Free Transformer",
arXiv:2105.14103), per channel d:

    Y_t = sigmoid(Q_t) * sum_{t'} e^{K_t' + w_{t,t'}} V_t' / sum_{t'} e^{K_t' + w_{t,t'}}

q, k, v (B, T, D), batch first; causal: the sums run over t' <= t only. The position biases w
are (T, T) for the length T in use (the paper's w is (T_max, T_max): pass ``w[:T, :T]``), shared
by every channel as the paper's, or (T, T, D), one bias matrix per channel (an extension: RWKV-4's
WKV is causal ungated AFT with a per-channel w, see ``aft_full``). ``q=None`` leaves the gate out
(sigmoid(Q) = 1). The variants are AFT-full with a particular w:

    AFT-local   w'_{t,t'} = w_{t,t'} where |t - t'| < window, 0 elsewhere (eq. 4: outside the
                window the keys still count, with weight e^{K}; it is not a -inf mask)
    AFT-simple  w = 0: Y_t = sigmoid(Q_t) * sum_{t'} softmax(K)_{t'} V_t', softmax over time
    AFT-conv    per head i a kernel w^i of odd size s: w_{t,t'} = w^i_{t'-t} for |t' - t| <= s // 2
                (centred, cross-correlation as torch's conv), 0 elsewhere (eq. 6, in one dimension)

No repository of the authors' exists; ``labmlai/annotated_deep_learning_paper_implementations:
labml_nn/transformers/aft/__init__.py AFTLocalAutoregressive`` and lucidrains-style ``AFTFull``
(``exp(w) @ (exp(K) * V) / (exp(w) @ exp(K))``) compute the same sums. Differences: float64;
every exponent has its largest value (per batch, row t and channel) subtracted, so k up to 1e3
stays finite; no factorised or reparameterised w (the paper's w = U V^T, AFT-conv's normalised
kernel): w is given.
"""

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_bool, check_layout, check_shape, positive_int


def _gate(q):
    return 1.0 if q is None else expit(q)


def _prepare(q, k, v, layout="(B, T, D)"):
    """k, v and q (or None) of ``layout``, as float64."""
    k, v = as_real("k", k), as_real("v", v)
    check_layout("k", k, layout)
    check_shape("v", v, k.shape, layout, match="k")
    if q is not None:
        q = as_real("q", q)
        check_shape("q", q, k.shape, layout, match="k")
    return q, k, v


def _biases(w, T, D):
    """w (T, T) or (T, T, D) as float64 (T, T, 1) or (T, T, D), finite."""
    w = as_real("w", w)
    if w.shape not in ((T, T), (T, T, D)):
        raise ValueError(f"w must have shape (T, T)={(T, T)} or (T, T, D)={(T, T, D)} to match k; got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("w must be finite (outside the causal triangle or a local window too: it is a bias, not a mask)")
    return w if w.ndim == 3 else w[..., None]


def _weighted_mean(k, v, w, causal):
    """sum_{t'} e^{x - m} v_t' / sum_{t'} e^{x - m}, x = k_t' + w_{t,t'}, m each (b, t, d)'s largest x."""
    T = k.shape[1]
    exponents = k[:, None, :, :] + w[None]  # (B, T, T', D)
    if causal:
        exponents = np.where(np.tri(T, dtype=bool)[None, :, :, None], exponents, -np.inf)
    weights = np.exp(exponents - exponents.max(axis=2, keepdims=True, initial=-np.inf))
    return (weights * v[:, None]).sum(axis=2) / weights.sum(axis=2)


def aft_full(q, k, v, w, *, causal=False):
    """AFT-full (eq. 2; module docstring): the T x T' exponents k_t' + w_{t,t'} of every row,
    their largest subtracted per (batch, row, channel). w (T, T) or (T, T, D); q None: ungated.
    Returns Y (B, T, D)."""
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    w = _biases(w, k.shape[1], k.shape[2])
    return _gate(q) * _weighted_mean(k, v, w, causal)


def aft_full_naive(q, k, v, w, *, causal=False):
    """AFT-full's sums as written (eq. 2): e^{k + w} overflows once k + w passes about 709."""
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    T = k.shape[1]
    w = _biases(w, T, k.shape[2])
    with np.errstate(over="ignore", invalid="ignore"):
        weights = np.exp(k[:, None, :, :] + w[None])  # (B, T, T', D)
        if causal:
            weights = weights * np.tri(T)[None, :, :, None]
        return _gate(q) * (weights * v[:, None]).sum(axis=2) / weights.sum(axis=2)


def aft_local(q, k, v, w, *, window, causal=False):
    """AFT-local (eq. 4): AFT-full with w'_{t,t'} = w_{t,t'} where |t - t'| < window and 0
    elsewhere, so every key still counts outside the window (with weight e^{K}). window >= T is
    AFT-full; window = 1 keeps only the diagonal's bias."""
    window = positive_int("window", window)
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    T = k.shape[1]
    w = _biases(w, T, k.shape[2])
    t = np.arange(T)
    inside = np.abs(t[:, None] - t[None, :]) < window
    return _gate(q) * _weighted_mean(k, v, np.where(inside[..., None], w, 0.0), causal)


def aft_simple(q, k, v, *, causal=False):
    """AFT-simple (eq. 5): w = 0, Y_t = sigmoid(Q_t) * sum_{t'} softmax(K)_{t'} V_t', the softmax
    over time per channel. Non-causal: one context for every t. Causal: the running sums over
    t' <= t scaled by their running maximum exponent, in O(T D) (as RWKV-4's recurrence)."""
    causal = check_bool("causal", causal)
    q, k, v = _prepare(q, k, v)
    if not causal:
        weights = np.exp(k - k.max(axis=1, keepdims=True, initial=-np.inf))
        return _gate(q) * (weights * v).sum(axis=1, keepdims=True) / weights.sum(axis=1, keepdims=True)
    batch, T, D = k.shape
    num, den, top = np.zeros((batch, D)), np.zeros((batch, D)), np.full((batch, D), -np.inf)
    means = np.empty_like(v)
    for t in range(T):
        new_top = np.maximum(top, k[:, t])
        old, new = np.exp(top - new_top), np.exp(k[:, t] - new_top)
        num, den, top = old * num + new * v[:, t], old * den + new, new_top
        means[:, t] = num / den
    return _gate(q) * means


def aft_conv(q, k, v, w):
    """AFT-conv (eq. 6) in one dimension: per head i, with kernel w^i (odd size s, centred),

        Y_t^i = sigmoid(Q_t^i) * (conv(e^{K^i} V^i, e^{w^i} - 1)_t + sum_t' e^{K_t'^i} V_t'^i)
                               / (conv(e^{K^i}, e^{w^i} - 1)_t + sum_t' e^{K_t'^i})

    conv(x, c)_t = sum_j x_{t + j - s//2} c_j (zero padded; cross-correlation, as torch's conv2d).
    That is AFT-full with w_{t,t'} = w^i_{t'-t+s//2} for |t' - t| <= s//2 and 0 elsewhere, per
    head. q, k, v (B, T, H, D) (the paper's heads split the channels), w (H, s); q None: ungated.
    Differences: 1-D; e^{K} taken with each (batch, head, channel)'s maximum over time subtracted;
    e^{w} - 1 as expm1 (exact where w is small). Returns Y (B, T, H, D)."""
    q, k, v = _prepare(q, k, v, "(B, T, H, D)")
    _, T, H, _ = k.shape
    w = as_real("w", w)
    if w.ndim != 2 or w.shape[0] != H or w.shape[1] % 2 == 0:
        raise ValueError(f"w must have shape (H, s)=({H}, s) to match k, s odd; got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError("w must be finite")
    radius = w.shape[1] // 2
    # 1. the keys' weights, each (batch, head, channel)'s largest exponent subtracted
    a = np.exp(k - k.max(axis=1, keepdims=True, initial=-np.inf))
    # 2. the kernel's excess over the weight 1 every key has: e^{w} - 1
    excess = np.expm1(w)  # (H, s)

    def conv(x):  # (B, T, H, D) -> sum_j x_{t + j - radius} excess_j, zero padded
        padded = np.pad(x, ((0, 0), (radius, radius), (0, 0), (0, 0)))
        return sum(padded[:, j:j + T] * excess[:, j, None] for j in range(w.shape[1]))

    # 3. numerator and denominator: the kernel's window plus every key with weight 1
    num = conv(a * v) + (a * v).sum(axis=1, keepdims=True)
    den = conv(a) + a.sum(axis=1, keepdims=True)
    return _gate(q) * num / den
