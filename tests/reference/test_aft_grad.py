"""AFT's gradients (reference/aft/grad.py) against central differences and torch autograd: every
form, gated and not, causal and not, shared and per-channel biases, k near 1e3; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference import aft

pytest.importorskip("torch")


def problem(seed, gated=True, per_channel=False, k_offset=0.0, B=2, T=6, D=3):
    rng = np.random.default_rng(seed)
    args = dict(q=rng.standard_normal((B, T, D)) if gated else None, k=rng.standard_normal((B, T, D)) + k_offset,
                v=rng.standard_normal((B, T, D)), w=rng.standard_normal((T, T, D) if per_channel else (T, T)))
    return args, (rng.standard_normal((B, T, D)),), rng


def _names(args):
    return tuple(n for n in ("q", "k", "v", "w") if n in args and args[n] is not None)


CASES = [dict(gated=True), dict(gated=False), dict(per_channel=True), dict(k_offset=900.0)]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("causal", [False, True])
def test_aft_full_and_local_vjps_match_central_differences_and_autograd(case, causal):
    from kernels.torch_aft import torch_aft_full, torch_aft_local

    args, cotangents, rng = problem(1, **case)
    grads = aft.aft_full_vjp(**args, cotangent=cotangents[0], causal=causal)
    forward = lambda **a: aft.aft_full(**a, causal=causal)  # noqa: E731
    assert_central_differences(forward, args, cotangents, grads, _names(args), rng)
    assert_matches_autograd(lambda **a: torch_aft_full(**a, causal=causal), args, cotangents, grads, _names(args))
    grads = aft.aft_local_vjp(**args, window=2, cotangent=cotangents[0], causal=causal)
    assert_central_differences(lambda **a: aft.aft_local(**a, window=2, causal=causal), args, cotangents, grads,
                               _names(args), rng)
    assert_matches_autograd(lambda **a: torch_aft_local(**a, window=2, causal=causal), args, cotangents, grads,
                            _names(args))


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("causal", [False, True])
def test_aft_simple_vjp_matches_central_differences_and_autograd(gated, causal):
    from kernels.torch_aft import torch_aft_simple

    args, cotangents, rng = problem(2, gated)
    args.pop("w")
    grads = aft.aft_simple_vjp(**args, cotangent=cotangents[0], causal=causal)
    assert_central_differences(lambda **a: aft.aft_simple(**a, causal=causal), args, cotangents, grads,
                               _names(args), rng)
    assert_matches_autograd(lambda **a: torch_aft_simple(**a, causal=causal), args, cotangents, grads, _names(args))


@pytest.mark.parametrize("size", [1, 3, 5, 13])
def test_aft_conv_vjp_matches_central_differences_and_autograd(size):
    from kernels.torch_aft import torch_aft_conv

    rng = np.random.default_rng(size)
    B, T, H, D = 2, 6, 2, 3
    args = dict(q=rng.standard_normal((B, T, H, D)), k=rng.standard_normal((B, T, H, D)),
                v=rng.standard_normal((B, T, H, D)), w=rng.standard_normal((H, size)))
    cotangents = (rng.standard_normal((B, T, H, D)),)
    grads = aft.aft_conv_vjp(**args, cotangent=cotangents[0])
    assert {n: g.shape for n, g in grads.items()} == {n: a.shape for n, a in args.items()}
    assert_central_differences(aft.aft_conv, args, cotangents, grads, tuple(args), rng)
    assert_matches_autograd(torch_aft_conv, args, cotangents, grads, tuple(args))


def test_w_outside_the_window_gets_no_gradient():
    args, cotangents, _ = problem(3)
    dw = aft.aft_local_vjp(**args, window=2, cotangent=cotangents[0])["w"]
    t = np.arange(dw.shape[0])
    assert not dw[np.abs(t[:, None] - t[None, :]) >= 2].any() and dw[np.abs(t[:, None] - t[None, :]) < 2].all()
