"""Strategies for RWKV-4 WKV and RWKV-5/6 matrix-state WKV arguments (reference.rwkv).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"recurrent", "parallel", "naive" (RWKV-4) or "chunked" (adds ``chunk_size``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers
from seqcheck.properties.gla import GATES, log_decays


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


DECAYS = ("data", "per_head", "rwkv5", "rwkv5_per_head")
"""The shape of RWKV-5/6's log-decays g: "data" (B, T, H, K) (RWKV-6), "per_head" (B, T, H),
"rwkv5" (H, K) constant in time (v5.2), "rwkv5_per_head" (H,) (v5.0)."""


def _decay_shape(decays: str, B: int, T: int, H: int, K: int) -> tuple:
    shapes = {"data": (B, T, H, K), "per_head": (B, T, H), "rwkv5": (H, K), "rwkv5_per_head": (H,)}
    if decays not in shapes:
        raise ValueError(f"decays: expected one of {DECAYS}, got {decays!r}")
    return shapes[decays]


@st.composite
def wkv6_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 2),
    key_dim=head_dims(4, large=(32, 64)),
    value_dim=head_dims(4),
    decays=None,
    gate=st.sampled_from(GATES),
    bonus_per_head=st.booleans(),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of RWKV-5/6's WKV: r, k (B, T, H, K), v (B, T, H, V), log-decays g, the
    bonus u ~ N(0, 1) (H, K) or (H,). ``form`` "rwkv5": the parallel form's, with RWKV-5's decays.

    g is drawn as GLA's gates (``properties.gla.GATES``: "resets" and "extreme" included) in one
    of the shapes ``DECAYS``. The initial state S (B, H, K, V) is N(0, 1).

    Options:
        size: size tier of T, the head dims and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        key_dim: key dimension K of r and k.
        value_dim: value dimension V.
        decays: the shape of g: "data" (B, T, H, K), "per_head" (B, T, H), "rwkv5" (H, K), "rwkv5_per_head" (H,) (None: any; the rwkv5 form: the last two).
        gate: how g is drawn: "logsigmoid", "uniform", "resets" (some -inf) or "extreme" (0, -1e-6, -1, -1e4).
        bonus_per_head: one bonus per head, u (H,), instead of one per key channel.
        initial_state: whether to draw an initial state S.
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "parallel", "chunked", "rwkv5"):
        raise ValueError(f"form: expected 'recurrent', 'parallel', 'chunked' or 'rwkv5', got {form!r}")
    if decays is None:
        decays = st.sampled_from(DECAYS[2:] if form == "rwkv5" else DECAYS)
    tier = draw(tiers(size))
    Bt, T, H, K, V = (draw(sized(s, tier)) for s in (batch, seq_len, heads, key_dim, value_dim))
    arrays = draw(random_arrays({"r": (Bt, T, H, K), "k": (Bt, T, H, K), "v": (Bt, T, H, V)}))
    rng = draw(generators())
    g = log_decays(rng, draw(fixed_or(gate)), _decay_shape(draw(fixed_or(decays)), Bt, T, H, K))
    args = {**arrays, "g": g, "u": rng.standard_normal((H,) if draw(fixed_or(bonus_per_head)) else (H, K))}
    if form in ("recurrent", "chunked"):
        args["initial_state"] = rng.standard_normal((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
        args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args


@st.composite
def rational_wkv6_inputs(
    draw,
    *,
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 12),
    heads=st.integers(1, 2),
    key_dim=st.integers(1, 3),
    value_dim=st.integers(1, 3),
    initial_state=st.booleans(),
    chunk_size=None,
):
    """RWKV-5/6 on rationals, for the exact claims: r, k, v, u and the initial state hold small
    signed integers (as float64) to be divided by ``denominator`` (1, 3 or 7); the decays are
    ``decay_numerator / decay_denominator`` per key channel and step (0..den over 2, 3 or 5:
    resets and no decay included)."""
    Bt, T, H, K, V = (draw(fixed_or(s)) for s in (batch, seq_len, heads, key_dim, value_dim))
    rng = draw(generators())

    def integers(shape):
        return rng.integers(-4, 5, shape).astype(np.float64)

    decay_den = draw(st.sampled_from([2, 3, 5]))
    args = {"r": integers((Bt, T, H, K)), "k": integers((Bt, T, H, K)), "v": integers((Bt, T, H, V)),
            "u": integers((H, K)), "decay_numerator": rng.integers(0, decay_den + 1, (Bt, T, H, K)).astype(np.float64),
            "decay_denominator": decay_den, "denominator": draw(st.sampled_from([1, 3, 7]))}
    args["initial_state"] = integers((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args
