"""Strategies for the Jamba stack's arguments (reference.hybrid).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"parallel" (x and params; with ``padded``, a left-padded batch and its ``valid`` mask),
"recurrent", "prefill_decode" (adds ``prefill``), "layer" and "layer_prefill_decode" (one
layer's input h, the layer's index, and ``prefill``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import STYLES, Sized, fixed_or, sized, tiers, values, generators
from seqcheck.reference.hybrid import JambaConfig, jamba_params

FORMS = ("parallel", "recurrent", "prefill_decode", "layer", "layer_prefill_decode")

LENGTHS = Sized(range(1, 10), (31, 32, 33, 64), "1..9 (large: 31, 32, 33, 64)")


@st.composite
def configs(draw, *, dim=st.sampled_from([4, 8]), layers=st.integers(1, 8), experts=st.integers(1, 4),
            d_conv=st.integers(1, 4)):
    """A small ``JambaConfig``: any attention schedule (period 1..8, Jamba's 8 and 4 among them)
    and expert schedule (period 1..3), GQA or MHA, top-k <= E."""
    L = draw(fixed_or(layers))
    attention_period, expert_period = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    kv_heads = draw(st.integers(1, 2))
    E = draw(fixed_or(experts))
    return JambaConfig(dim=draw(fixed_or(dim)), layers=L, attention_period=attention_period,
                       attention_offset=draw(st.integers(0, attention_period - 1)), expert_period=expert_period,
                       expert_offset=draw(st.integers(0, expert_period - 1)), heads=kv_heads * draw(st.integers(1, 2)),
                       kv_heads=kv_heads, head_dim=draw(st.integers(1, 4)), experts=E, top_k=draw(st.integers(1, E)),
                       hidden=draw(st.integers(1, 8)), expand=draw(st.integers(1, 2)), d_state=draw(st.integers(1, 4)),
                       d_conv=draw(fixed_or(d_conv)))


@st.composite
def jamba_inputs(
    draw,
    *,
    form="parallel",
    size="default",
    batch=st.integers(1, 2),
    seq_len=LENGTHS,
    config=None,
    style=st.sampled_from(STYLES),
    padded=False,
    prefill=None,
    layer=None,
):
    """Keyword arguments of a Jamba form: x (B, T, D) (h for one layer) of ``style`` and
    params = ``jamba_params(config, seed)`` with a drawn seed.

    Options:
        size: size tier of T: "small", "default" or "large".
        batch: batch size B.
        seq_len: tokens T.
        config: a ``JambaConfig`` or a strategy of them (None: ``configs()`` with one or two
            layers for the whole stack, where its running error bound stays below about 1e-7,
            up to eight for one layer's forms).
        style: the value style of x (properties.arrays.STYLES).
        padded: (parallel) a left-padded batch: each row's first 0..T tokens padding, holding
            values 100 times larger (the mask must hide them), and ``valid``. The outputs at
            padded positions are unspecified (0 here, uniform attention in HF's): compare the
            valid positions only, as the claim hybrid.jamba.left_padding does.
        prefill: tokens of the parallel prefill before decoding (None: 0..T).
        layer: the layer of the layer forms (None: any).
    """
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    tier = draw(tiers(size))
    B, T = draw(sized(batch, tier)), draw(sized(seq_len, tier))
    layers = st.integers(1, 8) if form.startswith("layer") else st.integers(1, 2)
    c = draw(configs(layers=layers) if config is None else fixed_or(config))
    params = jamba_params(c, draw(st.integers(0, 2**16)))
    rng = draw(generators())
    x = values(rng, draw(fixed_or(style)), (B, T, c.dim))
    args = {"h" if form.startswith("layer") else "x": x, "params": params}
    if form.startswith("layer"):
        args["layer"] = draw(fixed_or(st.integers(0, c.layers - 1) if layer is None else layer))
    if form.endswith("prefill_decode"):
        args["prefill"] = draw(fixed_or(st.integers(0, T) if prefill is None else prefill))
    if form == "parallel" and draw(fixed_or(padded)):
        pads = np.asarray([draw(st.integers(0, T)) for _ in range(B)], dtype=np.int64)
        valid = np.arange(T)[None, :] >= pads[:, None]
        args["x"] = np.where(valid[..., None], x, 100 * rng.standard_normal(x.shape))
        args["valid"] = valid
    return args
