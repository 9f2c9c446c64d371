"""Strategies for RetNet retention arguments (reference.retention).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"recurrent", "parallel" (no state arguments) or "chunked" (adds ``chunk_size``, 1 to T + 1 unless
given). ``size`` (``arrays.SIZES``) sets the tier of T, the head dims and the chunk size.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers

DECAYS = ("torchscale", "uniform", "extreme")
"""How gamma (H,) is drawn: "torchscale" 1 - 2^(-5-h) per head h (RetNet's, near 1), "uniform"
U(0, 1), "extreme" each head one of 0, 1e-3, 0.5, 1 - 1e-4, 1 (full reset, no decay and the
ends of the range)."""


def decays(rng: np.random.Generator, style: str, heads: int) -> np.ndarray:
    """gamma (H,) in ``style`` (``DECAYS``)."""
    if style == "torchscale":
        return 1 - 2.0 ** (-5 - np.arange(heads, dtype=np.float64))
    if style == "uniform":
        return rng.uniform(0.0, 1.0, heads)
    if style == "extreme":
        return rng.choice(np.array([0.0, 1e-3, 0.5, 1 - 1e-4, 1.0]), heads)
    raise ValueError(f"decay: expected one of {DECAYS}, got {style!r}")


@st.composite
def retention_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 3),
    key_dim=head_dims(4),
    value_dim=head_dims(4),
    decay=st.sampled_from(DECAYS),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of retention: q, k (B, T, H, K), v (B, T, H, V), gamma (H,).

    The initial state S (B, H, K, V) is N(0, 1).

    Options:
        size: size tier of T, the head dims and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        key_dim: key dimension K of q and k.
        value_dim: value dimension V.
        decay: how gamma is drawn: "torchscale" (1 - 2^(-5-h)), "uniform" (U(0, 1)) or "extreme" (0, 1e-3, 0.5, 1 - 1e-4, 1).
        initial_state: whether to draw an initial state S.
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "parallel", "chunked"):
        raise ValueError(f"form: expected 'recurrent', 'parallel' or 'chunked', got {form!r}")
    tier = draw(tiers(size))
    Bt, T, H, K, V = (draw(sized(s, tier)) for s in (batch, seq_len, heads, key_dim, value_dim))
    arrays = draw(random_arrays({"q": (Bt, T, H, K), "k": (Bt, T, H, K), "v": (Bt, T, H, V)}))
    rng = draw(generators())
    args = {**arrays, "gamma": decays(rng, draw(fixed_or(decay)), H)}
    if form != "parallel":
        args["initial_state"] = rng.standard_normal((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
        args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args


@st.composite
def rational_retention_inputs(
    draw,
    *,
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 6),
    heads=st.integers(1, 2),
    key_dim=st.integers(1, 3),
    value_dim=st.integers(1, 3),
    initial_state=st.booleans(),
    chunk_size=None,
):
    """Retention on rationals, for the exact claim: q, k, v and the initial state hold small
    signed integers (as float64) to be divided by ``denominator`` (1, 3 or 7); gamma_h is
    ``gamma_numerator / gamma_denominator`` (0..den over 2, 3 or 5: no decay and full resets
    included)."""
    Bt, T, H, K, V = (draw(fixed_or(s)) for s in (batch, seq_len, heads, key_dim, value_dim))
    rng = draw(generators())

    def integers(shape):
        return rng.integers(-4, 5, shape).astype(np.float64)

    gamma_den = draw(st.sampled_from([2, 3, 5]))
    args = {"q": integers((Bt, T, H, K)), "k": integers((Bt, T, H, K)), "v": integers((Bt, T, H, V)),
            "gamma_numerator": rng.integers(0, gamma_den + 1, H).astype(np.float64), "gamma_denominator": gamma_den,
            "denominator": draw(st.sampled_from([1, 3, 7]))}
    args["initial_state"] = integers((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args


@st.composite
def msr_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 3),
    key_dim=st.sampled_from([2, 4, 6]),
    value_dim=head_dims(4),
    eps=0.0,
    chunk_size=None,
):
    """Keyword arguments of multi-scale retention as torchscale computes it: q, k (B, T, H, K),
    K even (the rotation turns pairs), v (B, T, H, V), the RMSNorm's eps.

    Options:
        size: size tier of T, V and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H (gamma_h = 1 - 2^(-5-h)).
        key_dim: key dimension K of q and k, even.
        value_dim: value dimension V.
        eps: the per-head RMSNorm's eps (0: the forms agree; torchscale's default 1e-6 breaks the agreement).
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "parallel", "chunked"):
        raise ValueError(f"form: expected 'recurrent', 'parallel' or 'chunked', got {form!r}")
    tier = draw(tiers(size))
    Bt, T, H, K, V = (draw(sized(s, tier)) for s in (batch, seq_len, heads, key_dim, value_dim))
    args = {**draw(random_arrays({"q": (Bt, T, H, K), "k": (Bt, T, H, K), "v": (Bt, T, H, V)})),
            "eps": draw(fixed_or(eps))}
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args
