"""Float64 references for position encodings: ALiBi, RoPE, sinusoidal."""

from .alibi import alibi_bias, alibi_slopes
from .rope import apply_rope, rope_angles, rope_in_dtype, rope_matrix, rope_permutation, rope_vjp
from .sinusoidal import sinusoidal_encoding

__all__ = [
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "rope_angles",
    "rope_in_dtype",
    "rope_matrix",
    "rope_permutation",
    "rope_vjp",
    "sinusoidal_encoding",
]
