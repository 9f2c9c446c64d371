"""Hybrid stacks: Jamba over the whole sequence, token by token and as a prefill then decoding,
one layer at a time too; bounds by running error analysis (``equiv/tracked.py``), claims.

The bound. The parallel pass is evaluated once more on ``Tracked`` arrays (the same code,
``reference.hybrid.jamba.forward``, in the arithmetic ``tracked.OPS``): every operation's
rounding is added to the errors it propagates, to first order, with gamma_n for every sum
whatever its order. The token-by-token step performs the same operations on the same values
(a softmax over the cache's keys sums the parallel row's nonzero terms; a conv over the conv
state the same taps), so each form's error is within that bound E and two forms within

    2 E per position

(``stack_bound``). One layer's block (``layer_bound``) starts from an exact input, and the bound
is the layer's own roundings carried through its RMSNorms, softmaxes and scan (about 1e-11 at
T = 64, D = 8, where the forms differ by 1e-15). Through a stack the absolute values compound:
every product |W| e counts the D terms of a dot product as if their errors had one sign, so the
bound grows about sqrt(D) per matrix product, ~1000x per layer: 1e-7 after two layers, 3e-4
after three, 0.2 after four at T = 32. So the stack's forms draw one or two layers (every mixer
and feed-forward kind, every split point), and deeper stacks are checked one layer at a time
(the layer forms draw configs of up to eight layers, Jamba's schedule among them): a decoder that
is right layer by layer from the same inputs is right as a stack.

MoE choices read values: where two forms' router probabilities tie within their errors the
bound does not hold (drawn weights make that a 1e-12 event). The Jamba forms have no
low-precision baseline yet: they are float64 claims.
"""

from __future__ import annotations

import numpy as np

from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.registry import Claim, Form, register_claim, register_form
from seqcheck.equiv.tracked import OPS, Tracked, gamma
from seqcheck.properties.arrays import for_form
from seqcheck.properties.hybrid import jamba_inputs
from seqcheck.reference import hybrid as ref
from seqcheck.reference.hybrid.jamba import _block, _softmax, forward, router_loss

AXES = (("batch", "token", "channel"),)


def stack_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 E per position, E the running error bound of the parallel pass (module docstring)."""
    y, _, _ = forward(Tracked(args["x"]), args["params"], args.get("valid"), OPS)
    return (2 * per_position(y.error),)


def layer_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 E per position of one layer's block from its exact input."""
    i = args["layer"]
    out, _, _ = _block(Tracked(args["h"]), args["params"].layers[i], i, args["params"].config, args.get("valid"), OPS)
    return (2 * per_position(out.error),)


STACK_RULE = "derived float64 bound: twice the running error bound of the parallel pass (first order, gamma_n sums)"
LAYER_RULE = "derived float64 bound: twice the running error bound of the layer's block on its exact input"


def _unused(form: str) -> tuple:
    used = {"parallel": ("padded",), "recurrent": (), "prefill_decode": ("prefill",), "layer": ("layer",),
            "layer_prefill_decode": ("layer", "prefill")}[form]
    return tuple(option for option in ("padded", "prefill", "layer") if option not in used)


for key, fn, form, oracle, drop, statement in (
        ("hybrid.jamba.parallel", ref.jamba_parallel, "parallel", None, (),
         "the Jamba stack over the whole sequence: per layer x + mixer(RMSNorm(x)), then + ffn(RMSNorm(.)); "
         "attention (causal GQA, no positions) or Mamba (conv, dt/B/C norms, scan), MoE (top-k, not "
         "renormalised) or SwiGLU"),
        ("hybrid.jamba.recurrent", ref.jamba_recurrent, "recurrent", "hybrid.jamba.parallel", (),
         "the stack token by token with its caches (keys and values, conv states, SSM states) equals the parallel "
         "pass"),
        ("hybrid.jamba.prefill_decode", ref.jamba_prefill_decode, "prefill_decode", "hybrid.jamba.parallel",
         ("prefill",),
         "a parallel prefill of any length, then decoding from the caches it leaves, equals the parallel pass")):
    register_form(Form(key=key, fn=fn, inputs=for_form(jamba_inputs, form, unused=_unused(form)), bound=stack_bound,
                       rule=STACK_RULE, statement=statement, oracle=oracle, oracle_drop=drop, data_args=("x",),
                       axes=AXES))

register_form(Form(
    key="hybrid.jamba_layer.parallel",
    fn=ref.jamba_layer_parallel,
    inputs=for_form(jamba_inputs, "layer", unused=_unused("layer")),
    bound=layer_bound,
    rule=LAYER_RULE,
    statement="one Jamba layer's residual block over the whole sequence",
    data_args=("h",),
    axes=AXES,
))

register_form(Form(
    key="hybrid.jamba_layer.prefill_decode",
    fn=ref.jamba_layer_prefill_decode,
    inputs=for_form(jamba_inputs, "layer_prefill_decode", unused=_unused("layer_prefill_decode")),
    bound=layer_bound,
    rule=LAYER_RULE,
    statement="one layer's block as a prefill of any length and then token by token from its cache equals its "
              "parallel pass, within the layer's own rounding (the conv state, the SSM state and the keys carried "
              "exactly)",
    oracle="hybrid.jamba_layer.parallel",
    oracle_drop=("prefill",),
    data_args=("h",),
    axes=AXES,
))


# ----------------------------------------------------------------------------- left padding


def _each_row_unpadded(args: dict) -> tuple:
    """Each row's valid suffix run alone: y at its positions (0 at the padding), and the router
    loss of all rows' valid tokens."""
    x, params, valid = args["x"], args["params"], args["valid"]
    y, logits = np.zeros_like(x), []
    for b in range(x.shape[0]):
        start = int(np.argmax(valid[b])) if valid[b].any() else x.shape[1]
        row_y, row_logits, _ = forward(np.asarray(x[b:b + 1, start:], dtype=np.float64), params, None, ref.jamba.Float64)
        y[b, start:] = row_y[0]
        logits.append([a[0] for a in row_logits])
    per_layer = [np.concatenate([row[i] for row in logits])[None] for i in range(len(logits[0]))] if logits else []
    return y, router_loss(per_layer, None, params.config)


def _padded(impl, args: dict) -> tuple:
    y, loss = impl(**args, return_router_loss=True)
    masked = np.where(args["valid"][..., None], np.asarray(y), 0.0)
    expected_y, expected_loss = _each_row_unpadded(args)
    return (masked, np.atleast_1d(loss)), (expected_y, np.atleast_1d(expected_loss))


def _padded_bound(args: dict, expected: tuple) -> tuple:
    """The stack's bound for y; the router loss L = E sum f P within E sum_(j, i) f_ji mean(e_p_i)
    (the probabilities' tracked errors) + gamma(N + E k + 8) L, twice."""
    params, valid = args["params"], args["valid"]
    c = params.config
    y, logits, _ = forward(Tracked(args["x"]), params, valid, OPS)
    loss = float(np.ravel(expected[1])[0])
    if not logits or not valid.any():
        return 2 * per_position(y.error), np.zeros(1)
    errors = []
    for layer_logits in logits:
        probs = _softmax(layer_logits, np.ones(layer_logits.shape, dtype=bool), -1, OPS)
        errors.append(probs.error[valid])
    e_p = np.concatenate(errors).mean(axis=0)  # (E,)
    n = sum(len(e) for e in errors)
    loss_bound = c.experts * c.top_k * e_p.max(initial=0.0) + gamma(n + c.experts * c.top_k + 8) * abs(loss)
    return 2 * per_position(y.error), np.atleast_1d(2 * loss_bound)


register_claim(Claim(
    key="hybrid.jamba.left_padding",
    statement="a left-padded batch (padding 100x larger, masked) gives each row's outputs and the router loss of "
              "its valid tokens as if every row ran alone unpadded: keys masked, the Mamba input zeroed before and "
              "after the conv, the router loss over valid tokens only",
    subject="hybrid.jamba.parallel",
    default_impl=ref.jamba_parallel,
    relation=_padded,
    inputs=lambda: jamba_inputs(form="parallel", padded=True),
    bound=_padded_bound,
    rule=STACK_RULE + "; the router loss: E k max mean e_p + gamma(N + E k + 8) L, twice",
    outputs=("out", "router_loss"),
))
