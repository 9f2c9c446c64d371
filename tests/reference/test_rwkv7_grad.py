"""RWKV-7's gradient (``wkv7_vjp``) against central differences and torch autograd of the
recurrence: the three forms of w, RWKV-LM's a = -kk, b = kk * a_gate and a general rank-one
transition, an initial state and a state cotangent, resets; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference.rwkv7 import wkv7_recurrent, wkv7_vjp

pytest.importorskip("torch")

NAMES = ("r", "w", "k", "v", "a", "b", "initial_state")


def problem(seed, w_kind="log", transition="rwkv", resets=False, B=2, T=6, H=2, K=3, V=4):
    rng = np.random.default_rng(seed)
    log_decay = -np.exp(rng.standard_normal((B, T, H, K)) - 1)
    if resets:
        log_decay = np.where(rng.random((B, T, H, K)) < 0.2, -np.inf, log_decay)
    w = {"log": log_decay, "decay": np.exp(log_decay), "loglog": np.log(-log_decay)}[w_kind]
    if transition == "rwkv":
        kk = rng.standard_normal((B, T, H, K))
        kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
        a, b = -kk, kk * rng.uniform(0, 1, (B, T, H, K))
    else:
        a, b = rng.standard_normal((B, T, H, K)) / 2, rng.standard_normal((B, T, H, K)) / 2
    args = dict(r=rng.standard_normal((B, T, H, K)), w=w, k=rng.standard_normal((B, T, H, K)),
                v=rng.standard_normal((B, T, H, V)), a=a, b=b, w_kind=w_kind, scale=0.5,
                initial_state=rng.standard_normal((B, H, K, V)))
    return args, (rng.standard_normal((B, T, H, V)), rng.standard_normal((B, H, K, V))), rng


@pytest.mark.parametrize("w_kind", ["log", "decay", "loglog"])
@pytest.mark.parametrize("transition", ["rwkv", "normal"])
def test_wkv7_vjp_matches_central_differences_and_autograd(w_kind, transition):
    from kernels.torch_wkv7 import torch_wkv7

    args, cotangents, rng = problem(1, w_kind, transition)
    grads = wkv7_vjp(**args, cotangent=cotangents[0], state_cotangent=cotangents[1])
    assert {n: grads[n].shape for n in NAMES} == {n: np.shape(args[n]) for n in NAMES}
    assert_central_differences(lambda **a: wkv7_recurrent(**a, return_state=True), args, cotangents, grads, NAMES, rng)
    assert_matches_autograd(lambda **a: torch_wkv7(**a, return_state=True), args, cotangents, grads, NAMES)


@pytest.mark.parametrize("w_kind", ["log", "loglog"])
def test_a_reset_stops_the_gradient_and_has_no_decay_gradient(w_kind):
    """d = 0 (w = -inf, or +inf for "loglog"): nothing before the reset reaches the output
    through that channel, and dw there is 0, not NaN."""
    from kernels.torch_wkv7 import torch_wkv7

    args, cotangents, _ = problem(2, w_kind, resets=True)
    grads = wkv7_vjp(**args, cotangent=cotangents[0], state_cotangent=cotangents[1])
    assert all(np.isfinite(grads[n]).all() for n in NAMES)
    reset = ~np.isfinite(args["w"])
    assert reset.any() and (grads["w"][reset] == 0).all()
    assert_matches_autograd(lambda **a: torch_wkv7(**a, return_state=True), args, cotangents, grads, NAMES)


def test_the_delta_rule_case_has_the_delta_rules_gradient():
    """d = 1, b = k, a = -beta k and value beta v is the delta rule, so the chain rule through
    that map turns wkv7's gradients into the delta rule's."""
    from seqcheck.reference.delta import delta_rule_vjp

    args, cotangents, rng = problem(4)
    beta = rng.uniform(0.1, 0.9, args["r"].shape[:3])
    k, v = args["k"] / np.linalg.norm(args["k"], axis=-1, keepdims=True), args["v"]
    wkv7 = wkv7_vjp(args["r"], np.zeros_like(k), k, beta[..., None] * v, -beta[..., None] * k, k,
                    cotangent=cotangents[0], initial_state=args["initial_state"])
    delta = delta_rule_vjp(args["r"], k, v, beta, cotangent=cotangents[0], scale=1.0,
                           initial_state=args["initial_state"])
    through = {"q": wkv7["r"], "k": wkv7["k"] + wkv7["b"] - beta[..., None] * wkv7["a"],
               "v": beta[..., None] * wkv7["v"], "beta": (v * wkv7["v"]).sum(-1) - (k * wkv7["a"]).sum(-1),
               "initial_state": wkv7["initial_state"]}
    for name, expected in through.items():
        np.testing.assert_allclose(delta[name], expected, rtol=1e-11, atol=1e-11, err_msg=name)


def test_exact_inputs_are_refused():
    from fractions import Fraction

    args, cotangents, _ = problem(0, "decay")
    exact = {**args, "w": np.vectorize(Fraction, otypes=[object])(args["w"])}
    with pytest.raises(TypeError, match="float64"):
        wkv7_vjp(**exact, cotangent=cotangents[0])
