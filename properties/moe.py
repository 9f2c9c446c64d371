"""Strategies for Mixture-of-Experts arguments (reference.moe).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"layer" (x, a routing drawn from a router, SwiGLU expert weights, a capacity), "topk", "noisy",
"switch" and "expert_choice" (a router's logits and options), "balance" (logits and a top-k
routing of them, for the load-balancing loss), "z" (logits), "importance" (a routing and the
expert count), "load" (noisy top-k's three inputs), "colt5_ffn" or "colt5_attention" (x, router
scores, the light and heavy branches' weights, the routed counts).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import Sized, fixed_or, generators, head_dims, lengths, sized, tiers, values, STYLES
from seqcheck.reference.moe import expert_choice_routing, switch_routing, topk_routing
from seqcheck.reference.moe.losses import VARIANTS

FORMS = ("layer", "topk", "noisy", "switch", "expert_choice", "balance", "z", "importance", "load", "colt5_ffn",
         "colt5_attention")
ROUTERS = ("topk", "switch", "expert_choice")

EXPERTS = Sized(range(1, 7), (8, 16, 64), "1..6 (large: 8, 16, 64)")
HIDDEN = Sized(range(1, 7), (64, 128, 256), "1..6 (large: 64, 128, 256)")


def _routing(router, logits, k, normalize, capacity):
    """(expert_index, gate) of ``router`` on ``logits``; the capacity is the layer's for top-k."""
    if router == "switch":
        return switch_routing(logits, capacity=capacity)
    if router == "expert_choice":
        return expert_choice_routing(logits, capacity=min(capacity, logits.shape[1]))
    return topk_routing(logits, top_k=k, normalize=normalize)


@st.composite
def moe_inputs(
    draw,
    *,
    form="layer",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(8),
    model_dim=head_dims(4),
    hidden=HIDDEN,
    experts=EXPERTS,
    top_k=None,
    normalize=st.booleans(),
    router=st.sampled_from(ROUTERS),
    capacity=None,
    logit_scale=st.sampled_from([1.0, 10.0]),
    style=st.sampled_from(STYLES),
    variant=st.sampled_from(VARIANTS),
    routed=None,
    heads=st.integers(1, 3),
    window=None,
):
    """Keyword arguments of an MoE form: logits (B, T, E) = ``logit_scale`` times values of
    ``style`` ("integers": exact ties, which the tie rule orders), and for the layer x (B, T, D),
    expert weights w_gate, w_up (E, D, F) and w_down (E, F, D) N(0, 1) / sqrt(fan-in), and a
    routing drawn from ``router`` on the logits.

    Options:
        size: size tier of T, D, F and E: "small", "default" or "large".
        batch: batch size B.
        seq_len: tokens per batch row T.
        model_dim: model dimension D.
        hidden: each expert's hidden size F.
        experts: number of experts E.
        top_k: experts per token k (None: 1..min(E, 4)).
        normalize: top-k gates renormalised over the chosen experts.
        router: the layer's routing: "topk", "switch" (top-1 with capacity, dropped tokens) or
            "expert_choice".
        capacity: expert capacity per batch row (None: no limit or 0..ceil(k T / E) + 1, so tokens drop;
            switch and expert choice: 0..T).
        logit_scale: the logits' scale (10: near one-hot routing).
        style: the value style of logits and x (properties.arrays.STYLES).
        variant: the load-balancing loss's published variant ("switch", "hf_switch", "mixtral").
        routed: CoLT5's routed tokens per row k (attention: k_q and k_kv; None: 0..T).
        heads: CoLT5 attention's heads per branch.
        window: CoLT5's light attention window per side (None: 1..T).
    """
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    tier = draw(tiers(size))
    B, T, E = draw(sized(batch, tier)), draw(sized(seq_len, tier)), draw(sized(experts, tier))
    k = draw(fixed_or(st.integers(1, min(E, 4)) if top_k is None else top_k))
    rng = draw(generators())
    kind = draw(fixed_or(style))
    logits = draw(fixed_or(logit_scale)) * values(rng, kind, (B, T, E))
    limit = st.integers(0, -(-k * T // max(E, 1)) + 1)
    if form in ("z",):
        return {"logits": logits}
    if form == "topk":
        return {"logits": logits, "top_k": k, "normalize": draw(fixed_or(normalize))}
    if form in ("noisy", "load"):
        return {"clean_logits": logits, "noise_logits": rng.standard_normal((B, T, E)),
                "noise": rng.standard_normal((B, T, E)), "top_k": k}
    if form == "switch":
        return {"logits": logits, "capacity": draw(fixed_or(st.integers(0, T) if capacity is None else capacity))}
    if form == "expert_choice":
        return {"logits": logits, "capacity": draw(fixed_or(st.integers(0, T) if capacity is None else capacity))}
    if form == "balance":
        return {"logits": logits, "expert_index": topk_routing(logits, top_k=k)[0], "variant": draw(fixed_or(variant))}
    if form.startswith("colt5"):
        return _colt5(draw, form, rng, kind, B, T, draw(sized(model_dim, tier)), draw(sized(hidden, tier)),
                      routed, heads, window)
    which = draw(fixed_or(router))
    if form == "importance":
        index, gate = _routing(which, logits, k, True, T)
        return {"expert_index": index, "gate": gate, "experts": E}
    D, F = draw(sized(model_dim, tier)), draw(sized(hidden, tier))
    cap = draw(fixed_or(st.one_of(st.none(), limit) if capacity is None else capacity))
    index, gate = _routing(which, logits, k, draw(fixed_or(normalize)), T if cap is None else cap)
    return {"x": values(rng, kind, (B, T, D)), "expert_index": index, "gate": gate,
            "w_gate": rng.standard_normal((E, D, F)) / np.sqrt(D), "w_up": rng.standard_normal((E, D, F)) / np.sqrt(D),
            "w_down": rng.standard_normal((E, F, D)) / np.sqrt(F),
            "capacity": None if which != "topk" else cap}


def _colt5(draw, form, rng, kind, B, T, D, F, routed, heads, window):
    """CoLT5's arguments: scores U(0, 1) (a soft top-k's range), weights N(0, 1) / sqrt(fan-in)."""
    count = st.integers(0, T) if routed is None else routed
    x = values(rng, kind, (B, T, D))
    if form == "colt5_ffn":
        F_heavy = draw(st.integers(1, 2 * F))
        weights = {f"{branch}_{part}": rng.standard_normal(shape) / np.sqrt(shape[0])
                   for branch, hidden in (("light", F), ("heavy", F_heavy))
                   for part, shape in (("gate", (D, hidden)), ("up", (D, hidden)), ("down", (hidden, D)))}
        return {"x": x, "scores": rng.random((B, T)), **weights, "k": draw(fixed_or(count))}
    branches = {}
    for branch in ("light", "heavy"):
        H, d = draw(fixed_or(heads)), draw(st.integers(1, 4))
        branches[f"{branch}_qkv"] = rng.standard_normal((3, D, H, d)) / np.sqrt(D)
        branches[f"{branch}_out"] = rng.standard_normal((H, d, D)) / np.sqrt(H * d)
    return {"x": x, "q_scores": rng.random((B, T)), "kv_scores": rng.random((B, T)), **branches,
            "window": draw(fixed_or(st.integers(1, max(T, 1)) if window is None else window)),
            "k_q": draw(fixed_or(count)), "k_kv": draw(fixed_or(count))}
