"""Mixture of Experts: routers, their losses and the MoE layer's two forms, derived float64
bounds, claims, the layer's gradient, and the CuPy dispatch form.

The float64 bound of the layer (u = 2**-53). Per kept slot (token x, expert e, gate g) a form
computes h = x W_gate and u = x W_up (D-term dot products), s = silu(h) (within 4u |s| + 1.1 |dh|:
|silu'| <= 1.1), a = s u, o = a W_down (F terms), and y sums the k slots' g o. To first order each
computed value errs by at most n u times its magnitude M, built alongside with absolute values:
M_h = |x||W_gate|, M_u = |x||W_up|, M_s = |s| + 1.1 M_h, M_a = 2 M_s M_u, M_o = (|a| + M_a)|W_down|,
M_y = sum_j |g_j| (M_o + |o|), n = D + F + k + 8 (the longest chain of rounded operations). Two
correct forms are within twice that, per position:

    2 (D + F + k + 8) u M_y

whatever order their products and sums take (the per-token loop, a grouped matmul, a scatter).
The gradient's bound (``layer_grad_bound``) is the backward's magnitudes built the same way (the
cotangent's path through W_down, the two halves of the SwiGLU and silu', |silu''| <= 0.5), with
n = D + F + B T k + 16: a weight's gradient sums every row routed to its expert.

Routers' indices are integers and must agree exactly; gates within 2 (E + 8) u of their value
(a softmax over E terms, its renormalisation over k). The losses sum positive terms (the
load-balancing loss, the z-loss's logsumexp) or are CV^2 = var / mean^2 of positive sums, each
within the number of its operations times u relatively (``loss_bound``).
"""

from __future__ import annotations

import inspect

import numpy as np
from hypothesis import strategies as st
from scipy.special import expit, logsumexp, softmax

from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.registry import (Claim, Form, Gradient, Implementation, register_claim, register_form,
                                     register_gradient, register_implementation, without)
from seqcheck.gpu.backend import where
from seqcheck.properties.arrays import for_form, generators
from seqcheck.properties.moe import moe_inputs
from seqcheck.reference import moe as ref
from seqcheck.reference.arith import U64
from seqcheck.reference.eviction import topk_lowest_index

LAYER_DATA = ("x", "gate", "w_gate", "w_up", "w_down")

COMMON = ("size", "batch", "seq_len", "style")
USED = {
    "layer": COMMON + ("model_dim", "hidden", "experts", "top_k", "normalize", "router", "capacity", "logit_scale"),
    "topk": COMMON + ("experts", "top_k", "normalize", "logit_scale"),
    "noisy": COMMON + ("experts", "top_k", "logit_scale"),
    "load": COMMON + ("experts", "top_k", "logit_scale"),
    "switch": COMMON + ("experts", "capacity", "logit_scale"),
    "expert_choice": COMMON + ("experts", "capacity", "logit_scale"),
    "balance": COMMON + ("experts", "top_k", "logit_scale", "variant"),
    "z": COMMON + ("experts", "logit_scale"),
    "importance": COMMON + ("experts", "top_k", "router", "logit_scale"),
    "colt5_ffn": COMMON + ("model_dim", "hidden", "routed"),
    "colt5_attention": COMMON + ("model_dim", "routed", "heads", "window"),
}


def inputs_of(form: str):
    """``moe_inputs`` for one form, listing only the options it uses."""
    options = [name for name in inspect.signature(moe_inputs).parameters if name not in ("draw", "form")]
    return for_form(moe_inputs, form, unused=tuple(name for name in options if name not in USED[form]))
LAYER_AXES = (("batch", "token", "channel"),)


# ----------------------------------------------------------------------------- the layer's magnitudes


def _slots(args: dict):
    """The kept slots after capacity: (b, t, j, e) arrays, and the capped routing."""
    index, gate = ref.apply_capacity(args["expert_index"], args["gate"], args.get("capacity"))
    b, t, j = np.nonzero(index >= 0)
    return (b, t, j, index[b, t, j]), gate


def _forward_terms(args: dict):
    """Per kept slot: the rows x, the gates g, and h, u, s, a, o with their magnitudes."""
    (b, t, j, e), gate = _slots(args)
    x = np.asarray(args["x"], dtype=np.float64)[b, t]
    wg, wu, wd = (np.asarray(args[n], dtype=np.float64)[e] for n in ("w_gate", "w_up", "w_down"))
    h, u = np.einsum("nd,ndf->nf", x, wg), np.einsum("nd,ndf->nf", x, wu)
    s = h * expit(h)
    a = s * u
    o = np.einsum("nf,nfd->nd", a, wd)
    M_h, M_u = np.einsum("nd,ndf->nf", np.abs(x), np.abs(wg)), np.einsum("nd,ndf->nf", np.abs(x), np.abs(wu))
    M_s = np.abs(s) + 1.1 * M_h
    M_a = 2 * M_s * M_u
    M_o = np.einsum("nf,nfd->nd", np.abs(a) + M_a, np.abs(wd))
    return dict(b=b, t=t, j=j, e=e, x=x, g=gate[b, t, j], wg=wg, wu=wu, wd=wd, h=h, u=u, s=s, a=a, o=o,
                M_h=M_h, M_u=M_u, M_s=M_s, M_a=M_a, M_o=M_o)


def layer_magnitude(args: dict, expected: tuple = ()) -> tuple:
    """M_y per position (module docstring): sum over a token's kept slots of |g| (M_o + |o|)."""
    f = _forward_terms(args)
    M_y = np.zeros(np.shape(args["x"]))
    np.add.at(M_y, (f["b"], f["t"]), np.abs(f["g"])[:, None] * (f["M_o"] + np.abs(f["o"])))
    return (per_position(M_y),)


def layer_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 (D + F + k + 8) u M_y per position (module docstring)."""
    D, F = np.shape(args["w_gate"])[1:]
    k = np.shape(args["expert_index"])[2]
    return (2 * (D + F + k + 8) * U64 * layer_magnitude(args)[0],)


LAYER_RULE = "derived float64 bound: 2 (D + F + k + 8) u M_y, M_y the slots' |g| (M_o + |o|) through the SwiGLU's magnitudes"
LAYER_MAGNITUDE_RULE = "M_y: the kept slots' |g| (M_o + |o|), the SwiGLU's terms with silu's condition (1.1 |x||W_gate|)"


def _plain(args: dict, dtype) -> tuple:
    return (ref.moe_in_dtype(**args, dtype=dtype),)


register_form(Form(
    key="moe.layer.per_token",
    fn=ref.moe_per_token,
    inputs=inputs_of("layer"),
    bound=layer_bound,
    rule=LAYER_RULE,
    statement="the MoE layer's definition: every kept slot's SwiGLU expert on its token alone, scaled by its gate",
    plain=_plain,
    magnitude=layer_magnitude,
    magnitude_rule=LAYER_MAGNITUDE_RULE,
    data_args=LAYER_DATA,
    axes=LAYER_AXES,
))

register_form(Form(
    key="moe.layer.dispatch",
    fn=ref.moe_dispatch,
    inputs=inputs_of("layer"),
    bound=layer_bound,
    rule=LAYER_RULE,
    statement="the dispatch form (queue positions by a cumulative count, slots sorted by expert, one product per "
              "expert, scattered back with the gates) equals the per-token definition for every capacity, dropped "
              "tokens included",
    oracle="moe.layer.per_token",
    data_args=LAYER_DATA,
    axes=LAYER_AXES,
))


# ----------------------------------------------------------------------------- the layer's identities


def _identical_experts(impl, args: dict) -> tuple:
    """Every expert given expert 0's weights: y = (sum of the kept gates) * FFN_0(x)."""
    E = np.shape(args["w_gate"])[0]
    same = {n: np.repeat(np.asarray(args[n])[:1], E, axis=0) for n in ("w_gate", "w_up", "w_down")}
    index, gate = ref.apply_capacity(args["expert_index"], args["gate"], args.get("capacity"))
    kept = np.where(index >= 0, gate, 0.0).sum(axis=-1, keepdims=True)
    x = np.asarray(args["x"], dtype=np.float64)
    dense = ref.expert_ffn(x.reshape(-1, x.shape[-1]), *(same[n][0] for n in ("w_gate", "w_up", "w_down")))
    return (np.asarray(impl(**{**args, **same})),), (kept * dense.reshape(x.shape),)


register_claim(Claim(
    key="moe.layer.identical_experts",
    statement="with every expert the same feed-forward the layer is that feed-forward scaled by the token's kept "
              "gates (1 for renormalised top-k without drops: one dense FFN)",
    subject="moe.layer.dispatch",
    default_impl=ref.moe_dispatch,
    relation=_identical_experts,
    inputs=lambda: moe_inputs(form="layer"),
    bound=lambda args, expected: layer_bound({**args, **{n: np.repeat(np.asarray(args[n])[:1], len(args[n]), axis=0)
                                                         for n in ("w_gate", "w_up", "w_down")}}),
    rule=LAYER_RULE + " (the experts made identical)",
))


@st.composite
def _dense_inputs(draw):
    """The layer's arguments without capacity, routed top-k with k = E (normalised: the softmax)."""
    args = draw(moe_inputs(form="layer", router="topk", capacity=None, normalize=True, top_k=1))
    rng = draw(generators())
    E = args["w_gate"].shape[0]
    logits = rng.standard_normal(args["x"].shape[:2] + (E,)) * draw(st.sampled_from([1.0, 10.0]))
    index, gate = ref.topk_routing(logits, top_k=E)
    return {**args, "expert_index": index, "gate": gate, "capacity": None, "logits": logits}


def _dense_mixture(impl, args: dict) -> tuple:
    """Top-k with k = E and no capacity: y = sum_e softmax(logits)_e FFN_e(x)."""
    x = np.asarray(args["x"], dtype=np.float64)
    probs = softmax(args["logits"], axis=-1)
    experts = [ref.expert_ffn(x.reshape(-1, x.shape[-1]), args["w_gate"][e], args["w_up"][e], args["w_down"][e])
               for e in range(args["w_gate"].shape[0])]
    dense = sum(probs[..., e, None] * out.reshape(x.shape) for e, out in enumerate(experts))
    return (np.asarray(impl(**without(args, ("logits",)))),), (dense,)


register_claim(Claim(
    key="moe.layer.dense_mixture",
    statement="top-k routing with k = E and no capacity limit is the dense mixture sum_e softmax(logits)_e FFN_e(x)",
    subject="moe.layer.dispatch",
    default_impl=ref.moe_dispatch,
    relation=_dense_mixture,
    inputs=_dense_inputs,
    bound=lambda args, expected: tuple(2 * b for b in layer_bound(without(args, ("logits",)))),
    rule=LAYER_RULE + ", doubled: the dense sum is a third evaluation of the same terms",
))


@st.composite
def _permuted_inputs(draw):
    args = draw(moe_inputs(form="layer"))
    E = args["w_gate"].shape[0]
    return {**args, "permutation": np.asarray(draw(st.permutations(list(range(E)))))}


def _permuted(impl, args: dict) -> tuple:
    """Expert e renamed permutation[e]: weights moved with the routing's indices."""
    perm = args["permutation"]
    inverse = np.argsort(perm)
    base = without(args, ("permutation",))
    index = np.where(base["expert_index"] >= 0, perm[np.maximum(base["expert_index"], 0)], -1)
    moved = {n: np.asarray(base[n])[inverse] for n in ("w_gate", "w_up", "w_down")}
    return (np.asarray(impl(**{**base, **moved, "expert_index": index})),), (ref.moe_per_token(**base),)


register_claim(Claim(
    key="moe.layer.expert_permutation",
    statement="renaming the experts (their weights moved with the routing's indices) changes nothing",
    subject="moe.layer.dispatch",
    default_impl=ref.moe_dispatch,
    relation=_permuted,
    inputs=_permuted_inputs,
    bound=lambda args, expected: layer_bound(without(args, ("permutation",))),
    rule=LAYER_RULE,
))


def _cupy_moe_inputs(simulated: bool):
    """On NumPy the form's sizes; on a GPU also T up to 512 tokens, D and F up to 256, E up to 64."""
    if where("cupy") != "gpu":
        return moe_inputs(form="layer")
    return moe_inputs(form="layer", seq_len=st.integers(1, 512), model_dim=st.sampled_from([16, 64, 128, 256]),
                      hidden=st.sampled_from([32, 128, 256]), experts=st.sampled_from([1, 4, 8, 64]))


register_implementation(Implementation(
    name="cupy.moe_dispatch",
    form="moe.layer.dispatch",
    target="moe_cupy:moe_dispatch",
    runtime="cupy",
    dtypes=("float32", "float16"),
    inputs=_cupy_moe_inputs,
))


# ----------------------------------------------------------------------------- the layer's gradient

GRADIENT_WRT = ("x", "gate", "w_gate", "w_up", "w_down")


def _grad_magnitudes(args: dict) -> dict:
    """The backward's magnitudes (module docstring), per gradient."""
    f = _forward_terms(args)
    c = np.asarray(args["cotangent"], dtype=np.float64)[f["b"], f["t"]]
    M_do = np.abs(f["g"])[:, None] * np.abs(c)
    M_da = np.einsum("nd,nfd->nf", M_do, np.abs(f["wd"]))
    M_du = M_da * (np.abs(f["s"]) + f["M_s"])
    M_dh = M_da * (np.abs(f["u"]) + f["M_u"]) * (2.1 + 0.5 * f["M_h"])
    M_dx_rows = np.einsum("nf,ndf->nd", M_dh, np.abs(f["wg"])) + np.einsum("nf,ndf->nd", M_du, np.abs(f["wu"]))
    out = {name: np.zeros(np.shape(args[name])) for name in GRADIENT_WRT}
    np.add.at(out["x"], (f["b"], f["t"]), M_dx_rows)
    out["gate"][f["b"], f["t"], f["j"]] = (np.abs(c) * (f["M_o"] + np.abs(f["o"]))).sum(axis=-1)
    np.add.at(out["w_gate"], f["e"], np.einsum("nd,nf->ndf", np.abs(f["x"]), M_dh))
    np.add.at(out["w_up"], f["e"], np.einsum("nd,nf->ndf", np.abs(f["x"]), M_du))
    np.add.at(out["w_down"], f["e"], np.einsum("nf,nd->nfd", np.abs(f["a"]) + f["M_a"], M_do))
    return out


def layer_grad_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 (D + F + B T k + 16) u times each gradient's magnitude: per position for x and the gates,
    one value for the weights."""
    B, T, k = np.shape(args["expert_index"])
    D, F = np.shape(args["w_gate"])[1:]
    n = 2 * (D + F + B * T * k + 16) * U64
    M = _grad_magnitudes(args)
    return tuple(n * (per_position(M[name]) if name in ("x", "gate") else M[name].max(initial=0.0))
                 for name in GRADIENT_WRT)


def layer_grad_magnitude(args: dict, expected: tuple = ()) -> tuple:
    M = _grad_magnitudes(args)
    return tuple(per_position(M[name]) if name in ("x", "gate") else M[name].max(initial=0.0) for name in GRADIENT_WRT)


def layer_grad_plain(args: dict, dtype) -> tuple:
    """The per-token backward with every input and cotangent rounded to ``dtype`` and each slot's
    backward evaluated in it (products summed in float32, rounded once)."""
    grads = ref.moe_vjp_in_dtype(**args, dtype=dtype)
    return tuple(grads[name] for name in GRADIENT_WRT)


GRADIENT_RULE = ("derived float64 bound: 2 (D + F + B T k + 16) u times the backward's magnitudes (the cotangent "
                 "through W_down, both SwiGLU halves and silu' with |silu''| <= 0.5), per position for x and the "
                 "gates, one value per weight")

register_gradient(Gradient(
    form="moe.layer.per_token",
    vjp=ref.moe_vjp,
    wrt=GRADIENT_WRT,
    cotangents=("cotangent",),
    bound=layer_grad_bound,
    rule=GRADIENT_RULE,
    axes=(("batch", "token", "channel"), ("batch", "token", "slot"), ("expert", "channel", "hidden"),
          ("expert", "channel", "hidden"), ("expert", "hidden", "channel")),
    plain=layer_grad_plain,
    magnitude=layer_grad_magnitude,
))


@st.composite
def _backward_inputs(draw):
    """The layer's arguments with a cotangent of y."""
    args = draw(moe_inputs(form="layer"))
    return {**args, "cotangent": draw(generators()).standard_normal(args["x"].shape)}


register_claim(Claim(
    key="moe.layer.dispatch_backward",
    statement="the dispatch form's backward (the forward's plan permuting x and the cotangent, one product per "
              "expert for each weight gradient, dx scattered back) equals the per-token backward, dropped tokens "
              "included",
    subject="moe.layer.dispatch_vjp",
    default_impl=ref.moe_dispatch_vjp,
    relation=lambda vjp, args: (tuple(vjp(**args)[n] for n in GRADIENT_WRT),
                                tuple(ref.moe_vjp(**args)[n] for n in GRADIENT_WRT)),
    inputs=_backward_inputs,
    bound=layer_grad_bound,
    rule=GRADIENT_RULE,
    outputs=tuple(f"d{n}" for n in GRADIENT_WRT),
))


# ----------------------------------------------------------------------------- routers

ROUTING_AXES = (("batch", "token", "slot"),) * 2


def _near_ties(keys, values, count, delta, *, exact_ties_ambiguous=False):
    """(B, T) where the top ``count`` of each row of ``keys`` (B, T, n) is not settled by the
    tie rule alone: two neighbours in the ranking whose keys differ (or tie, when
    ``exact_ties_ambiguous``) but whose computed ``values`` are within ``delta`` of each other,
    so an implementation that ranks its own rounded values may order them either way."""
    order = np.argsort(-keys, axis=-1, kind="stable")
    top = min(count + 1, keys.shape[-1])
    ranked_keys = np.take_along_axis(keys, order, axis=-1)[..., :top]
    ranked_values = np.take_along_axis(values, order, axis=-1)[..., :top]
    differ = np.ones(ranked_keys[..., 1:].shape, dtype=bool) if exact_ties_ambiguous else \
        ranked_keys[..., :-1] > ranked_keys[..., 1:]
    return (differ & (np.abs(ranked_values[..., :-1] - ranked_values[..., 1:]) <= delta[..., None])).any(axis=-1)


def _noisy_error(args: dict) -> np.ndarray:
    """(B, T, E) a bound on the rounding of H = clean + noise softplus(noise_logits): 2 u (|clean|
    + 3 |noise| sigma) (softplus within 4u, the product and the sum within u each)."""
    sigma = np.logaddexp(0.0, np.asarray(args["noise_logits"], dtype=np.float64))
    return 2 * U64 * (np.abs(args["clean_logits"]) + 3 * np.abs(args["noise"]) * sigma)


def routing_bound(args: dict, expected: tuple) -> tuple:
    """Indices exact and gates within 2 (E + 8) u of their value (a softmax over E terms, its
    renormalisation), per position; noisy top-k adds 4 max|dH| relatively (H's own rounding moves
    the softmax of the kept H). Where the tie rule does not settle the choice (``_near_ties``:
    experts, or for expert choice tokens, whose keys differ but whose rounded probabilities, or
    noisy logits, lie within their errors) a position is not compared (inf): an implementation
    may choose either, and under a capacity (Switch) every later token of that row with it."""
    if "clean_logits" in args:
        H, dH = ref.noisy_logits(args["clean_logits"], args["noise_logits"], args["noise"]), _noisy_error(args)
        E = H.shape[2]
        gates = (2 * (E + 8) * U64 + 4 * dH.max(axis=-1, keepdims=True, initial=0.0)) * np.abs(expected[1])
        unsettled = _near_ties(H, H, args["top_k"], 2 * dH.max(axis=-1, initial=0.0), exact_ties_ambiguous=True)
        return _unsettled_inf(unsettled, np.zeros(H.shape[1]), per_position(gates))
    logits = np.asarray(args["logits"], dtype=np.float64)
    E = logits.shape[2]
    probs = softmax(logits, axis=-1)
    delta = 2 * (E + 8) * U64 * probs.max(axis=-1, initial=0.0)
    if "top_k" in args:  # top-k
        unsettled = _near_ties(logits, probs, args["top_k"], delta)
    elif np.shape(expected[0])[2] == 1:  # Switch: a flipped choice moves the capacity of later tokens
        unsettled = np.maximum.accumulate(_near_ties(logits, probs, 1, delta), axis=1)
    else:  # expert choice: per expert, the tokens at its capacity's boundary
        columns = np.swapaxes(probs, 1, 2)  # (B, E, T)
        boundary = _near_ties(columns, columns, args["capacity"], 2 * (E + 8) * U64 * columns.max(axis=-1),
                              exact_ties_ambiguous=True)  # (B, E)
        unsettled = (boundary[:, None, :] & (np.abs(probs - _kth(columns, args["capacity"])[:, None, :])
                                             <= 4 * (E + 8) * U64)).any(axis=-1)
    return _unsettled_inf(unsettled, np.zeros(logits.shape[1]), 2 * (E + 8) * U64 * per_position(expected[1]))


def _kth(columns, c):
    """(B, E) each column's c-th largest value (0 when c = 0 or c = T)."""
    if c == 0 or c >= columns.shape[-1]:
        return np.zeros(columns.shape[:2])
    return -np.sort(-columns, axis=-1)[..., c - 1]


def _unsettled_inf(unsettled, *bounds) -> tuple:
    """``bounds`` per position with inf where any batch row's choice there is unsettled."""
    where = unsettled.any(axis=0) if unsettled.ndim == 2 else unsettled
    return tuple(np.where(where, np.inf, b) for b in bounds)


ROUTING_RULE = ("indices exact, gates within 2 (E + 8) u of their value (noisy: + 4 max|dH|); positions where the "
                "tie rule does not settle the choice within rounding not compared")

for key, fn, form, statement in (
        ("moe.routing.topk", ref.topk_routing, "topk",
         "softmax top-k: the k most probable experts in rank order (ties to the lower index), gates their "
         "probabilities, renormalised over the k or not"),
        ("moe.routing.noisy_topk", ref.noisy_topk_routing, "noisy",
         "Shazeer's noisy top-k: H = clean + noise softplus(noise_logits), gates the softmax of the k largest H"),
        ("moe.routing.switch", ref.switch_routing, "switch",
         "Switch's top-1 with capacity: each expert keeps its first capacity tokens, left to right; the others get "
         "expert -1 and gate 0"),
        ("moe.routing.expert_choice", ref.expert_choice_routing, "expert_choice",
         "expert choice: every expert takes the capacity tokens of highest softmax score (ties to the earlier token)")):
    register_form(Form(key=key, fn=fn, inputs=inputs_of(form), bound=routing_bound, rule=ROUTING_RULE,
                       statement=statement, outputs=("expert_index", "gate"), axes=ROUTING_AXES))


def _switch_by_count(impl, args: dict) -> tuple:
    """The Switch routing rebuilt from its rule: argmax (first maximum), each token's queue
    position by a cumulative count over the batch row, kept while below capacity."""
    logits, capacity = args["logits"], args["capacity"]
    probs = softmax(logits, axis=-1)
    top = np.argmax(logits, axis=-1)  # (B, T): the first maximum, the tie rule
    one_hot = top[..., None] == np.arange(logits.shape[2])
    position = np.take_along_axis(np.cumsum(one_hot, axis=1), top[..., None], axis=-1)[..., 0] - 1
    kept = position < capacity
    index = np.where(kept, top, -1)[..., None]
    gate = np.where(kept, np.take_along_axis(probs, top[..., None], axis=-1)[..., 0], 0.0)[..., None]
    got_index, got_gate = impl(**args)
    return (np.asarray(got_index), np.asarray(got_gate)), (index, gate)


register_claim(Claim(
    key="moe.routing.switch_capacity",
    statement="Switch's router keeps, per expert and batch row, exactly the first capacity tokens whose argmax it "
              "is (no expert over capacity), with gate the top probability; the rest are dropped",
    subject="moe.routing.switch",
    default_impl=ref.switch_routing,
    relation=_switch_by_count,
    inputs=lambda: moe_inputs(form="switch"),
    bound=routing_bound,
    rule=ROUTING_RULE,
    outputs=("expert_index", "gate"),
))


def _topk_by_tie_rule(impl, args: dict) -> tuple:
    """The chosen set by the eviction family's ``topk_lowest_index``; the order by probability
    (descending, lower index first); the gates the probabilities, renormalised or not."""
    probs = softmax(args["logits"], axis=-1)
    chosen = topk_lowest_index(args["logits"], args["top_k"])  # ascending indices
    order = np.argsort(-np.take_along_axis(args["logits"], chosen, axis=-1), axis=-1, kind="stable")
    index = np.take_along_axis(chosen, order, axis=-1)
    gate = np.take_along_axis(probs, index, axis=-1)
    if args["normalize"]:
        gate = gate / gate.sum(axis=-1, keepdims=True)
    got_index, got_gate = impl(**args)
    return (np.asarray(got_index), np.asarray(got_gate)), (index, gate)


register_claim(Claim(
    key="moe.routing.topk_tie_rule",
    statement="top-k routing chooses the set the project's tie rule keeps (eviction's topk_lowest_index), in "
              "rank order, with the chosen probabilities as gates (exact ties drawn: integer logits)",
    subject="moe.routing.topk",
    default_impl=ref.topk_routing,
    relation=_topk_by_tie_rule,
    inputs=lambda: moe_inputs(form="topk", style="integers", logit_scale=1.0),
    bound=routing_bound,
    rule=ROUTING_RULE,
    outputs=("expert_index", "gate"),
))


def _noiseless(impl, args: dict) -> tuple:
    """noise = 0: noisy top-k is renormalised top-k of the clean logits."""
    got = impl(**{**args, "noise": np.zeros_like(args["noise"])})
    return tuple(np.asarray(a) for a in got), ref.topk_routing(args["clean_logits"], top_k=args["top_k"])


register_claim(Claim(
    key="moe.routing.noisy_without_noise",
    statement="noisy top-k with zero noise is renormalised softmax top-k of the clean logits (the softmax of the "
              "k kept logits)",
    subject="moe.routing.noisy_topk",
    default_impl=ref.noisy_topk_routing,
    relation=_noiseless,
    inputs=lambda: moe_inputs(form="noisy"),
    bound=lambda args, expected: routing_bound(args, expected),
    rule=ROUTING_RULE,
    outputs=("expert_index", "gate"),
))


def _noisy_as_topk(impl, args: dict) -> tuple:
    """H = clean + noise * log(1 + e^noise_logits), formed here; renormalised top-k of H."""
    H = args["clean_logits"] + args["noise"] * np.logaddexp(0.0, args["noise_logits"])
    return tuple(np.asarray(a) for a in impl(**args)), ref.topk_routing(H, top_k=args["top_k"])


register_claim(Claim(
    key="moe.routing.noisy_as_topk",
    statement="noisy top-k is renormalised softmax top-k of H = clean + noise softplus(noise_logits): the noise's "
              "scale is the softplus alone (the paper's eq. 4)",
    subject="moe.routing.noisy_topk",
    default_impl=ref.noisy_topk_routing,
    relation=_noisy_as_topk,
    inputs=lambda: moe_inputs(form="noisy"),
    bound=routing_bound,
    rule=ROUTING_RULE,
    outputs=("expert_index", "gate"),
))


def _expert_choice_by_columns(impl, args: dict) -> tuple:
    """Each expert's tokens: the top capacity of its column of softmax scores (topk_lowest_index
    over the tokens), the gates the scores."""
    logits, capacity = args["logits"], args["capacity"]
    B, T, E = logits.shape
    scores = softmax(logits, axis=-1)
    chosen = np.zeros((B, E, T), dtype=bool)
    np.put_along_axis(chosen, topk_lowest_index(np.swapaxes(scores, 1, 2), capacity), True, axis=-1)
    chosen = np.swapaxes(chosen, 1, 2)
    got_index, got_gate = impl(**args)
    return (np.asarray(got_index), np.asarray(got_gate)), (np.where(chosen, np.arange(E), -1),
                                                          np.where(chosen, scores, 0.0))


register_claim(Claim(
    key="moe.routing.expert_choice_columns",
    statement="expert choice: every expert takes exactly capacity tokens, the top of its column of scores "
              "softmax(logits) over the experts (ties to the earlier token)",
    subject="moe.routing.expert_choice",
    default_impl=ref.expert_choice_routing,
    relation=_expert_choice_by_columns,
    inputs=lambda: moe_inputs(form="expert_choice"),
    bound=routing_bound,
    rule=ROUTING_RULE,
    outputs=("expert_index", "gate"),
))


# ----------------------------------------------------------------------------- losses


def balance_bound(args: dict, expected: tuple) -> tuple:
    """Positive terms only: within 2 (2 E + B T k + 16) u of the value (softmax, the means, the
    products and their sum)."""
    B, T, k = np.shape(args["expert_index"])
    E = np.shape(args["logits"])[2]
    return (2 * (2 * E + B * T * k + 16) * U64 * np.abs(np.asarray(expected[0])).reshape(1),)


def z_bound(args: dict, expected: tuple) -> tuple:
    """Each logsumexp within (E + 4) u (max |logits| + log E + 1); squared (2 |lse| times that) and
    averaged over B T tokens (their relative (B T + 4) u)."""
    logits = np.asarray(args["logits"], dtype=np.float64)
    B, T, E = logits.shape
    if B * T == 0:
        return (np.zeros(1),)
    lse = np.abs(logsumexp(logits, axis=-1))
    each = (E + 4) * U64 * (np.abs(logits).max() + np.log(E) + 1)
    return (2 * (2 * lse.max() * each + (B * T + 4) * U64 * np.asarray(expected[0])).reshape(1),)


def cv_bound(n: int, E: int, value: float) -> np.ndarray:
    """CV^2 + 1 = E sum I_i^2 / (sum I)^2 of positive sums I_i each within n u relatively: within
    4 n u + (2 E + 16) u (the variance's own sums) of CV^2 + 1, twice for two evaluations."""
    return np.asarray([2 * (4 * n + 2 * E + 16) * U64 * (1 + abs(value))])


def importance_bound(args: dict, expected: tuple) -> tuple:
    B, T, k = np.shape(args["expert_index"])
    return (cv_bound(B * T * k + 2, args["experts"], float(np.ravel(expected[0])[0])),)


def load_loss_bound(args: dict, expected: tuple) -> tuple:
    """P(t, i) = Phi(z), z = (clean - threshold) / sigma: z within (E + 8) u (|clean| + |threshold| +
    |noise| sigma) / sigma (threshold a noisy logit), Phi' <= 0.4; each load within the sum of
    its P's errors plus B T u of itself; CV^2 + 1 as ``cv_bound`` with those absolute errors."""
    clean, raw, noise = (np.asarray(args[n], dtype=np.float64) for n in ("clean_logits", "noise_logits", "noise"))
    B, T, E = clean.shape
    sigma = np.logaddexp(0.0, raw)
    H = clean + noise * sigma
    reach = np.abs(clean) + np.abs(H).max(axis=-1, keepdims=True) + np.abs(noise) * sigma
    dP = 0.4 * (E + 8) * U64 * reach / sigma + 4 * U64
    loads, dL = ref.smooth_load(**args), dP.sum(axis=(0, 1))
    dL = dL + (B * T + 4) * U64 * loads
    total = loads.sum()
    if total == 0:
        return (np.zeros(1),)
    shape = E * (loads ** 2).sum() / total ** 2
    d_shape = 2 * E * (loads * dL).sum() / total ** 2 + 2 * shape * dL.sum() / total
    return (2 * (d_shape + (2 * E + 16) * U64 * shape).reshape(1),)



LOSS_FORMS = (
    ("moe.loss.load_balancing", ref.load_balancing_loss, "balance", balance_bound,
     "positive terms: within 2 (2E + B T k + 16) u of the value",
     "Switch's load-balancing loss N sum_i f_i P_i in its published variant (the paper's, HF Switch's per group, "
     "Mixtral's summed over the k slots)"),
    ("moe.loss.router_z", ref.router_z_loss, "z", z_bound,
     "each logsumexp within (E + 4) u (max|logits| + log E + 1), squared and averaged",
     "ST-MoE's router z-loss: the mean over tokens of logsumexp(logits)^2"),
    ("moe.loss.importance", ref.importance_loss, "importance", importance_bound,
     "CV^2 of positive sums: 2 (4 (B T k + 2) + 2E + 16) u (1 + CV^2)",
     "Shazeer's importance loss: CV^2 of the experts' summed gates (population variance)"),
    ("moe.loss.load", ref.load_loss, "load", load_loss_bound,
     "Phi's argument within (E + 8) u reach / sigma, Phi' <= 0.4, through CV^2's derivative",
     "Shazeer's load loss: CV^2 of the smooth load sum_t Phi((clean - kth_excluding) / sigma)"),
)

for key, fn, form, bound, rule, statement in LOSS_FORMS:
    register_form(Form(key=key, fn=fn, inputs=inputs_of(form), bound=bound, rule=rule,
                       statement=statement, outputs=("loss",), axes=(("value",),)))


@st.composite
def _uniform_inputs(draw):
    """Every token's logits constant (p uniform), slot j of token t routed to (t + j) mod E, T a
    multiple of E: f and P uniform."""
    E = draw(st.integers(1, 8))
    k = draw(st.integers(1, E))
    B, T = draw(st.integers(1, 3)), E * draw(st.integers(1, 4))
    rng = draw(generators())
    logits = np.repeat(rng.standard_normal((B, T, 1)) * 10, E, axis=2)
    index = (np.arange(T)[None, :, None] + np.arange(k)) % E
    return {"logits": logits, "expert_index": np.broadcast_to(index, (B, T, k)).copy()}


def _uniform(impl, args: dict) -> tuple:
    k = args["expert_index"].shape[2]
    got = tuple(np.atleast_1d(impl(**args, variant=v)) for v in ref.losses.VARIANTS)
    return got, (np.ones(1), np.full(1, float(k)), np.full(1, float(k)))


register_claim(Claim(
    key="moe.loss.uniform",
    statement="under uniform routing (p = 1/E, every expert the same share of slots) the load-balancing loss is 1 "
              "(the paper's), k (HF Switch's, a token counted once per expert it reaches) and k (Mixtral's)",
    subject="moe.loss.load_balancing",
    default_impl=ref.load_balancing_loss,
    relation=_uniform,
    inputs=_uniform_inputs,
    bound=lambda args, expected: tuple(balance_bound(args, (e,))[0] for e in expected),
    rule="positive terms: within 2 (2E + B T k + 16) u of the value",
    outputs=ref.losses.VARIANTS,
))


def _single_token(impl, args: dict) -> tuple:
    """One token: the paper's loss is (E / k) sum_j p_(e_j), HF Switch's and Mixtral's E sum_j p_(e_j)."""
    logits, index = args["logits"][:1, :1], args["expert_index"][:1, :1]
    E, k = logits.shape[2], index.shape[2]
    chosen = softmax(logits[0, 0])[index[0, 0]].sum()
    got = tuple(np.atleast_1d(impl(logits, index, variant=v)) for v in ref.losses.VARIANTS)
    return got, (np.full(1, E / k * chosen), np.full(1, E * chosen), np.full(1, E * chosen))


register_claim(Claim(
    key="moe.loss.single_token",
    statement="for one token the load-balancing loss is E / k times its chosen experts' probability (the paper's), "
              "E times it (HF Switch's and Mixtral's): the probabilities are softmax(logits), once",
    subject="moe.loss.load_balancing",
    default_impl=ref.load_balancing_loss,
    relation=_single_token,
    inputs=lambda: moe_inputs(form="balance", batch=1, seq_len=1),
    bound=lambda args, expected: tuple(2 * balance_bound({**args, "expert_index": args["expert_index"][:1, :1]},
                                                         (e,))[0] for e in expected),
    rule="positive terms, two evaluations: twice 2 (2E + k + 16) u of the value",
    outputs=ref.losses.VARIANTS,
))


@st.composite
def _collapsed_inputs(draw):
    """Top-1 routing where one expert is every token's argmax (its logit raised above the rest)."""
    args = draw(moe_inputs(form="balance", top_k=1, variant="switch"))
    logits = args["logits"].copy()
    e = draw(st.integers(0, logits.shape[2] - 1))
    logits[..., e] = logits.max(axis=-1) + draw(st.sampled_from([1e-3, 1.0]))
    return {"logits": logits, "expert_index": ref.topk_routing(logits, top_k=1)[0]}


def _at_least_one(impl, args: dict) -> tuple:
    """max(0, 1 - loss): 0 when the loss is at least 1."""
    return (np.atleast_1d(max(0.0, 1.0 - impl(**args))),), (np.zeros(1),)


register_claim(Claim(
    key="moe.loss.collapsed_at_least_one",
    statement="the paper's top-1 load-balancing loss is at least 1 when every token routes to one expert (then "
              "loss = E P_e >= 1: each token's top probability is >= 1/E); with tokens split over experts it can "
              "fall below 1 (docs/moe.md)",
    subject="moe.loss.load_balancing",
    default_impl=ref.load_balancing_loss,
    relation=_at_least_one,
    inputs=_collapsed_inputs,
    bound=lambda args, expected: balance_bound(args, (np.ones(1),)),
    rule="the loss's own bound at 1",
))


@st.composite
def _constant_logits(draw):
    args = draw(moe_inputs(form="z"))
    c = draw(generators()).standard_normal(args["logits"].shape[:2] + (1,)) * draw(st.sampled_from([1.0, 30.0]))
    return {"logits": np.repeat(c, args["logits"].shape[2], axis=2)}


def _z_of_constant(impl, args: dict) -> tuple:
    logits = args["logits"]
    B, T, E = logits.shape
    expected = ((logits[..., 0] + np.log(E)) ** 2).mean() if B * T else 0.0
    return (np.atleast_1d(impl(**args)),), (np.atleast_1d(expected),)


register_claim(Claim(
    key="moe.loss.z_constant",
    statement="the router z-loss of logits constant per token, c_t, is the mean of (c_t + log E)^2: it reads the "
              "logits, not the probabilities",
    subject="moe.loss.router_z",
    default_impl=ref.router_z_loss,
    relation=_z_of_constant,
    inputs=_constant_logits,
    bound=lambda args, expected: tuple(2 * b for b in z_bound(args, expected)),
    rule="the z-loss's bound, twice (the closed form is a second evaluation)",
))


def _importance_identity(impl, args: dict) -> tuple:
    """CV^2 = E sum_i w_i^2 - 1, w_i = I_i / sum I (0 where every I_i is 0)."""
    index, gate, E = args["expert_index"], args["gate"], args["experts"]
    importance = np.zeros(E + 1)
    np.add.at(importance, index.ravel(), gate.ravel())
    importance = importance[:E]
    total = importance.sum()
    expected = 0.0 if total == 0 else E * ((importance / total) ** 2).sum() - 1
    return (np.atleast_1d(impl(**args)),), (np.atleast_1d(expected),)


register_claim(Claim(
    key="moe.loss.importance_identity",
    statement="the importance loss CV^2 = var / mean^2 (population variance) equals E sum_i w_i^2 - 1 with w the "
              "experts' shares of the summed gates",
    subject="moe.loss.importance",
    default_impl=ref.importance_loss,
    relation=_importance_identity,
    inputs=lambda: moe_inputs(form="importance"),
    bound=lambda args, expected: tuple(2 * b for b in importance_bound(args, expected)),
    rule="the CV^2 bound, twice",
))


@st.composite
def _noiseless_load_inputs(draw):
    """Noisy top-k inputs with sigma = softplus(-40) ~ 4e-18: the load is a count."""
    args = draw(moe_inputs(form="load", style="normal"))
    return {**args, "noise_logits": np.full(args["clean_logits"].shape, -40.0)}


def _load_is_a_count(impl, args: dict) -> tuple:
    """sigma ~ 4e-18: every P(t, i) is 0 or 1, the indicator of i in the clean top k."""
    index, _ = ref.topk_routing(args["clean_logits"], top_k=args["top_k"])
    E = args["clean_logits"].shape[2]
    counts = np.bincount(index.ravel(), minlength=E).astype(np.float64)
    mean = counts.mean()
    expected = 0.0 if mean == 0 else counts.var() / mean ** 2
    return (np.atleast_1d(impl(**args)),), (np.atleast_1d(expected),)


register_claim(Claim(
    key="moe.loss.load_noiseless",
    statement="with noise sigma -> 0 (softplus(-40)) Shazeer's smooth load is the count of tokens whose top k holds "
              "each expert, and the load loss their CV^2",
    subject="moe.loss.load",
    default_impl=ref.load_loss,
    relation=_load_is_a_count,
    inputs=_noiseless_load_inputs,
    bound=lambda args, expected: (cv_bound(np.shape(args["clean_logits"])[0] * np.shape(args["clean_logits"])[1] + 2,
                                           np.shape(args["clean_logits"])[2], float(expected[0][0])),),
    rule="the CV^2 bound of counts",
))


# ----------------------------------------------------------------------------- CoLT5


def _colt5_as_moe(args: dict) -> dict:
    """CoLT5's FFN as a two-expert MoE layer: expert 0 the light FFN at gate 1 on every token,
    expert 1 the heavy one at gate s on the routed tokens; the hidden sizes padded with zeros
    (exact: silu(0) 0 = 0)."""
    x, s = np.asarray(args["x"], dtype=np.float64), np.asarray(args["scores"], dtype=np.float64)
    B, T, D = x.shape
    F = max(np.shape(args["light_gate"])[1], np.shape(args["heavy_gate"])[1])

    def stacked(part, axis):
        pads = [np.asarray(args[f"{branch}_{part}"], dtype=np.float64) for branch in ("light", "heavy")]
        widths = [[(0, 0), (0, 0)] for _ in pads]
        for pad, width in zip(pads, widths):
            width[axis] = (0, F - pad.shape[axis])
        return np.stack([np.pad(pad, width) for pad, width in zip(pads, widths)])

    routed = ref.routed_mask(s, args["k"])
    index = np.stack([np.zeros((B, T), dtype=np.int64), np.where(routed, 1, -1)], axis=-1)
    gate = np.stack([np.ones((B, T)), np.where(routed, s, 0.0)], axis=-1)
    return {"x": x, "expert_index": index, "gate": gate, "w_gate": stacked("gate", 1), "w_up": stacked("up", 1),
            "w_down": stacked("down", 0), "capacity": None}


def colt5_ffn_bound(args: dict, expected: tuple = ()) -> tuple:
    """The MoE layer's bound of the two-expert layer CoLT5's FFN is."""
    return layer_bound(_colt5_as_moe(args))


COLT5_FFN_RULE = "the MoE layer's bound of the two-expert layer (light at gate 1, heavy at gate s on the routed)"

register_form(Form(
    key="moe.colt5.ffn",
    fn=ref.colt5_ffn,
    inputs=inputs_of("colt5_ffn"),
    bound=colt5_ffn_bound,
    rule=COLT5_FFN_RULE,
    statement="CoLT5's conditional feed-forward: the light FFN on every token plus the heavy FFN on the k top-scored "
              "tokens of each row, scaled by their scores",
    data_args=("x", "scores", "light_gate", "light_up", "light_down", "heavy_gate", "heavy_up", "heavy_down"),
    axes=LAYER_AXES,
))

register_claim(Claim(
    key="moe.colt5.ffn_as_moe",
    statement="CoLT5's conditional FFN is a two-expert MoE layer: light at gate 1 on every token, heavy at gate s_t "
              "on the row's top-k scores (ties to the earlier token)",
    subject="moe.colt5.ffn",
    default_impl=ref.colt5_ffn,
    relation=lambda impl, args: ((np.asarray(impl(**args)),), (ref.moe_per_token(**_colt5_as_moe(args)),)),
    inputs=lambda: moe_inputs(form="colt5_ffn"),
    bound=colt5_ffn_bound,
    rule=COLT5_FFN_RULE,
))


def _colt5_ffn_dense(impl, args: dict) -> tuple:
    """k = T: light + s * heavy on every token, no gather."""
    x, s = np.asarray(args["x"], dtype=np.float64), np.asarray(args["scores"], dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    light = ref.expert_ffn(flat, args["light_gate"], args["light_up"], args["light_down"]).reshape(x.shape)
    heavy = ref.expert_ffn(flat, args["heavy_gate"], args["heavy_up"], args["heavy_down"]).reshape(x.shape)
    return (np.asarray(impl(**{**args, "k": x.shape[1]})),), (light + s[..., None] * heavy,)


register_claim(Claim(
    key="moe.colt5.ffn_all_routed",
    statement="CoLT5's FFN with k = T is the dense light + s * heavy computation",
    subject="moe.colt5.ffn",
    default_impl=ref.colt5_ffn,
    relation=_colt5_ffn_dense,
    inputs=lambda: moe_inputs(form="colt5_ffn"),
    bound=lambda args, expected: colt5_ffn_bound({**args, "k": np.shape(args["x"])[1]}),
    rule=COLT5_FFN_RULE + " at k = T",
))


def _heads_magnitude(x_q, x_kv, qkv, out, visible, value_scale):
    """(M_y (B, n_q, D), n) of multi-head attention: the magnitudes Qm, Km, Vm of the projections,
    S_ij = scale Qm_i . Km_j, M_o = sum_j P_ij (Vm_j + |o_i|) (1 + S_ij + max_j S_ij),
    M_y = sum_h (M_o + |o|) |W_o|; n = D + d + n_kv + H d + 16 the longest chain (module docstring)."""
    D, H, d = qkv.shape[1:]
    scale = d ** -0.5
    project = lambda a, w: np.einsum("btd,dhe->bthe", a, w)  # noqa: E731
    q, k, v = project(x_q, qkv[0]), project(x_kv, qkv[1]), project(x_kv, qkv[2]) * value_scale[..., None, None]
    Qm, Km = project(np.abs(x_q), np.abs(qkv[0])), project(np.abs(x_kv), np.abs(qkv[1]))
    Vm = project(np.abs(x_kv), np.abs(qkv[2])) * np.abs(value_scale)[..., None, None]
    scores = np.where(visible[..., None], scale * np.einsum("bihe,bjhe->bijh", q, k), -np.inf)
    weights = np.exp(scores - scores.max(axis=2, keepdims=True, initial=-np.inf))
    with np.errstate(invalid="ignore"):
        P = np.nan_to_num(weights / weights.sum(axis=2, keepdims=True))
    o = np.einsum("bijh,bjhe->bihe", P, v)
    S = np.where(visible[..., None], scale * np.einsum("bihe,bjhe->bijh", Qm, Km), 0.0)
    M_o = np.einsum("bijh,bijh,bjhe->bihe", P, 1 + S + S.max(axis=2, keepdims=True, initial=0.0), Vm) + np.abs(o) * (
        P * (1 + S + S.max(axis=2, keepdims=True, initial=0.0))).sum(axis=2)[..., None]
    return np.einsum("bihe,hed->bid", M_o + np.abs(o), np.abs(out)), D + d + x_kv.shape[1] + H * d + 16


def colt5_attention_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 n u (M_light + |s_q| M_heavy at the routed queries) per position (``_heads_magnitude``)."""
    x = np.asarray(args["x"], dtype=np.float64)
    B, T, _ = x.shape
    t = np.arange(T)
    local = np.broadcast_to(np.abs(t[:, None] - t[None, :]) <= args["window"], (B, T, T))
    light, n_light = _heads_magnitude(x, x, np.asarray(args["light_qkv"]), np.asarray(args["light_out"]), local,
                                      np.ones((B, T)))
    rows = np.arange(B)[:, None]
    queries = np.nonzero(ref.routed_mask(args["q_scores"], args["k_q"]))[1].reshape(B, -1)
    keys = np.nonzero(ref.routed_mask(args["kv_scores"], args["k_kv"]))[1].reshape(B, -1)
    s_q, s_kv = np.asarray(args["q_scores"]), np.asarray(args["kv_scores"])
    heavy, n_heavy = _heads_magnitude(x[rows, queries], x[rows, keys], np.asarray(args["heavy_qkv"]),
                                      np.asarray(args["heavy_out"]), np.ones((B, queries.shape[1], keys.shape[1]), bool),
                                      s_kv[rows, keys])
    M = light.copy()
    M[rows, queries] += np.abs(s_q[rows, queries])[..., None] * heavy
    return (2 * max(n_light, n_heavy) * U64 * per_position(M),)


COLT5_ATTENTION_RULE = ("derived float64 bound: 2 (D + d + n_kv + H d + 16) u (M_light + |s_q| M_heavy), M per head "
                        "sum_j P_ij (Vm_j + |o_i|) (1 + S_ij + max S) through |W_o|, S the scores' magnitudes")

register_form(Form(
    key="moe.colt5.attention",
    fn=ref.colt5_attention,
    inputs=inputs_of("colt5_attention"),
    bound=colt5_attention_bound,
    rule=COLT5_ATTENTION_RULE,
    statement="CoLT5's conditional attention: local attention for every token plus, for the routed queries, full "
              "attention over the routed keys and values (values scaled by their kv scores), scaled by the query's "
              "score",
    data_args=("x", "q_scores", "kv_scores", "light_qkv", "light_out", "heavy_qkv", "heavy_out"),
    axes=LAYER_AXES,
))


def _attention_dense(args: dict, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Light + the heavy attention of every query over the keys of ``keys`` (key padding mask),
    scaled by s_q where ``queries``, without gathering."""
    x = np.asarray(args["x"], dtype=np.float64)
    w = args["window"]
    light = ref.multi_head(x, x, np.asarray(args["light_qkv"]), np.asarray(args["light_out"]), window=(w, w))
    heavy = ref.multi_head(x, x, np.asarray(args["heavy_qkv"]), np.asarray(args["heavy_out"]),
                           value_scale=np.asarray(args["kv_scores"]), key_padding_mask=keys)
    return light + np.where(queries, args["q_scores"], 0.0)[..., None] * heavy


register_claim(Claim(
    key="moe.colt5.attention_masked_dense",
    statement="CoLT5's routed attention equals dense attention over all tokens with the unrouted keys masked out and "
              "the unrouted queries' heavy output zeroed: routed queries see routed keys only",
    subject="moe.colt5.attention",
    default_impl=ref.colt5_attention,
    relation=lambda impl, args: ((np.asarray(impl(**args)),), (_attention_dense(
        args, ref.routed_mask(args["q_scores"], args["k_q"]), ref.routed_mask(args["kv_scores"], args["k_kv"])),)),
    inputs=lambda: moe_inputs(form="colt5_attention"),
    bound=lambda args, expected: tuple(2 * b for b in colt5_attention_bound(args)),
    rule=COLT5_ATTENTION_RULE + ", doubled (the dense form sums over all T keys, masked)",
))


def _attention_all_routed(impl, args: dict) -> tuple:
    T = np.shape(args["x"])[1]
    everything = np.ones(np.shape(args["q_scores"]), dtype=bool)
    return (np.asarray(impl(**{**args, "k_q": T, "k_kv": T})),), (_attention_dense(args, everything, everything),)


register_claim(Claim(
    key="moe.colt5.attention_all_routed",
    statement="CoLT5's attention with k_q = k_kv = T is local attention plus s_q times full attention with values "
              "scaled by s_kv",
    subject="moe.colt5.attention",
    default_impl=ref.colt5_attention,
    relation=_attention_all_routed,
    inputs=lambda: moe_inputs(form="colt5_attention"),
    bound=lambda args, expected: tuple(2 * b for b in colt5_attention_bound(
        {**args, "k_q": np.shape(args["x"])[1], "k_kv": np.shape(args["x"])[1]})),
    rule=COLT5_ATTENTION_RULE + ", doubled, at k = T",
))
