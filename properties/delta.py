"""Strategies for delta-rule arguments (reference.delta).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"recurrent" or "chunked" (adds ``chunk_size``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers
from seqcheck.properties.gla import GATES, log_decays


@st.composite
def delta_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 2),
    key_dim=head_dims(4, large=(32, 64)),
    value_dim=head_dims(4),
    gate=st.sampled_from((None,) + GATES),
    normalise_keys=True,
    beta_max=st.sampled_from([1.0, 2.0]),
    scale=st.sampled_from([None, 1.0]),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of the (gated) delta rule: q, k (B, T, H, K), v (B, T, H, V), beta (B, T, H),
    g (B, T, H) or no gate.

    beta is U(0, beta_max); the initial state S (B, H, K, V) is N(0, 1).

    Options:
        size: size tier of T, the head dims and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        key_dim: key dimension K of q and k.
        value_dim: value dimension V.
        gate: None (the delta rule) or how the log-gates g are drawn (Gated DeltaNet): "logsigmoid", "uniform", "resets" or "extreme".
        normalise_keys: whether k is L2-normalised per head (DeltaNet's; each step then contracts the state).
        beta_max: the largest beta (1: DeltaNet's sigmoid; 2: negative eigenvalues allowed).
        scale: the query scale (None: K^-1/2).
        initial_state: whether to draw an initial state S.
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "chunked"):
        raise ValueError(f"form: expected 'recurrent' or 'chunked', got {form!r}")
    tier = draw(tiers(size))
    Bt, T, H, K, V = (draw(sized(s, tier)) for s in (batch, seq_len, heads, key_dim, value_dim))
    arrays = draw(random_arrays({"q": (Bt, T, H, K), "k": (Bt, T, H, K), "v": (Bt, T, H, V)}))
    rng = draw(generators())
    k = arrays["k"]
    if draw(fixed_or(normalise_keys)):
        norms = np.linalg.norm(k, axis=-1, keepdims=True)
        k = np.where(norms > 0, k / np.where(norms > 0, norms, 1.0), k)
    style = draw(fixed_or(gate))
    args = {"q": arrays["q"], "k": k, "v": arrays["v"], "beta": rng.uniform(0.0, draw(fixed_or(beta_max)), (Bt, T, H)),
            "g": None if style is None else log_decays(rng, style, (Bt, T, H)), "scale": draw(fixed_or(scale))}
    args["initial_state"] = rng.standard_normal((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
    args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args


@st.composite
def rational_delta_inputs(
    draw,
    *,
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 6),
    heads=st.integers(1, 2),
    key_dim=st.integers(1, 3),
    value_dim=st.integers(1, 3),
    gated=st.booleans(),
    initial_state=st.booleans(),
    chunk_size=None,
):
    """The delta rule on rationals, for the exact claim: q, k, v and the initial state hold small
    signed integers (as float64) to be divided by ``denominator`` (1, 3 or 7); beta is 0..4 over 4,
    the gates (if ``gated``) 0..den over 2, 3 or 5."""
    Bt, T, H, K, V = (draw(fixed_or(s)) for s in (batch, seq_len, heads, key_dim, value_dim))
    rng = draw(generators())

    def integers(shape):
        return rng.integers(-3, 4, shape).astype(np.float64)

    decay_den = draw(st.sampled_from([2, 3, 5]))
    args = {"q": integers((Bt, T, H, K)), "k": integers((Bt, T, H, K)), "v": integers((Bt, T, H, V)),
            "beta_numerator": rng.integers(0, 5, (Bt, T, H)).astype(np.float64),
            "decay_numerator": rng.integers(0, decay_den + 1, (Bt, T, H)).astype(np.float64)
            if draw(fixed_or(gated)) else None,
            "decay_denominator": decay_den, "denominator": draw(st.sampled_from([1, 3, 7]))}
    args["initial_state"] = integers((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args
