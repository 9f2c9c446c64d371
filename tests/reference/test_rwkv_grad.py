"""RWKV's gradients (reference/rwkv/grad.py) against central differences and torch autograd:
RWKV-6 with per-channel and per-head decays, RWKV-5's constant decays, u (H, K) and (H,), an
initial state and a state cotangent, resets; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference.rwkv import wkv4_recurrent, wkv4_vjp, wkv6_recurrent, wkv6_vjp

pytest.importorskip("torch")

G_SHAPES = {"rwkv6": lambda B, T, H, K: (B, T, H, K), "per head": lambda B, T, H, K: (B, T, H),
            "rwkv5.2": lambda B, T, H, K: (H, K), "rwkv5.0": lambda B, T, H, K: (H,)}


def wkv6_problem(seed, g_shape="rwkv6", u_per_head=False, resets=False, B=2, T=6, H=2, K=3, V=4):
    rng = np.random.default_rng(seed)
    shape = G_SHAPES[g_shape](B, T, H, K)
    g = -np.exp(rng.standard_normal(shape) - 1)
    if resets:
        g = np.where(rng.random(shape) < 0.2, -np.inf, g)
    args = dict(r=rng.standard_normal((B, T, H, K)), k=rng.standard_normal((B, T, H, K)),
                v=rng.standard_normal((B, T, H, V)), g=g, u=rng.standard_normal((H,) if u_per_head else (H, K)),
                initial_state=rng.standard_normal((B, H, K, V)))
    return args, (rng.standard_normal((B, T, H, V)), rng.standard_normal((B, H, K, V))), rng


WKV6 = ("r", "k", "v", "g", "u", "initial_state")


@pytest.mark.parametrize("g_shape", list(G_SHAPES))
@pytest.mark.parametrize("u_per_head", [False, True])
def test_wkv6_vjp_matches_central_differences_and_autograd(g_shape, u_per_head):
    from kernels.torch_wkv6 import torch_wkv6

    args, cotangents, rng = wkv6_problem(3, g_shape, u_per_head)
    grads = wkv6_vjp(**args, cotangent=cotangents[0], state_cotangent=cotangents[1])
    assert {n: np.shape(grads[n]) for n in WKV6} == {n: np.shape(args[n]) for n in WKV6}
    assert_central_differences(lambda **a: wkv6_recurrent(**a, return_state=True), args, cotangents, grads, WKV6, rng)
    assert_matches_autograd(lambda **a: torch_wkv6(**a, return_state=True), args, cotangents, grads, WKV6)


def test_wkv6_vjp_through_resets_is_finite_and_matches_autograd():
    from kernels.torch_wkv6 import torch_wkv6

    args, cotangents, _ = wkv6_problem(4, resets=True)
    grads = wkv6_vjp(**args, cotangent=cotangents[0], state_cotangent=cotangents[1])
    assert all(np.isfinite(grads[n]).all() for n in WKV6)
    finite = {n: g for n, g in grads.items() if n != "g"}
    assert_matches_autograd(lambda **a: torch_wkv6(**a, return_state=True), args, cotangents, finite,
                            ("r", "k", "v", "u", "initial_state"))


def test_wkv6_vjp_refuses_exact_decays():
    args, cotangents, _ = wkv6_problem(0)
    with pytest.raises(TypeError, match="g must be given"):
        wkv6_vjp(**{**args, "g": None}, cotangent=cotangents[0])


def wkv4_problem(seed, k_offset=0.0, B=2, T=7, C=3):
    rng = np.random.default_rng(seed)
    args = dict(k=rng.standard_normal((B, T, C)) + k_offset, v=rng.standard_normal((B, T, C)),
                w=np.exp(rng.standard_normal(C)), u=rng.standard_normal(C))
    return args, (rng.standard_normal((B, T, C)),), rng


WKV4 = ("k", "v", "w", "u")


@pytest.mark.parametrize("k_offset", [0.0, 700.0])
def test_wkv4_vjp_matches_central_differences_and_autograd(k_offset):
    """k near 700, where e^k overflows: the gradient stays exact (each row's maximum subtracted)."""
    from kernels.torch_wkv4 import torch_wkv4

    args, cotangents, rng = wkv4_problem(5, k_offset)
    grads = wkv4_vjp(**args, cotangent=cotangents[0])
    assert_central_differences(wkv4_recurrent, args, cotangents, grads, WKV4, rng)
    assert_matches_autograd(torch_wkv4, args, cotangents, grads, WKV4)


def test_wkv4_vjp_of_an_empty_sequence_is_zero():
    args, cotangents, _ = wkv4_problem(0, T=0)
    assert all(not np.any(g) for g in wkv4_vjp(**args, cotangent=cotangents[0]).values())
