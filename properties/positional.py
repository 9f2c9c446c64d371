"""Strategies for rotary, ALiBi and sinusoidal position encodings.

``size`` (``arrays.SIZES``) sets the tier of the length and dimension: "small" (T <= 8, D <= 16),
"large" (T 15..257 around multiples of 16, D 32..128) or "default" (each axis large in about
30 draws of 100, small otherwise). An axis given explicitly ignores the tier.
"""

from __future__ import annotations


import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import HEAD_DIMS, Sized, fixed_or, generators, lengths, random_arrays, sized, tiers

bases = st.sampled_from([10000.0, 500000.0, 100.0])
"""RoPE bases: the original 10^4, Llama 3's 5*10^5, and a small one that turns fast."""

interpolation_factors = st.sampled_from([1.0, 4.0, 0.5])


HALF_DIMS = Sized(range(1, 9), [d // 2 for d in HEAD_DIMS],
                  f"1..8 (large: {', '.join(str(d // 2) for d in HEAD_DIMS)})")


def positions_of(shape: tuple, top: int):
    """Integer positions 0..``top`` of ``shape``: drawn one by one (each shrinks) up to 32 of them,
    from a drawn seed beyond."""
    count = int(np.prod(shape))
    if count <= 32:
        return st.lists(st.integers(0, top), min_size=count, max_size=count).map(
            lambda p: np.array(p, dtype=np.int64).reshape(shape))
    return generators().map(lambda rng: rng.integers(0, top + 1, shape))


@st.composite
def rope_inputs(draw, *, size="default", batch=st.integers(1, 2), seq_len=lengths(8), heads=st.integers(1, 3),
                half_dim=HALF_DIMS, max_position=st.sampled_from([16, 4096])):
    """Keyword arguments of ``apply_rope`` but the pairing: x (B,T,H,D) with even D, positions
    (B,T) or None, base and interpolation factor.

    Options:
        size: size tier of the length and dimension: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        half_dim: half the rotated dimension (D = 2 * half_dim).
        max_position: largest explicit position (positions are None or drawn in 0..max_position).
    """
    tier = draw(tiers(size))
    B, T, H = draw(fixed_or(batch)), draw(sized(seq_len, tier)), draw(fixed_or(heads))
    D = 2 * draw(sized(half_dim, tier))
    x = draw(random_arrays({"x": (B, T, H, D)}))["x"]
    positions = draw(st.none() | positions_of((B, T), draw(fixed_or(max_position))))
    return {"x": x, "positions": positions, "base": draw(bases),
            "interpolation_factor": draw(interpolation_factors)}


@st.composite
def rope_pair_inputs(draw, *, max_position=4096):
    """A query and a key vector (1,1,1,D), their positions m, n and a common shift.

    Options:
        max_position: largest position m, n or shift.
    """
    D = 2 * draw(st.integers(1, 16))
    arrays = draw(random_arrays({"q": (1, 1, 1, D), "k": (1, 1, 1, D)}))
    position = st.integers(0, max_position)
    return {**arrays, "m": draw(position), "n": draw(position), "shift": draw(position),
            "base": draw(bases), "interpolation_factor": draw(interpolation_factors),
            "pairing": draw(st.sampled_from(["half", "interleaved"]))}


@st.composite
def rope_matrix_inputs(draw, *, max_position=4096):
    """Two positions m, n and the rotation's dimension, base, factor and pairing.

    Options:
        max_position: largest position m or n.
    """
    position = st.integers(0, max_position)
    return {"m": draw(position), "n": draw(position), "dim": 2 * draw(st.integers(1, 16)),
            "base": draw(bases), "interpolation_factor": draw(interpolation_factors),
            "pairing": draw(st.sampled_from(["half", "interleaved"]))}


def alibi_inputs():
    """Keyword arguments of ``alibi_slopes``: head counts 1..80, powers of two or not (no options)."""
    return st.fixed_dictionaries({"num_heads": st.integers(1, 80)})


@st.composite
def sinusoidal_inputs(draw, *, size="default", even=True, max_position=4096, seq_len=lengths(12), dim=None):
    """Keyword arguments of ``sinusoidal_encoding`` but the layout: positions (T,) and dim.

    Options:
        size: size tier of the length and dimension: "small", "default" or "large".
        even: whether dim is even (the interleaved layout needs it).
        max_position: largest position.
        seq_len: number of positions T.
        dim: encoding dimension (None: 2..32 even or 1..33 when small, 32..128 when large).
    """
    tier = draw(tiers(size))
    T = draw(sized(seq_len, tier))
    if dim is None:
        dim = EVEN_DIMS if even else ANY_DIMS
    positions = draw(positions_of((T,), max_position))
    return {"positions": positions, "dim": draw(sized(dim, tier)), "base": draw(st.sampled_from([10000.0, 100.0]))}


EVEN_DIMS = Sized(range(2, 33, 2), HEAD_DIMS, f"2..32 even (large: {', '.join(map(str, HEAD_DIMS))})")
ANY_DIMS = Sized(range(1, 34), sorted(set(HEAD_DIMS) | {d + 1 for d in HEAD_DIMS}), "1..33 (large: 32..129, even and odd)")
