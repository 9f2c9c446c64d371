"""Multi-scale retention as ``microsoft/torchscale`` computes it (``torchscale/component/
multiscale_retention.py`` MultiScaleRetention, ``torchscale/architecture/retnet.py`` RetNetRelPos):
its three forms on the projected q, k (B, T, H, K) and v (B, T, H, V), each ending in the
layer's per-head RMSNorm (``group_norm``, no affine):

- the decays gamma_h = 1 - 2^(-5-h);
- q and k rotated by ``theta_shift``: interleaved pairs (2i, 2i + 1) turned by position * angle_i,
  angle_i = 10000^(-i / (K/2 - 1)) (``torch.linspace(0, 1, K/2)``), and k scaled by K^-1/2;
- ``msr_parallel``: the decay mask D_nm = gamma^(n-m) divided by the square root of its row sum,
  the scores (q k^T) o D divided by max(1, |row sum|), times v;
- ``msr_recurrent``: the running scale s_n = gamma s_{n-1} + 1 (s_0 = 1) and the state
  kv_n = kv_{n-1} sqrt(s_{n-1}) gamma / sqrt(s_n) + k_n^T v_n / sqrt(s_n), o_n = q_n kv_n;
- ``msr_chunked``: ``chunk_recurrent_forward``: within a chunk the row-normalised mask and the
  scores divided by max(1, sum |scores|), across chunks the state divided by its own clamped
  scale, the two parts aligned to the larger scale.

Each form's row n is the retention output (``retention_parallel`` on the rotated, scaled q, k)
times a positive factor of its own, which RMSNorm removes exactly when its eps is 0; with eps > 0
the forms differ (torchscale #40, #47). Differences: float64; any chunk size (a last, shorter
chunk reads the first rows of the whole chunk's masks, as if T were padded to a multiple;
torchscale asserts that the chunk size divides T).
"""

import numpy as np

from .._checks import as_real, check_layout, check_shape, finite_real, int_in_range, positive_int


def msr_decays(heads):
    """gamma_h = 1 - 2^(-5-h), h = 0..heads-1 (RetNetRelPos's ``decay``, as exp(log))."""
    return 1 - 2.0 ** (-5 - np.arange(positive_int("heads", heads), dtype=np.float64))


def msr_scales(heads, length):
    """The running scale s_n = gamma_h s_{n-1} + 1, s_0 = 1, as (length, heads): torchscale's
    ``scale`` in ``recurrent_forward``, by which the state kv_n = S_n / sqrt(s_n) is divided."""
    gamma, scales = msr_decays(heads), []
    s = np.ones_like(gamma)
    for _ in range(int_in_range("length", length, 0)):
        scales.append(s)
        s = s * gamma + 1
    return np.stack(scales) if scales else np.zeros((0, gamma.size))


def msr_rotate(x, positions):
    """``theta_shift(x, sin, cos)`` at ``positions`` (T,): x (B, T, H, K), K even."""
    x = as_real("x", x)
    _, T, _, K = check_layout("x", x, "(B, T, H, K)")
    if K % 2:
        raise ValueError(f"x must have an even last axis K (pairs are rotated); got K = {K}")
    positions = as_real("positions", positions)
    check_shape("positions", positions, (T,), "(T,)", match="x")
    angle = np.repeat(1.0 / 10000 ** np.linspace(0, 1, K // 2), 2)
    theta = np.asarray(positions, dtype=np.float64)[:, None] * angle  # (T, K)
    rotated = np.stack([-x[..., 1::2], x[..., 0::2]], axis=-1).reshape(x.shape)
    return x * np.cos(theta)[:, None] + rotated * np.sin(theta)[:, None]


def _rms_norm(x, eps):
    """x / sqrt(mean(x^2) + eps) per head: a row of zeros with eps = 0 is NaN, as in torchscale."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def _prepare(q, k, v):
    q, k, v = (as_real(n, a) for n, a in (("q", q), ("k", k), ("v", v)))
    batch, T, H, K = check_layout("q", q, "(B, T, H, K)")
    check_shape("k", k, q.shape, "(B, T, H, K)", match="q")
    check_layout("v", v, "(B, T, H, V)")
    check_shape("v", v, q.shape[:3] + v.shape[3:], "(B, T, H, V)", match="q")
    positions = np.arange(T)
    qr, kr = msr_rotate(q, positions), msr_rotate(k * K ** -0.5, positions)
    return (np.swapaxes(a, 1, 2) for a in (qr, kr, v)), msr_decays(H)  # (B, H, T, .)


def _mask(gamma, length):
    n, m = np.arange(length)[:, None], np.arange(length)[None, :]
    return np.where(n >= m, gamma[:, None, None] ** np.maximum(n - m, 0), 0.0)  # (H, c, c)


def msr_parallel(q, k, v, *, eps=1e-6):
    """torchscale's ``parallel_forward`` and group norm (module docstring). Returns (B, T, H, V)."""
    eps = finite_real("eps", eps, ">= 0")
    (qr, kr, v), gamma = _prepare(q, k, v)
    mask = _mask(gamma, qr.shape[2])
    mask = mask / np.sqrt(mask.sum(-1, keepdims=True))
    scores = (qr @ np.swapaxes(kr, -1, -2)) * mask
    scores = scores / np.maximum(np.abs(scores.sum(-1, keepdims=True)), 1)
    return _rms_norm(np.swapaxes(scores @ v, 1, 2), eps)


def msr_recurrent(q, k, v, *, eps=1e-6):
    """torchscale's ``recurrent_forward`` one token at a time, and group norm. Returns (B, T, H, V)."""
    eps = finite_real("eps", eps, ">= 0")
    (qr, kr, v), gamma = _prepare(q, k, v)
    g = gamma[None, :, None, None]
    kv, scale, outs = None, np.ones_like(gamma)[None, :, None, None], []
    for t in range(qr.shape[2]):
        step = kr[:, :, t, :, None] * v[:, :, t, None, :]
        if kv is None:
            kv = step
        else:
            new_scale = scale * g + 1
            kv = kv * (np.sqrt(scale) * g / np.sqrt(new_scale)) + step / np.sqrt(new_scale)
            scale = new_scale
        outs.append(np.einsum("bhk,bhkv->bhv", qr[:, :, t], kv))
    out = np.stack(outs, axis=1) if outs else np.swapaxes(v, 1, 2)
    return _rms_norm(out, eps)


def msr_chunked(q, k, v, *, chunk_size, eps=1e-6):
    """torchscale's ``chunk_recurrent_forward`` and group norm, any chunk size. Returns (B, T, H, V)."""
    eps = finite_real("eps", eps, ">= 0")
    chunk_size = positive_int("chunk_size", chunk_size)
    (qr, kr, v), gamma = _prepare(q, k, v)
    B, H, T, K = qr.shape
    mask = _mask(gamma, chunk_size)  # built for whole chunks, as RetNetRelPos builds them
    last = mask[:, -1]  # (H, c)
    value_decay = (last / last.sum(-1, keepdims=True))[None, :, :, None]
    row_scale = np.sqrt(mask.sum(-1, keepdims=True))  # (H, c, 1)
    query_decay = (gamma[:, None] ** (np.arange(chunk_size) + 1))[:, :, None] / (row_scale / last.sum(-1)[:, None, None])
    inner_mask, cross_decay = mask / row_scale, (gamma ** chunk_size)[None, :, None, None]
    state, state_scale, outs = np.zeros((B, H, K, v.shape[-1])), np.ones((B, H, 1, 1)), []
    for start in range(0, T, chunk_size):
        qc, kc, vc = (a[:, :, start:start + chunk_size] for a in (qr, kr, v))
        c = qc.shape[2]  # a last, shorter chunk reads the first c rows of the masks (as if padded)
        scores = (qc @ np.swapaxes(kc, -1, -2)) * inner_mask[:, :c, :c]
        inner_scale = np.maximum(np.abs(scores).sum(-1, keepdims=True), 1)
        inner = (scores / inner_scale) @ vc
        cross = (qc * query_decay[:, :c]) @ (state / state_scale)
        all_scale = np.maximum(inner_scale, state_scale)
        outs.append(inner / (all_scale / inner_scale) + cross / (all_scale / state_scale))
        state = state * cross_decay + np.swapaxes(kc, -1, -2) @ (vc * value_decay[:, :, :c])
        state_scale = np.maximum(np.abs(state).sum(-2, keepdims=True).max(-1, keepdims=True), 1)
    out = np.concatenate(outs, axis=2) if outs else v
    return _rms_norm(np.swapaxes(out, 1, 2), eps)
