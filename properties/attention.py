"""Strategies for softmax attention and FlashAttention arguments.

Every keyword of :func:`attention_inputs` takes a strategy or a fixed value, so a kernel that
supports less can narrow the inputs: ``attention_inputs(softcap=None, alibi_slopes=None, head_dim=64)``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from seqcheck.properties.arrays import fixed_or, generators, random_arrays
from seqcheck.reference.positional import alibi_slopes as standard_slopes


def windows(max_side: int = 6):
    """None, or a sliding window ``(left, right)`` whose sides are ints >= 0 or None (unbounded)."""
    side = st.none() | st.integers(0, max_side)
    return st.none() | st.tuples(side, side)


@st.composite
def attention_inputs(
    draw,
    *,
    batch=st.integers(1, 2),
    q_len=st.integers(1, 9),
    k_len=st.integers(1, 11),
    kv_heads=st.integers(1, 2),
    group=st.integers(1, 3),
    head_dim=st.integers(1, 8),
    causal=st.booleans(),
    window=windows(),
    key_padding_mask=st.booleans(),
    alibi_slopes=st.sampled_from([None, "standard", "random"]),
    softcap=st.none() | st.floats(0.5, 30.0),
    scale=st.none() | st.floats(0.1, 2.0),
    sharpness=st.sampled_from([1.0, 0.01, 8.0]),
    return_lse=st.booleans(),
):
    """Keyword arguments of ``softmax_attention``: q (B,Tq,H,D), k/v (B,Tk,Hkv,D), H = Hkv*group.

    ``key_padding_mask``: whether to draw a padding mask (True = valid key; some rows end fully
    masked); None or False means none. ``alibi_slopes``: None, "standard" (the slopes for H
    heads) or "random" (positive (B,H) slopes);
    ``sharpness`` multiplies q, from nearly uniform rows (0.01) to nearly one-hot rows (8).
    """
    B, Tq, Tk = draw(fixed_or(batch)), draw(fixed_or(q_len)), draw(fixed_or(k_len))
    Hkv = draw(fixed_or(kv_heads))
    H, D = Hkv * draw(fixed_or(group)), draw(fixed_or(head_dim))
    arrays = draw(random_arrays({"q": (B, Tq, H, D), "k": (B, Tk, Hkv, D), "v": (B, Tk, Hkv, D)}))
    args = {
        "q": arrays["q"] * draw(fixed_or(sharpness)),
        "k": arrays["k"],
        "v": arrays["v"],
        "scale": draw(fixed_or(scale)),
        "causal": draw(fixed_or(causal)),
        "window": draw(fixed_or(window)),
        "key_padding_mask": None,
        "alibi_slopes": None,
        "softcap": draw(fixed_or(softcap)),
        "return_lse": draw(fixed_or(return_lse)),
    }
    rng = draw(generators())
    if draw(fixed_or(key_padding_mask)):
        args["key_padding_mask"] = rng.random((B, Tk)) < 0.75
    kind = draw(fixed_or(alibi_slopes))
    if kind == "standard":
        args["alibi_slopes"] = standard_slopes(H)
    elif kind == "random":
        args["alibi_slopes"] = rng.uniform(0.0, 1.0, (B, H))
    return args


@st.composite
def flash_inputs(draw, *, block_q=None, block_k=None, **options):
    """``attention_inputs`` plus query/key block sizes from 1 to one past the lengths."""
    args = draw(attention_inputs(**options))
    Tq, Tk = args["q"].shape[1], args["k"].shape[1]
    args["block_q"] = draw(fixed_or(st.integers(1, Tq + 1) if block_q is None else block_q))
    args["block_k"] = draw(fixed_or(st.integers(1, Tk + 1) if block_k is None else block_k))
    return args


@st.composite
def split_kv_inputs(draw, *, num_splits=None, **options):
    """``attention_inputs`` plus a number of key splits from 1 to two past the key length."""
    args = draw(attention_inputs(**options))
    args["num_splits"] = draw(fixed_or(st.integers(1, args["k"].shape[1] + 2) if num_splits is None else num_splits))
    return args



STRATEGIES = {
    "attention.softmax.parallel": attention_inputs,
    "attention.flash.tiled": flash_inputs,
    "attention.flash.split_kv": split_kv_inputs,
}
