"""Strategies for causal linear attention (Katharopoulos et al. 2020) arguments.

Every keyword takes a strategy or a fixed value (``fixed_or``): ``linear_inputs(feature_map="elu",
eps=1e-6)``. ``form``: "recurrent", "parallel" (causal; no state arguments) or "chunked" (adds
``chunk_size``, 1 to T + 1 unless given). ``size`` (``arrays.SIZES``) sets the tier of T, the
head dims and the chunk size: "small" (T <= 10, D, M <= 4), "large" (T 15..257 around multiples
of 16, D, M 32..128, chunks of 16..128 and neighbours) or "default" (each axis large in about
30 draws of 100); the exact claim's ``rational_linear_inputs`` stays small.

The initial state is the reference's pair (S (B, H, D, M), z (B, H, D)); the registered forms
take it as one array [S | z] (B, H, D, M + 1), the adapter of seqcheck.equiv.families.linear.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers

FEATURE_MAPS = ("elu", "identity")


@st.composite
def linear_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 2),
    key_dim=head_dims(4),
    value_dim=head_dims(4),
    feature_map=st.sampled_from(FEATURE_MAPS),
    eps=st.sampled_from([1e-6, 0.0, 0.5]),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of causal linear attention: q, k (B, T, H, D), v (B, T, H, M).

    With ``feature_map="identity"`` q and k are made positive (|.| + 0.1), so every denominator
    is at least eps + a positive sum, as with elu + 1; signed identity features, whose
    denominators can vanish, are the exact claim's (``rational_linear_inputs``). The initial
    state draws S from N(0, 1) and z from |N(0, 1)| (a sum of positive features is >= 0).

    Options:
        size: size tier of T, the head dims and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        key_dim: feature dimension D of q and k.
        value_dim: value dimension M.
        feature_map: "elu" (elu + 1) or "identity" (q, k made positive).
        eps: the denominator's epsilon.
        initial_state: whether to draw an initial state (S, z) (the registered forms get it as one (B, H, D, M + 1) array [S | z]).
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "parallel", "chunked"):
        raise ValueError(f"form: expected 'recurrent', 'parallel' or 'chunked', got {form!r}")
    tier = draw(tiers(size))
    Bt, T, H, D, M = (draw(sized(s, tier)) for s in (batch, seq_len, heads, key_dim, value_dim))
    phi = draw(fixed_or(feature_map))
    arrays = draw(random_arrays({"q": (Bt, T, H, D), "k": (Bt, T, H, D), "v": (Bt, T, H, M)}))
    q, k = arrays["q"], arrays["k"]
    if phi == "identity":
        q, k = np.abs(q) + 0.1, np.abs(k) + 0.1
    args = {"q": q, "k": k, "v": arrays["v"], "feature_map": phi, "eps": draw(fixed_or(eps))}
    if form != "parallel":
        rng = draw(generators())
        args["initial_state"] = None
        if draw(fixed_or(initial_state)):
            args["initial_state"] = (rng.standard_normal((Bt, H, D, M)), np.abs(rng.standard_normal((Bt, H, D))))
        args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args


@st.composite
def rational_linear_inputs(
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
    """Linear attention on rationals with the identity feature map, for the exact claim: q, k, v
    and the initial state hold small signed integers (as float64) to be divided by
    ``denominator`` (1, 3 or 7). eps is 1e-6 or 2^-10, a dyadic rational: a denominator with
    only odd factors plus it is never 0, so no division by zero in exact arithmetic."""
    Bt, T, H, D, M = (draw(fixed_or(s)) for s in (batch, seq_len, heads, key_dim, value_dim))
    rng = draw(generators())

    def integers(shape):
        return rng.integers(-4, 5, shape).astype(np.float64)

    args = {"q": integers((Bt, T, H, D)), "k": integers((Bt, T, H, D)), "v": integers((Bt, T, H, M)),
            "eps": draw(st.sampled_from([1e-6, 2.0**-10])), "denominator": draw(st.sampled_from([1, 3, 7]))}
    args["initial_state"] = (integers((Bt, H, D, M)), integers((Bt, H, D))) if draw(fixed_or(initial_state)) else None
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args
