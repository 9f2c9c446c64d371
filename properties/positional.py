"""Strategies for rotary, ALiBi and sinusoidal position encodings."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import fixed_or, random_arrays

bases = st.sampled_from([10000.0, 500000.0, 100.0])
"""RoPE bases: the original 10^4, Llama 3's 5*10^5, and a small one that turns fast."""

interpolation_factors = st.sampled_from([1.0, 4.0, 0.5])


@st.composite
def rope_inputs(draw, *, batch=st.integers(1, 2), seq_len=st.integers(1, 8), heads=st.integers(1, 3),
                half_dim=st.integers(1, 8), max_position=st.sampled_from([16, 4096])):
    """Keyword arguments of ``apply_rope`` but the pairing: x (B,T,H,D) with even D, positions
    (B,T) or None, base and interpolation factor."""
    B, T, H, D = draw(fixed_or(batch)), draw(fixed_or(seq_len)), draw(fixed_or(heads)), 2 * draw(fixed_or(half_dim))
    x = draw(random_arrays({"x": (B, T, H, D)}))["x"]
    positions = draw(st.none() | st.lists(st.integers(0, draw(fixed_or(max_position))), min_size=B * T,
                                          max_size=B * T).map(lambda p: np.array(p).reshape(B, T)))
    return {"x": x, "positions": positions, "base": draw(bases),
            "interpolation_factor": draw(interpolation_factors)}


@st.composite
def rope_pair_inputs(draw, *, max_position=4096):
    """A query and a key vector (1,1,1,D), their positions m, n and a common shift."""
    D = 2 * draw(st.integers(1, 16))
    arrays = draw(random_arrays({"q": (1, 1, 1, D), "k": (1, 1, 1, D)}))
    position = st.integers(0, max_position)
    return {**arrays, "m": draw(position), "n": draw(position), "shift": draw(position),
            "base": draw(bases), "interpolation_factor": draw(interpolation_factors),
            "pairing": draw(st.sampled_from(["half", "interleaved"]))}


@st.composite
def rope_matrix_inputs(draw, *, max_position=4096):
    """Two positions m, n and the rotation's dimension, base, factor and pairing."""
    position = st.integers(0, max_position)
    return {"m": draw(position), "n": draw(position), "dim": 2 * draw(st.integers(1, 16)),
            "base": draw(bases), "interpolation_factor": draw(interpolation_factors),
            "pairing": draw(st.sampled_from(["half", "interleaved"]))}


def alibi_inputs():
    """Keyword arguments of ``alibi_slopes``: head counts, powers of two or not."""
    return st.fixed_dictionaries({"num_heads": st.integers(1, 80)})


@st.composite
def sinusoidal_inputs(draw, *, even=True, max_position=4096):
    """Keyword arguments of ``sinusoidal_encoding`` but the layout: positions (T,) and dim."""
    T = draw(st.integers(1, 12))
    dim = draw(st.integers(1, 16).map(lambda d: 2 * d) if even else st.integers(1, 33))
    positions = np.array(draw(st.lists(st.integers(0, max_position), min_size=T, max_size=T)))
    return {"positions": positions, "dim": dim, "base": draw(st.sampled_from([10000.0, 100.0]))}


STRATEGIES = {
    "positional.rope.half": rope_inputs,
    "positional.rope.interleaved": rope_inputs,
    "positional.alibi.slopes": alibi_inputs,
    "positional.sinusoidal.interleaved": sinusoidal_inputs,
    "positional.sinusoidal.concatenated": functools.partial(sinusoidal_inputs, even=False),
}
