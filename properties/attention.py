"""Strategies for softmax attention and FlashAttention arguments.

Every keyword of :func:`attention_inputs` takes a strategy or a fixed value, so a kernel that
supports less can narrow the inputs: ``attention_inputs(softcap=None, alibi_slopes=None, head_dim=64)``.
``size`` picks the tier of the lengths, head dim, window and blocks (``arrays.SIZES``): "small"
(Tq <= 9, Tk <= 11, D <= 8), "large" (lengths 15..257 around multiples of 16, D 32..128, blocks
of 16/32/64/128 and neighbours) or "default" (each axis large in about 30 draws of 100); an
axis given explicitly ignores the tier.
"""

from __future__ import annotations

from hypothesis import strategies as st

from seqcheck.properties.arrays import (Sized, TILE_BLOCKS, blocks, fixed_or, generators, head_dims, lengths,
                                        random_arrays, sized, tiers)
from seqcheck.reference.positional import alibi_slopes as standard_slopes


def windows(max_side: int = 6, *, sides=None):
    """None, or a sliding window ``(left, right)`` whose sides are ints >= 0 or None (unbounded):
    0..``max_side``, or one of ``sides`` when given."""
    side = st.none() | (st.integers(0, max_side) if sides is None else st.sampled_from(sides))
    return st.none() | st.tuples(side, side)


WINDOWS = Sized(range(0, 7), (0, 1) + TILE_BLOCKS,
                "None or (left, right) with sides None or 0..6 (large: sides None, 0, 1 or 15..129 near tiles)",
                build=lambda side: st.none() | st.tuples(st.none() | side, st.none() | side))


@st.composite
def attention_inputs(
    draw,
    *,
    size="default",
    batch=st.integers(1, 2),
    q_len=lengths(9),
    k_len=lengths(11),
    kv_heads=st.integers(1, 2),
    group=st.integers(1, 3),
    head_dim=head_dims(8),
    causal=st.booleans(),
    window=WINDOWS,
    key_padding_mask=st.booleans(),
    alibi_slopes=st.sampled_from([None, "standard", "random"]),
    softcap=st.none() | st.floats(0.5, 30.0),
    scale=st.none() | st.floats(0.1, 2.0),
    sharpness=st.sampled_from([1.0, 0.01, 8.0]),
    return_lse=st.booleans(),
):
    """Keyword arguments of ``softmax_attention``: q (B,Tq,H,D), k/v (B,Tk,Hkv,D), H = Hkv*group.

    Options:
        size: size tier of the lengths, head dim and window: "small", "default" or "large".
        batch: batch size B.
        q_len: query length Tq.
        k_len: key length Tk.
        kv_heads: key/value heads Hkv.
        group: query heads per kv head (H = Hkv * group; 1 is MHA, Hkv = 1 MQA).
        head_dim: head dimension D of q, k and v.
        causal: causal masking, aligned bottom-right (query i sees keys j <= i + Tk - Tq).
        window: sliding window (left, right), a side None meaning unbounded; None for none.
        key_padding_mask: whether to draw a (B, Tk) padding mask, True = valid key (some rows
            end fully masked); None or False for none.
        alibi_slopes: None, "standard" (the slopes for H heads) or "random" (positive (B, H)).
        softcap: score soft-capping value (None or 0: off).
        scale: score scale (None: 1/sqrt(D)).
        sharpness: factor on q, from nearly uniform rows (0.01) to nearly one-hot rows (8).
        return_lse: whether to return the log-sum-exp as well.
    """
    tier = draw(tiers(size))
    B, Tq, Tk = draw(fixed_or(batch)), draw(sized(q_len, tier)), draw(sized(k_len, tier))
    Hkv = draw(fixed_or(kv_heads))
    H, D = Hkv * draw(fixed_or(group)), draw(sized(head_dim, tier))
    arrays = draw(random_arrays({"q": (B, Tq, H, D), "k": (B, Tk, Hkv, D), "v": (B, Tk, Hkv, D)}))
    args = {
        "q": arrays["q"] * draw(fixed_or(sharpness)),
        "k": arrays["k"],
        "v": arrays["v"],
        "scale": draw(fixed_or(scale)),
        "causal": draw(fixed_or(causal)),
        "window": draw(sized(window, tier)),
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
    """``attention_inputs`` plus query/key block sizes.

    Options:
        block_q: query block size (None: 1..Tq+1 up to 32 queries; beyond, 15..129 near tiles or Tq+1).
        block_k: key block size (None: 1..Tk+1 up to 32 keys; beyond, 15..129 near tiles or Tk+1).
    """
    args = draw(attention_inputs(**options))
    Tq, Tk = args["q"].shape[1], args["k"].shape[1]
    args["block_q"] = draw(fixed_or(blocks(Tq) if block_q is None else block_q))
    args["block_k"] = draw(fixed_or(blocks(Tk) if block_k is None else block_k))
    return args


@st.composite
def flash_backward_inputs(draw, **options):
    """``flash_inputs`` (lse always computed, so no ``return_lse``) plus the cotangents of the
    outputs: ``cotangent`` dO (B, Tq, H, Dv) and ``lse_cotangent`` dL (B, Tq, H), N(0, 1), dL
    zero in about half the draws (out the only output)."""
    args = draw(flash_inputs(**options))
    args.pop("return_lse", None)
    rng = draw(generators())
    B, Tq, H, _ = args["q"].shape
    args["cotangent"] = rng.standard_normal((B, Tq, H, args["v"].shape[3]))
    args["lse_cotangent"] = rng.standard_normal((B, Tq, H)) if draw(st.booleans()) else None
    return args


@st.composite
def split_kv_inputs(draw, *, num_splits=None, **options):
    """``attention_inputs`` plus a number of key splits.

    Options:
        num_splits: number of key splits (None: 1..Tk+2 up to 32 keys, empty splits included;
            beyond, 1, 2, 3, 4 or 7).
    """
    args = draw(attention_inputs(**options))
    Tk = args["k"].shape[1]
    args["num_splits"] = draw(fixed_or(blocks(Tk, extra=2, choices=(1, 2, 3, 4, 7), whole=False) if num_splits is None
                                       else num_splits))
    return args
