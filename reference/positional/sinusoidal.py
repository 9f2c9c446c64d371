"""Sinusoidal absolute position encodings (Vaswani et al. 2017, arXiv:1706.03762, section 3.5)."""

import numpy as np

from .._checks import as_int, as_real, check_choice, finite_real

_LAYOUTS = ("interleaved", "concatenated")


def sinusoidal_encoding(positions, dim, *, base=10000.0, layout="interleaved"):
    """Sinusoidal encoding of ``positions`` (any shape), returns positions.shape + (dim,), float64.

    layout="interleaved", the paper's equation (dim must be even):

        PE[pos, 2i]     = sin(pos / base ** (2i / dim))
        PE[pos, 2i + 1] = cos(pos / base ** (2i / dim)),      i < dim/2

    layout="concatenated", ``tensorflow/tensor2tensor: tensor2tensor/layers/common_attention.py
    get_timing_signal_1d`` (with min_timescale=1, max_timescale=base) and
    ``facebookresearch/fairseq: fairseq/modules/sinusoidal_positional_embedding.py
    SinusoidalPositionalEmbedding.get_embedding``: with n = dim // 2,

        PE[pos, i]     = sin(pos * base ** (-i / max(n - 1, 1)))
        PE[pos, n + i] = cos(pos * base ** (-i / max(n - 1, 1))),   i < n

    and, for odd dim, a last column of zeros, as both repositories pad it. The exponent is
    i / (n - 1), not 2i / dim: the slowest frequency is exactly 1 / base. For n = 1 the
    ``max(., 1)`` is tensor2tensor's guard; fairseq divides by zero there (NaN).
    Differences from the originals: positions are used as given (fairseq starts at
    padding_idx + 1 and zeroes the padding row), and everything is float64.
    """
    dim = as_int("dim", dim)
    check_choice("layout", layout, _LAYOUTS)
    if layout == "interleaved" and (dim < 2 or dim % 2):
        raise ValueError(f"dim must be an even int >= 2 for layout='interleaved'; got {dim}")
    if dim < 1:
        raise ValueError(f"dim must be an int >= 1; got {dim}")
    base = finite_real("base", base, "> 0")
    pos = as_real("positions", positions)[..., None]
    n = dim // 2
    if layout == "interleaved":
        angle = pos * base ** (-2.0 * np.arange(n) / dim)
        return np.stack([np.sin(angle), np.cos(angle)], axis=-1).reshape(pos.shape[:-1] + (dim,))
    angle = pos * base ** (-np.arange(n) / max(n - 1, 1))
    pad = np.zeros(pos.shape[:-1] + (dim % 2,))
    return np.concatenate([np.sin(angle), np.cos(angle), pad], axis=-1)
