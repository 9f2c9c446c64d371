"""Strategies for sparse attention arguments (reference.sparse).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``: "masked"
(q, k, v and a token mask (T, T)) or "block_sparse" (q, k, v, a block size that need not divide
T, a block mask and a token mask); the masks come from ``pattern``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import STYLES, blocks, fixed_or, generators, head_dims, lengths, sized, tiers, values
from seqcheck.reference.sparse import bigbird_block_mask, block_mask_of, longformer_mask

FORMS = ("masked", "block_sparse")
PATTERNS = ("random", "bigbird", "longformer", "causal")


@st.composite
def sparse_inputs(
    draw,
    *,
    form="block_sparse",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(12),
    k_len=None,
    kv_heads=st.integers(1, 2),
    group=st.integers(1, 2),
    head_dim=head_dims(4),
    pattern=st.sampled_from(PATTERNS),
    block_size=None,
    empty_rows=st.booleans(),
    return_lse=st.booleans(),
    scale=st.one_of(st.none(), st.floats(0.05, 2.0)),
    style=st.sampled_from(STYLES),
):
    """Keyword arguments of a sparse attention form: q (B, Tq, H, D), k, v (B, Tk, Hkv, D) of ``style``.

    Options:
        size: size tier of T and D: "small", "default" or "large".
        batch: batch size B.
        seq_len: queries Tq.
        k_len: keys Tk (None: half the time Tq, else 1..2 Tq; BigBird and Longformer, square
            patterns, always take Tk = Tq).
        kv_heads: key/value heads Hkv.
        group: query heads per kv head (H = Hkv * group: GQA; 1 is multi-head attention).
        head_dim: head dimension D (= Dv).
        pattern: "random" (each token pair visible with a drawn density, the block mask the
            tiles holding any, then a drawn share of tiles dropped), "bigbird" (BigBird ITC's
            block mask over ceil(T / b) blocks: global, window, 0..2 random blocks per row),
            "longformer" (a window of 0..3 per side and 0..2 global tokens) or "causal"
            (bottom-right aligned: query i sees keys j <= i + Tk - Tq).
        block_size: the tile size b (None: 1..max(Tq, Tk) + 1, so T is often not a multiple of it).
        empty_rows: zero some query rows of the token mask (their output is 0, lse -inf).
        return_lse: also return lse.
        scale: the softmax scale (None: 1 / sqrt(D)).
        style: the value style of q, k, v (properties.arrays.STYLES).
    """
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    tier = draw(tiers(size))
    B, T, D = draw(sized(batch, tier)), draw(sized(seq_len, tier)), draw(sized(head_dim, tier))
    Hkv = draw(fixed_or(kv_heads))
    H = Hkv * draw(fixed_or(group))
    which = draw(fixed_or(pattern))
    if which in ("bigbird", "longformer"):
        Tk = T
    elif k_len is None:
        Tk = T if draw(st.booleans()) else draw(st.integers(1, 2 * T))
    else:
        Tk = draw(fixed_or(k_len))
    rng = draw(generators())
    kind = draw(fixed_or(style))
    q, k, v = values(rng, kind, (B, T, H, D)), values(rng, kind, (B, Tk, Hkv, D)), values(rng, kind, (B, Tk, Hkv, D))
    b = draw(fixed_or(blocks(max(T, Tk)) if block_size is None else block_size))
    nq, nk = -(-T // b), -(-Tk // b)
    token = np.ones((T, Tk), dtype=bool)
    block = np.ones((nq, nk), dtype=bool)
    if which == "random":
        token = rng.random((T, Tk)) < draw(st.sampled_from([0.2, 0.5, 0.9]))
        block = block_mask_of(token, b) & (rng.random((nq, nk)) < draw(st.sampled_from([0.7, 1.0])))
    elif which == "bigbird":
        block = bigbird_block_mask(nq, random_blocks=draw(st.integers(0, 2)), seed=draw(st.integers(0, 2**16)))
    elif which == "longformer":
        tokens = sorted(set(draw(st.lists(st.integers(0, T - 1), max_size=2)))) if T else []
        token = longformer_mask(T, window=draw(st.integers(0, 3)), global_tokens=np.asarray(tokens, dtype=np.int64))
        block = block_mask_of(token, b)
    else:
        token = np.tri(T, Tk, Tk - T, dtype=bool)
        block = block_mask_of(token, b)
    if draw(fixed_or(empty_rows)) and T:
        token = token & (rng.random((T, 1)) > 0.3)
    args = {"q": q, "k": k, "v": v, "scale": draw(fixed_or(scale)), "return_lse": draw(fixed_or(return_lse))}
    if form == "masked":
        expanded = np.repeat(np.repeat(block, b, axis=0), b, axis=1)[:T, :Tk]
        return {**args, "mask": token & expanded}
    return {**args, "block_mask": block, "block_size": b, "token_mask": token}
