"""Strategies for gated linear attention arguments (reference.gla).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"recurrent", "parallel" (no state arguments) or "chunked" (adds ``chunk_size``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers

GATES = ("logsigmoid", "uniform", "resets", "extreme")
"""How the log-decays g <= 0 are drawn: "logsigmoid" log(sigmoid(x)) / 16 for x ~ N(0, 1) (GLA's
gate), "uniform" -U(0, 3), "resets" as logsigmoid with about one step in eight -inf (a packed
sequence boundary, fla #20), "extreme" each entry one of 0, -1e-6, -1, -1e4."""


def log_decays(rng: np.random.Generator, style: str, shape: tuple) -> np.ndarray:
    """g (``shape``) in ``style`` (``GATES``)."""
    if style in ("logsigmoid", "resets"):
        g = -np.logaddexp(0.0, -rng.standard_normal(shape)) / 16
        return np.where(rng.random(shape) < 0.125, -np.inf, g) if style == "resets" else g
    if style == "uniform":
        return -rng.uniform(0.0, 3.0, shape)
    if style == "extreme":
        return rng.choice(np.array([0.0, -1e-6, -1.0, -1e4]), shape)
    raise ValueError(f"gate: expected one of {GATES}, got {style!r}")


@st.composite
def gla_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 2),
    key_dim=head_dims(4, large=(32, 64)),
    value_dim=head_dims(4),
    gate=st.sampled_from(GATES),
    per_head=st.booleans(),
    scale=st.sampled_from([None, 1.0]),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of GLA: q, k (B, T, H, K), v (B, T, H, V), g (B, T, H, K) or (B, T, H).

    The initial state S (B, H, K, V) is N(0, 1).

    Options:
        size: size tier of T, the head dims and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        key_dim: key dimension K of q and k.
        value_dim: value dimension V.
        gate: how g is drawn: "logsigmoid", "uniform", "resets" (some -inf) or "extreme" (0, -1e-6, -1, -1e4).
        per_head: one decay per head, g (B, T, H) (simple GLA), instead of one per key channel.
        scale: the query scale (None: K^-1/2).
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
    shape = (Bt, T, H) if draw(fixed_or(per_head)) else (Bt, T, H, K)
    args = {**arrays, "g": log_decays(rng, draw(fixed_or(gate)), shape), "scale": draw(fixed_or(scale))}
    if form != "parallel":
        args["initial_state"] = rng.standard_normal((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
        args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args


@st.composite
def rational_gla_inputs(
    draw,
    *,
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 12),
    heads=st.integers(1, 2),
    key_dim=st.integers(1, 3),
    value_dim=st.integers(1, 3),
    per_head=st.booleans(),
    initial_state=st.booleans(),
    chunk_size=None,
):
    """GLA on rationals, for the exact claims: q, k, v and the initial state hold small signed
    integers (as float64) to be divided by ``denominator`` (1, 3 or 7); the decays are
    ``decay_numerator / decay_denominator`` (0..den over 2, 3 or 5: resets and no decay
    included), per key channel or per head."""
    Bt, T, H, K, V = (draw(fixed_or(s)) for s in (batch, seq_len, heads, key_dim, value_dim))
    rng = draw(generators())

    def integers(shape):
        return rng.integers(-4, 5, shape).astype(np.float64)

    decay_den = draw(st.sampled_from([2, 3, 5]))
    shape = (Bt, T, H) if draw(fixed_or(per_head)) else (Bt, T, H, K)
    args = {"q": integers((Bt, T, H, K)), "k": integers((Bt, T, H, K)), "v": integers((Bt, T, H, V)),
            "decay_numerator": rng.integers(0, decay_den + 1, shape).astype(np.float64),
            "decay_denominator": decay_den, "denominator": draw(st.sampled_from([1, 3, 7]))}
    args["initial_state"] = integers((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args
