"""The selective scan's and SSD's gradients (reference/mamba/grad.py) against central differences in random
directions and torch autograd of the recurrence: real and complex A, every layout of B and C, D, z,
delta_bias, softplus (both branches), the initial state; bad input."""

import numpy as np
import pytest

from seqcheck.reference.mamba import selective_scan_recurrent, ssd_recurrent
from seqcheck.reference.mamba.grad import selective_scan_vjp, ssd_chunked_vjp, ssd_vjp

torch = pytest.importorskip("torch")

from kernels.torch_scan import torch_scan  # noqa: E402

LAYOUTS = ("DN", "BTN", "BTGN")


def problem(seed, layout="BTN", complex_A=False, options=True, batch=2, T=6, D=4, N=3):
    rng = np.random.default_rng(seed)

    def draw(shape, complex_ok=complex_A):
        x = rng.standard_normal(shape)
        return x + 1j * rng.standard_normal(shape) if complex_ok else x

    shapes = {"DN": (D, N), "BTN": (batch, T, N), "BTGN": (batch, T, 2, N)}
    A = -np.exp(rng.standard_normal((D, N)))
    if complex_A:
        A = A + 1j * rng.standard_normal((D, N))
    args = dict(u=rng.standard_normal((batch, T, D)), delta=rng.standard_normal((batch, T, D)), A=A,
                B=draw(shapes[layout]), C=draw(shapes[layout]), initial_state=draw((batch, D, N)))
    if options:
        delta = args["delta"]
        delta[0, 0, 0] = 25.0  # softplus's identity branch
        args.update(D=rng.standard_normal(D), z=rng.standard_normal((batch, T, D)), delta_bias=rng.standard_normal(D),
                    delta_softplus=True)
    else:
        args["delta"] = np.exp(args["delta"] - 1)  # a step size without softplus
    cotangents = dict(cotangent=rng.standard_normal((batch, T, D)), state_cotangent=draw((batch, D, N)))
    return args, cotangents, rng


DIFFERENTIABLE = ("u", "delta", "A", "B", "C", "initial_state", "D", "z", "delta_bias")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("complex_A", [False, True])
@pytest.mark.parametrize("options", [True, False])
def test_vjp_matches_central_differences(layout, complex_A, options):
    args, cotangents, rng = problem(LAYOUTS.index(layout), layout, complex_A, options)
    grads = selective_scan_vjp(**args, **cotangents)
    names = [n for n in DIFFERENTIABLE if args.get(n) is not None]
    assert sorted(grads) == sorted(names)
    direction = {n: rng.standard_normal(np.shape(args[n])) for n in names}
    direction.update({n: d + 1j * rng.standard_normal(d.shape) for n, d in direction.items() if np.iscomplexobj(args[n])})
    h = 1e-6

    def objective(sign):
        shifted = {**args, **{n: args[n] + sign * h * direction[n] for n in names}}
        out, state = selective_scan_recurrent(**shifted, return_state=True)
        return (out * cotangents["cotangent"]).sum() + np.real(np.conj(cotangents["state_cotangent"]) * state).sum()

    numeric = (objective(1) - objective(-1)) / (2 * h)
    analytic = sum(np.real(np.conj(grads[n]) * direction[n]).sum() for n in names)
    assert abs(numeric - analytic) <= 1e-7 * (1 + abs(numeric))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("complex_A", [False, True])
def test_vjp_matches_torch_autograd(layout, complex_A):
    args, cotangents, _ = problem(7, layout, complex_A)
    grads = selective_scan_vjp(**args, **cotangents)
    tensors = {n: torch.tensor(v, requires_grad=n in DIFFERENTIABLE) if isinstance(v, np.ndarray) else v
               for n, v in args.items()}
    out, state = torch_scan(**tensors, return_state=True)
    loss = (out * torch.tensor(cotangents["cotangent"])).sum()
    loss = loss + (torch.conj(torch.tensor(cotangents["state_cotangent"])) * state).real.sum()
    loss.backward()
    for name in DIFFERENTIABLE:
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), rtol=1e-11, atol=1e-11, err_msg=name)


def test_without_a_state_cotangent_the_state_is_not_an_output():
    args, cotangents, _ = problem(3)
    with_zero = selective_scan_vjp(**args, cotangent=cotangents["cotangent"],
                                   state_cotangent=np.zeros_like(cotangents["state_cotangent"]))
    without = selective_scan_vjp(**args, cotangent=cotangents["cotangent"])
    for name in with_zero:
        np.testing.assert_array_equal(with_zero[name], without[name])


@pytest.mark.parametrize("change, match", [
    ({"cotangent": np.zeros((2, 5, 4))}, r"cotangent must have shape \(B, T, D\)=\(2, 6, 4\) to match u"),
    ({"state_cotangent": np.zeros((2, 4, 2))}, r"state_cotangent must have shape \(B, D, N\)"),
    ({"state_cotangent": np.zeros((2, 4, 3), complex)}, "state_cotangent"),
])
def test_bad_arguments_are_named(change, match):
    args, cotangents, _ = problem(0)
    with pytest.raises((ValueError, TypeError), match=match):
        selective_scan_vjp(**args, **{**cotangents, **change})


def ssd_problem(seed, B=2, T=6, H=4, P=3, G=2, N=2):
    rng = np.random.default_rng(seed)
    args = dict(x=rng.standard_normal((B, T, H, P)), dt=np.exp(rng.standard_normal((B, T, H)) - 1),
                A=-np.exp(rng.standard_normal(H)), B=rng.standard_normal((B, T, G, N)),
                C=rng.standard_normal((B, T, G, N)), initial_state=rng.standard_normal((B, H, P, N)))
    cotangents = dict(cotangent=rng.standard_normal((B, T, H, P)), state_cotangent=rng.standard_normal((B, H, P, N)))
    return args, cotangents, rng


SSD_INPUTS = ("x", "dt", "A", "B", "C", "initial_state")


@pytest.mark.parametrize("seed", range(3))
def test_ssd_vjp_matches_central_differences(seed):
    args, cotangents, rng = ssd_problem(seed)
    grads = ssd_vjp(**args, **cotangents)
    assert sorted(grads) == sorted(SSD_INPUTS)
    direction = {n: rng.standard_normal(np.shape(args[n])) for n in SSD_INPUTS}
    h = 1e-6

    def objective(sign):
        out, state = ssd_recurrent(**{**args, **{n: args[n] + sign * h * direction[n] for n in SSD_INPUTS}},
                                   return_state=True)
        return (out * cotangents["cotangent"]).sum() + (state * cotangents["state_cotangent"]).sum()

    numeric = (objective(1) - objective(-1)) / (2 * h)
    analytic = sum((grads[n] * direction[n]).sum() for n in SSD_INPUTS)
    assert abs(numeric - analytic) <= 1e-7 * (1 + abs(numeric))


def test_ssd_vjp_matches_torch_autograd():
    from kernels.torch_ssd import torch_ssd

    args, cotangents, _ = ssd_problem(5)
    grads = ssd_vjp(**args, **cotangents)
    tensors = {n: torch.tensor(v, requires_grad=True) for n, v in args.items()}
    out, state = torch_ssd(**tensors, return_state=True)
    ((out * torch.tensor(cotangents["cotangent"])).sum() + (state * torch.tensor(cotangents["state_cotangent"])).sum()
     ).backward()
    for name in SSD_INPUTS:
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), rtol=1e-11, atol=1e-11, err_msg=name)


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 5, 6, 7])
def test_ssd_chunked_vjp_equals_the_recurrences_at_every_chunk_size(chunk_size):
    args, cotangents, _ = ssd_problem(chunk_size)
    expected = ssd_vjp(**args, **cotangents)
    chunked = ssd_chunked_vjp(**args, **cotangents, chunk_size=chunk_size)
    for name in SSD_INPUTS:
        np.testing.assert_allclose(chunked[name], expected[name], rtol=1e-12, atol=1e-12, err_msg=name)
