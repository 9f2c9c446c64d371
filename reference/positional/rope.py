"""Rotary position embedding, RoPE (Su et al. 2021, RoFormer, arXiv:2104.09864).

Position i's pair (a, b) of channels is rotated by the angle ``pos * base ** (-2i / D)``:

    out[a] = x[a] cos(theta) - x[b] sin(theta)
    out[b] = x[a] sin(theta) + x[b] cos(theta)

Two pairings of the D channels are in use, with the same angles:

- "half": pairs (i, i + D/2), as GPT-NeoX and Hugging Face ``rotate_half``
  (``EleutherAI/gpt-neox: megatron/model/positional_embeddings.py``,
  ``huggingface/transformers: src/transformers/models/llama/modeling_llama.py rotate_half``).
- "interleaved": pairs (2i, 2i + 1), as RoFormer, GPT-J ``rotate_every_two`` and Meta's
  complex-number form (``meta-llama/llama: llama/model.py apply_rotary_emb``).
"""

import numpy as np

from ..arith import round_to
from .._checks import as_real, check_choice, check_layout, check_shape, even_positive_int, finite_real, float_dtype

_PAIRINGS = ("half", "interleaved")


def rope_angles(positions, dim, *, base=10000.0, interpolation_factor=1.0):
    """Rotation angles, shape positions.shape + (dim/2,), float64.

        angles[..., i] = (positions / interpolation_factor) * base ** (-2i / dim),  i < dim/2

    ``interpolation_factor`` > 1 is position interpolation (Chen et al. 2023,
    arXiv:2306.15595), Hugging Face's "linear" rope scaling (positions divided by the factor).
    """
    d = even_positive_int("dim", dim)
    base = finite_real("base", base, "> 0")
    factor = finite_real("interpolation_factor", interpolation_factor, "> 0")
    pos = as_real("positions", positions)
    inv_freq = base ** (-np.arange(0, d, 2) / d)
    return (pos / factor)[..., None] * inv_freq


def _pair_indices(dim, pairing):
    half = np.arange(dim // 2)
    if pairing == "half":
        return half, half + dim // 2
    return 2 * half, 2 * half + 1


def _rope_args(x, positions):
    """x (B, T, H, D) as float64 with H >= 1 and D even, and positions as float64 (T,) or (B, T)."""
    a = as_real("x", x)
    batch, seqlen, _, d = check_layout("x", a, "(B, T, H, D)")
    if d < 2 or d % 2:
        raise ValueError(f"x's last dimension D must be even and >= 2; got D={d}")
    pos = np.arange(seqlen, dtype=np.float64) if positions is None else as_real("positions", positions)
    if pos.shape not in ((seqlen,), (batch, seqlen)):
        raise ValueError(f"positions must have shape (T,)=({seqlen},) or (B, T)=({batch}, {seqlen}) to match x; "
                         f"got {pos.shape}")
    return a, pos


def apply_rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0, pairing="half"):
    """Rotate x (B, T, H, D) by RoPE; returns float64 (B, T, H, D).

    ``positions``: None (= arange(T)), (T,) or (B, T). The equation and the two pairings are
    in the module docstring. ``apply_rope(x)[b, t, h] == rope_matrix(positions[t], D) @ x[b, t, h]``.
    """
    a, pos = _rope_args(x, positions)
    d = a.shape[3]
    check_choice("pairing", pairing, _PAIRINGS)
    theta = rope_angles(pos, d, base=base, interpolation_factor=interpolation_factor)[..., None, :]
    cos, sin = np.cos(theta), np.sin(theta)
    first, second = _pair_indices(d, pairing)
    xa, xb = a[..., first], a[..., second]
    out = np.empty_like(a)
    out[..., first] = xa * cos - xb * sin
    out[..., second] = xa * sin + xb * cos
    return out


def rope_vjp(x, positions=None, *, cotangent, base=10000.0, interpolation_factor=1.0, pairing="half"):
    """The gradient of <apply_rope(x), cotangent> with respect to x: {"x": R(theta)^T cotangent}.

    Each pair's rotation is orthogonal, so its transpose is the rotation by -theta: the
    cotangent rotated by the negated positions (a backward that rotates it by +theta, the
    forward again, is the classic bug). ``positions`` carry no gradient (they are indices)."""
    a, pos = _rope_args(x, positions)
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, a.shape, "(B, T, H, D)", match="x")
    return {"x": apply_rope(cotangent, -pos, base=base, interpolation_factor=interpolation_factor, pairing=pairing)}


def rope_matrix(position, dim, *, base=10000.0, interpolation_factor=1.0, pairing="half"):
    """The (D, D) rotation R with ``apply_rope(x)[b, t, h] == R(position_t) @ x[b, t, h]``.

    Block-diagonal in the pairs (a, b) of ``pairing``: R[a, a] = R[b, b] = cos(theta_i),
    R[a, b] = -sin(theta_i), R[b, a] = sin(theta_i).
    """
    d = even_positive_int("dim", dim)
    check_choice("pairing", pairing, _PAIRINGS)
    pos = as_real("position", position)
    if pos.ndim != 0:
        raise ValueError(f"position must be a scalar; got shape {pos.shape}")
    if not np.isfinite(pos):
        raise ValueError(f"position must be a finite number; got {position!r}")
    theta = rope_angles(pos, d, base=base, interpolation_factor=interpolation_factor)
    first, second = _pair_indices(d, pairing)
    r = np.zeros((d, d))
    r[first, first] = r[second, second] = np.cos(theta)
    r[first, second] = -np.sin(theta)
    r[second, first] = np.sin(theta)
    return r


def rope_permutation(dim):
    """Index array P = [0, 2, 4, ..., D-2, 1, 3, ..., D-1] relating the two pairings:

        apply_rope(x[..., P], pairing="half") == apply_rope(x, pairing="interleaved")[..., P]

    P moves interleaved pair i, channels (2i, 2i+1), to half pair i, channels (i, i + D/2).
    It is the de-interleaving used to convert Meta llama checkpoints to Hugging Face's
    rotate_half layout (``huggingface/transformers: .../llama/convert_llama_weights_to_hf.py
    permute``, which applies it to the rows of W_q and W_k).
    """
    d = even_positive_int("dim", dim)
    return np.concatenate([np.arange(0, d, 2), np.arange(1, d, 2)])


def rope_in_dtype(x, positions=None, *, dtype, base=10000.0, interpolation_factor=1.0, pairing="half"):
    """``apply_rope``'s definition evaluated in a low precision ``dtype``; returns that dtype.

    The baseline a low-precision RoPE kernel is judged against (DESIGN.md, "Tolerance"). Every
    step of the definition is rounded to ``dtype``, as a kernel computing in it does (Hugging
    Face's ``LlamaRotaryEmbedding`` in float32, say): the frequencies ``base ** (-2i / D)``,
    the scaled positions, the angles ``pos * inv_freq``, their cos and sin, each product and
    the sum of each rotated pair. An angle then carries an error of about u * |angle|, which
    grows with the position: that is the dtype's own accuracy, not a kernel's fault.
    ``dtype``: numpy float16/float32/float64 or an ml_dtypes float (bfloat16, float8_*).
    """
    out_dtype = float_dtype("dtype", dtype)
    a, pos = _rope_args(x, positions)
    d = a.shape[3]
    check_choice("pairing", pairing, _PAIRINGS)
    base = finite_real("base", base, "> 0")
    factor = finite_real("interpolation_factor", interpolation_factor, "> 0")

    def rnd(value):
        return round_to(value, out_dtype)

    inv_freq = rnd(rnd(base) ** rnd(-np.arange(0, d, 2) / d))
    theta = rnd(rnd(rnd(pos) / rnd(factor))[..., None] * inv_freq)[..., None, :]
    cos, sin = rnd(np.cos(theta)), rnd(np.sin(theta))
    first, second = _pair_indices(d, pairing)
    xa, xb = rnd(a[..., first]), rnd(a[..., second])
    out = np.empty_like(a)
    out[..., first] = rnd(rnd(xa * cos) - rnd(xb * sin))
    out[..., second] = rnd(rnd(xa * sin) + rnd(xb * cos))
    return out.astype(out_dtype)
