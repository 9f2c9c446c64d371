"""Strategies for RWKV-4 WKV arguments (reference.rwkv).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"recurrent", "parallel", "naive" or "chunked" (adds ``chunk_size``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers


@st.composite
def wkv4_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    channels=head_dims(4),
    k_scale=st.sampled_from([1.0, 10.0, 300.0]),
    k_offset=st.sampled_from([0.0, 700.0]),
    chunk_size=None,
):
    """Keyword arguments of RWKV-4's WKV: k, v (B, T, C), w = exp(N(0, 1)) > 0, u ~ N(0, 1) (C,).

    k is ``k_scale`` times the drawn values plus ``k_offset`` (up to about 1e3, where the naive
    sums overflow); the naive form keeps k_scale 1 and no offset.

    Options:
        size: size tier of T, C and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        channels: channels C.
        k_scale: the scale of k (the naive form: 1).
        k_offset: a constant added to k (the naive form: 0).
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "parallel", "naive", "chunked"):
        raise ValueError(f"form: expected 'recurrent', 'parallel', 'naive' or 'chunked', got {form!r}")
    tier = draw(tiers(size))
    Bt, T, C = (draw(sized(s, tier)) for s in (batch, seq_len, channels))
    arrays = draw(random_arrays({"k": (Bt, T, C), "v": (Bt, T, C)}))
    rng = draw(generators())
    scale, offset = (1.0, 0.0) if form == "naive" else (draw(fixed_or(k_scale)), draw(fixed_or(k_offset)))
    args = {"k": arrays["k"] * scale + offset, "v": arrays["v"], "w": np.exp(rng.standard_normal(C)),
            "u": rng.standard_normal(C)}
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args
