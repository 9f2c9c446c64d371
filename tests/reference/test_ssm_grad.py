"""The SSM gradients (reference/ssm/grad.py) against central differences, the complex step and
torch autograd: the LTI recurrence (shared and per-channel Abar, the skip, an initial state and a
state cotangent), the Krylov kernel (real and complex systems), the S4D kernel (ZOH, bilinear,
B given or ones) and the S4 kernel through its dense bilinear system; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference.ssm import (lti_kernel, lti_kernel_vjp, lti_recurrent, lti_vjp, s4_krylov_kernel,
                                    s4_krylov_vjp, s4d_kernel, s4d_vjp)

pytest.importorskip("torch")

LTI = ("u", "Abar", "Bbar", "C", "D", "initial_state")


def lti_problem(seed, shared, B=2, T=6, channels=3, N=4):
    rng = np.random.default_rng(seed)
    Abar = 0.3 * rng.standard_normal((N, N) if shared else (channels, N, N))
    args = dict(u=rng.standard_normal((B, T, channels)), Abar=Abar, Bbar=rng.standard_normal((channels, N)),
                C=rng.standard_normal((channels, N)), D=rng.standard_normal(channels),
                initial_state=rng.standard_normal((B, channels, N)))
    return args, (rng.standard_normal((B, T, channels)), rng.standard_normal((B, channels, N))), rng


@pytest.mark.parametrize("shared", [False, True])
def test_lti_vjp_matches_central_differences_and_autograd(shared):
    from kernels.torch_ssm import torch_lti

    args, cotangents, rng = lti_problem(0, shared)
    grads = lti_vjp(**args, cotangent=cotangents[0], state_cotangent=cotangents[1])
    assert {n: grads[n].shape for n in LTI} == {n: np.shape(args[n]) for n in LTI}
    assert_central_differences(lambda **a: lti_recurrent(**a, return_state=True), args, cotangents, grads, LTI, rng)
    grads = lti_vjp(**args, cotangent=cotangents[0])
    assert_matches_autograd(torch_lti, args, cotangents[:1], grads, LTI)


def test_lti_vjp_without_a_skip_has_no_D_gradient():
    args, cotangents, _ = lti_problem(1, False)
    assert "D" not in lti_vjp(**{**args, "D": None}, cotangent=cotangents[0])


@pytest.mark.parametrize("complex_system", [False, True])
def test_lti_kernel_vjp_matches_central_differences(complex_system):
    rng = np.random.default_rng(2)

    def draw(*shape):
        return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex_system else 0)

    args = dict(Abar=0.3 * draw(3, 4, 4), Bbar=draw(3, 4), C=draw(3, 4), length=7)
    cotangent = rng.standard_normal((3, 7))
    grads = lti_kernel_vjp(**args, cotangent=cotangent)
    assert_central_differences(lambda **a: lti_kernel(**a).real, args, (cotangent,), grads, ("Abar", "Bbar", "C"), rng)


def test_lti_kernel_vjp_matches_the_complex_step():
    """K is analytic in a real system, so Im K(x + i h t) / h is J t to O(h^2), with no
    cancellation at h = 1e-30: <grad, t> must equal <cotangent, J t> to rounding."""
    rng = np.random.default_rng(3)
    args = dict(Abar=0.3 * rng.standard_normal((2, 4, 4)), Bbar=rng.standard_normal((2, 4)),
                C=rng.standard_normal((2, 4)))
    cotangent = rng.standard_normal((2, 6))
    grads = lti_kernel_vjp(**args, length=6, cotangent=cotangent)
    t = {n: rng.standard_normal(a.shape) for n, a in args.items()}
    h = 1e-30
    stepped = lti_kernel(*(args[n] + 1j * h * t[n] for n in ("Abar", "Bbar", "C")), 6)
    directional = (cotangent * stepped.imag / h).sum()
    assert np.isclose(sum((grads[n] * t[n]).sum() for n in args), directional, rtol=1e-13)


def s4d_problem(seed, discretization, with_B, H=2, n=3, L=7):
    rng = np.random.default_rng(seed)
    args = dict(log_dt=np.log(rng.uniform(0.01, 0.5, H)), A=-rng.uniform(0.1, 1, (H, n)) + 1j * rng.uniform(-3, 3, (H, n)),
                B=rng.standard_normal((H, n)) + 1j * rng.standard_normal((H, n)) if with_B else None,
                C=rng.standard_normal((H, n)) + 1j * rng.standard_normal((H, n)), length=L,
                discretization=discretization)
    return args, (rng.standard_normal((H, L)),), rng


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("with_B", [True, False])
def test_s4d_vjp_matches_central_differences_and_autograd(discretization, with_B):
    from kernels.torch_ssm import torch_s4d

    args, cotangents, rng = s4d_problem(4, discretization, with_B)
    grads = s4d_vjp(**args, cotangent=cotangents[0])
    names = ("log_dt", "A", "C") + (("B",) if with_B else ())
    assert set(grads) == set(names)
    assert_central_differences(s4d_kernel, args, cotangents, grads, names, rng)
    assert_matches_autograd(torch_s4d, args, cotangents, grads, names)


def test_s4_krylov_vjp_matches_central_differences_and_autograd_of_both_paths():
    """Torch autograd through the dense bilinear system (S4's ``_check``) and through the DPLR path
    (S4's ``SSMKernelDPLR.forward``) agree with the VJP."""
    from kernels.torch_ssm import torch_s4_dplr, torch_s4_krylov

    rng = np.random.default_rng(5)
    H, n, L = 2, 3, 7

    def draw(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    args = dict(Lambda=-rng.uniform(0.1, 1, (H, n)) + 1j * np.pi * rng.uniform(0, n, (H, n)), P=0.5 * draw(H, n),
                Q=0.5 * draw(H, n), B=draw(H, n), C=draw(H, n), log_dt=np.log(rng.uniform(0.01, 0.5, H)), length=L)
    cotangent = rng.standard_normal((H, L))
    grads = s4_krylov_vjp(**args, cotangent=cotangent)
    names = ("Lambda", "P", "Q", "B", "C", "log_dt")
    for name in names:
        assert grads[name].shape == np.shape(args[name])
        assert_central_differences(s4_krylov_kernel, args, (cotangent,), grads, (name,), rng)
    for path in (torch_s4_krylov, torch_s4_dplr):
        assert_matches_autograd(path, args, (cotangent,), grads, names, atol=1e-10, rtol=1e-10)


def test_bad_cotangents_are_refused():
    args, cotangents, _ = lti_problem(0, False)
    with pytest.raises(ValueError, match="cotangent"):
        lti_vjp(**args, cotangent=cotangents[0][:, :-1])
    s4d, s4d_cotangents, _ = s4d_problem(0, "zoh", True)
    with pytest.raises(ValueError, match="cotangent"):
        s4d_vjp(**s4d, cotangent=s4d_cotangents[0][:, :-1])
