"""Multi-scale retention's gradient (``msr_vjp``) against central differences and torch autograd
of torchscale's recurrence, with the norm's eps 0 and torchscale's 1e-6; the running scale; an
empty sequence; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference.retention import msr_decays, msr_recurrent, msr_scales, msr_vjp

pytest.importorskip("torch")

NAMES = ("q", "k", "v")


def problem(seed, eps, B=2, T=7, H=3, K=4, V=3):
    rng = np.random.default_rng(seed)
    args = dict(q=rng.standard_normal((B, T, H, K)), k=rng.standard_normal((B, T, H, K)),
                v=rng.standard_normal((B, T, H, V)), eps=eps)
    return args, (rng.standard_normal((B, T, H, V)),), rng


@pytest.mark.parametrize("eps", [0.0, 1e-6, 0.5])
@pytest.mark.parametrize("seed", range(2))
def test_msr_vjp_matches_central_differences_and_autograd(eps, seed):
    from kernels.torch_msr import torch_msr

    args, cotangents, rng = problem(seed, eps)
    grads = msr_vjp(**args, cotangent=cotangents[0])
    assert {n: grads[n].shape for n in NAMES} == {n: args[n].shape for n in NAMES}
    assert_central_differences(msr_recurrent, args, cotangents, grads, NAMES, rng)
    assert_matches_autograd(torch_msr, args, cotangents, grads, NAMES)


def test_the_first_query_has_no_gradient_when_eps_is_0():
    """Row 0 is N((q_0 . k_0) v_0 / sqrt(K)): invariant to q_0's scale and, with one key, to its
    direction too (up to sign), so its gradient is 0; eps > 0 breaks the invariance."""
    args, cotangents, _ = problem(3, 0.0)
    assert np.abs(msr_vjp(**args, cotangent=cotangents[0])["q"][:, 0]).max() < 1e-14
    args["eps"] = 0.5
    assert np.abs(msr_vjp(**args, cotangent=cotangents[0])["q"][:, 0]).max() > 1e-3


def test_the_running_scale_is_the_decays_geometric_sum():
    gamma, T = msr_decays(3), 40
    expected = (1 - gamma[None] ** (np.arange(T)[:, None] + 1)) / (1 - gamma[None])
    np.testing.assert_allclose(msr_scales(3, T), expected, rtol=1e-13)
    assert msr_scales(3, 0).shape == (0, 3)


def test_an_empty_sequence_has_empty_gradients():
    empty = {n: np.zeros((1, 0, 2, 4)) for n in ("q", "k", "v")}
    grads = msr_vjp(**empty, cotangent=np.zeros((1, 0, 2, 4)))
    assert all(grads[n].shape == (1, 0, 2, 4) for n in NAMES)


def test_bad_cotangent_is_refused():
    args, cotangents, _ = problem(0, 0.0)
    with pytest.raises(ValueError, match="cotangent"):
        msr_vjp(**args, cotangent=cotangents[0][:, :-1])
