"""Strategies for RWKV-7 wkv7 arguments (reference.rwkv7).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"recurrent" or "chunked" (adds ``chunk_size``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import blocks, fixed_or, generators, head_dims, lengths, random_arrays, sized, tiers
from seqcheck.properties.gla import GATES, log_decays

W_KINDS = ("log", "decay", "loglog")
TRANSITIONS = ("rwkv", "normal")


def as_w(log_decay: np.ndarray, w_kind: str) -> np.ndarray:
    """The log-decays log d <= 0 as the reference's w of ``w_kind`` ("log", "decay", "loglog")."""
    if w_kind == "log":
        return log_decay
    if w_kind == "decay":
        return np.exp(log_decay)
    if w_kind == "loglog":
        with np.errstate(divide="ignore"):
            return np.log(-log_decay)  # d = exp(-exp(w)): log d = 0 -> -inf, log d = -inf -> inf
    raise ValueError(f"w_kind: expected one of {W_KINDS}, got {w_kind!r}")


@st.composite
def wkv7_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 2),
    key_dim=head_dims(4, large=(32, 64)),
    value_dim=head_dims(4),
    decay=st.sampled_from(GATES),
    w_kind=st.sampled_from(W_KINDS),
    transition=st.sampled_from(TRANSITIONS),
    scale=st.sampled_from([1.0, 0.5]),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of RWKV-7's wkv7: r, w, k, a, b (B, T, H, K), v (B, T, H, V).

    The initial state S (B, H, K, V) is N(0, 1).

    Options:
        size: size tier of T, the head dims and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        key_dim: key dimension K of r, w, k, a and b.
        value_dim: value dimension V.
        decay: how the log-decays are drawn, per key channel: "logsigmoid", "uniform", "resets" or "extreme".
        w_kind: how w holds them: "log" (log d, fla's), "decay" (d, the numpy file's) or "loglog" (log(-log d), RWKV-LM's CUDA kernels').
        transition: "rwkv" (a = -kk, b = kk * a_gate, kk L2-normalised, a_gate U(0, 1) per channel: RWKV-LM's) or "normal" (a, b N(0, 1/(4K)), |a| |b| about 1/4).
        scale: the output scale (RWKV-7's is 1).
        initial_state: whether to draw an initial state S.
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..129 near tiles or T+1).
    """
    if form not in ("recurrent", "chunked"):
        raise ValueError(f"form: expected 'recurrent' or 'chunked', got {form!r}")
    tier = draw(tiers(size))
    Bt, T, H, K, V = (draw(sized(s, tier)) for s in (batch, seq_len, heads, key_dim, value_dim))
    arrays = draw(random_arrays({"r": (Bt, T, H, K), "k": (Bt, T, H, K), "v": (Bt, T, H, V)}))
    rng = draw(generators())
    kind = draw(fixed_or(transition))
    if kind == "rwkv":
        kk = rng.standard_normal((Bt, T, H, K))
        kk = kk / np.maximum(np.linalg.norm(kk, axis=-1, keepdims=True), 1e-12)
        a, b = -kk, kk * rng.uniform(0.0, 1.0, (Bt, T, H, K))
    elif kind == "normal":
        a, b = rng.standard_normal((2, Bt, T, H, K)) / (2 * np.sqrt(K))
    else:
        raise ValueError(f"transition: expected one of {TRANSITIONS}, got {kind!r}")
    w_kind = draw(fixed_or(w_kind))
    args = {"r": arrays["r"], "w": as_w(log_decays(rng, draw(fixed_or(decay)), (Bt, T, H, K)), w_kind),
            "k": arrays["k"], "v": arrays["v"], "a": a, "b": b, "w_kind": w_kind, "scale": draw(fixed_or(scale))}
    args["initial_state"] = rng.standard_normal((Bt, H, K, V)) if draw(fixed_or(initial_state)) else None
    args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T) if chunk_size is None else chunk_size))
    return args


@st.composite
def rational_wkv7_inputs(
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
    """RWKV-7 on rationals, for the exact claim: r, k, v, a, b and the initial state hold small
    signed integers (as float64) to be divided by ``denominator`` (1, 3 or 7); the decays'
    numerators 0..den over ``decay_denominator`` 2, 3 or 5."""
    Bt, T, H, K, V = (draw(fixed_or(s)) for s in (batch, seq_len, heads, key_dim, value_dim))
    rng = draw(generators())

    def integers(*shape):
        return rng.integers(-3, 4, shape).astype(np.float64)

    decay_den = draw(st.sampled_from([2, 3, 5]))
    args = {"r": integers(Bt, T, H, K), "k": integers(Bt, T, H, K), "v": integers(Bt, T, H, V),
            "a": integers(Bt, T, H, K), "b": integers(Bt, T, H, K),
            "decay_numerator": rng.integers(0, decay_den + 1, (Bt, T, H, K)).astype(np.float64),
            "decay_denominator": decay_den, "denominator": draw(st.sampled_from([1, 3, 7]))}
    args["initial_state"] = integers(Bt, H, K, V) if draw(fixed_or(initial_state)) else None
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args
