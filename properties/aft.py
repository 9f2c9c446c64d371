"""Strategies for Attention Free Transformer arguments (reference.aft).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``: "full",
"naive" (moderate k), "local" (adds ``window``), "simple" (no w), "conv" (q, k, v (B, T, H, D)
and a kernel w (H, s)) or "wkv4" (RWKV-4's arguments k, v, w, u, for the claim relating the two).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers

FORMS = ("full", "naive", "local", "simple", "conv", "wkv4")


@st.composite
def aft_inputs(
    draw,
    *,
    form="full",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    channels=head_dims(4),
    heads=st.integers(1, 3),
    k_scale=st.sampled_from([1.0, 10.0, 300.0]),
    k_offset=st.sampled_from([0.0, 700.0]),
    w_scale=None,
    w_per_channel=st.booleans(),
    causal=st.booleans(),
    window=None,
    kernel_size=None,
):
    """Keyword arguments of AFT: q, k, v (B, T, D) ((B, T, H, D) for conv) and position biases
    w = ``w_scale`` N(0, 1) of shape (T, T) or (T, T, D) (conv: a kernel (H, s), s odd).

    k is ``k_scale`` times the drawn values plus ``k_offset`` (up to about 1e3, where the naive
    sums overflow); the naive form keeps k_scale 1 and no offset. The wkv4 form draws RWKV-4's k,
    v (B, T, C), decays w = exp(N(0, 1)) > 0 and bonuses u ~ N(0, 1) (C,).

    Options:
        size: size tier of T and D: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        channels: channels D (conv: per head).
        heads: heads H (conv).
        k_scale: the scale of k (the naive form: 1).
        k_offset: a constant added to k (the naive form: 0).
        w_scale: the scale of the position biases w (None: 1 or 10; conv: 1, as the paper's
            formula cancels to 0 / 0 where a kernel weight e^w falls below 2^-53).
        w_per_channel: w of shape (T, T, D), one bias matrix per channel, instead of (T, T).
        causal: sums over t' <= t only.
        window: AFT-local's window (None: 1..T+1).
        kernel_size: AFT-conv's odd kernel size s (None: 1, 3, ..., 2T+1).
    """
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    tier = draw(tiers(size))
    Bt, T, D = (draw(sized(s, tier)) for s in (batch, seq_len, channels))
    H = draw(fixed_or(heads)) if form == "conv" else None
    shape = (Bt, T, H, D) if form == "conv" else (Bt, T, D)
    arrays = draw(random_arrays({"q": shape, "k": shape, "v": shape}))
    rng = draw(generators())
    w_scale = draw(fixed_or((1.0 if form == "conv" else st.sampled_from([1.0, 10.0])) if w_scale is None else w_scale))
    scale, offset = (1.0, 0.0) if form == "naive" else (draw(fixed_or(k_scale)), draw(fixed_or(k_offset)))
    k = arrays["k"] * scale + offset
    if form == "wkv4":
        return {"k": k, "v": arrays["v"], "w": np.exp(rng.standard_normal(D)), "u": rng.standard_normal(D)}
    args = {"q": arrays["q"], "k": k, "v": arrays["v"]}
    if form == "conv":
        s = draw(fixed_or(st.integers(0, T).map(lambda n: 2 * n + 1) if kernel_size is None else kernel_size))
        return {**args, "w": w_scale * rng.standard_normal((H, s))}
    args["causal"] = draw(fixed_or(causal))
    if form == "simple":
        return args
    per_channel = draw(fixed_or(w_per_channel))
    args["w"] = w_scale * rng.standard_normal((T, T, D) if per_channel else (T, T))
    if form == "local":
        args["window"] = draw(fixed_or(st.integers(1, T + 1) if window is None else window))
    return args
