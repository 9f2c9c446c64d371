"""Deliberately wrong position encodings, each rejected by a claim or by check()."""

import numpy as np

from seqcheck.reference.positional import apply_rope, rope_matrix


def rope_with_absolute_drift(x, positions=None, **options):
    """RoPE that also scales each vector by its position: the dot product sees absolute positions."""
    T = x.shape[1]
    pos = np.arange(T) if positions is None else np.asarray(positions)
    return apply_rope(x, positions, **options) * (1 + 1e-3 * pos.reshape(-1, T)[..., None, None])


def rope_matrix_squared_angle(position, dim, *, base=10000.0, interpolation_factor=1.0, pairing="half"):
    """Rotation by an angle quadratic in the position: not a one-parameter group."""
    return rope_matrix(position * position, dim, base=base, interpolation_factor=interpolation_factor, pairing=pairing)


def rope_interleaved_backwards(x, positions=None, *, pairing="half", **options):
    """The interleaved pairing rotating the wrong way."""
    if pairing == "half":
        return apply_rope(x, positions, pairing="half", **options)
    T = x.shape[1]
    pos = -(np.arange(T) if positions is None else np.asarray(positions, dtype=float))
    return apply_rope(x, pos, pairing="interleaved", **options)


def rope_half_base_1000(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
    """RoPE that ignores the base argument and uses 1000."""
    return apply_rope(x, positions, base=1000.0, interpolation_factor=interpolation_factor, pairing="half")


def alibi_geometric_for_any_count(num_heads):
    """ALiBi slopes 2^(-8i/n) for every n, without the closest-power-of-two rule."""
    return 2.0 ** (-8.0 * np.arange(1, num_heads + 1) / num_heads)


def sinusoidal_concatenated_paper_exponent(positions, dim, *, base=10000.0):
    """[sin | cos] halves with the paper's exponent 2i/d instead of tensor2tensor's i/(d/2 - 1)."""
    angle = np.asarray(positions, dtype=float)[..., None] * base ** (-2.0 * np.arange(dim // 2) / dim)
    return np.concatenate([np.sin(angle), np.cos(angle), np.zeros(angle.shape[:-1] + (dim % 2,))], axis=-1)


MUTANTS = {
    "positional.rope.relative": rope_with_absolute_drift,
    "positional.rope.composition": rope_matrix_squared_angle,
    "positional.rope.pairings": rope_interleaved_backwards,
}
"""The mutant each claim of the family must reject, by claim key."""
