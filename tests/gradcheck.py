"""The tests' two checks of a float64 VJP oracle: central differences in one random direction
(JAX's check_vjp: <J^T c, t> = (f(x + h t) - f(x - h t)) . c / 2h) and agreement with torch
autograd of an independent torch definition."""

import numpy as np


def objective(outputs, cotangents) -> float:
    """sum_o <out_o, cotangent_o> (complex outputs: the real part of the sum of products)."""
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return sum(float(np.real((np.asarray(out) * c).sum())) for out, c in zip(outputs, cotangents) if c is not None)


def assert_central_differences(forward, args, cotangents, grads, names, rng, *, h=1e-6, rtol=1e-7):
    """<grads, t> equals the central difference of <forward(args), cotangents> along a random t;
    complex inputs get a complex direction (their gradient is dL/dRe + i dL/dIm)."""
    def draw(shape, like):
        t = rng.standard_normal(shape)
        return t + 1j * rng.standard_normal(shape) if np.iscomplexobj(like) else t

    direction = {n: draw(np.shape(args[n]), args[n]) for n in names}

    def shifted(sign):
        return objective(forward(**{**args, **{n: args[n] + sign * h * direction[n] for n in names}}), cotangents)

    numeric = (shifted(1) - shifted(-1)) / (2 * h)
    analytic = sum(float(np.real((np.conj(np.asarray(grads[n])) * direction[n]).sum())) for n in names)
    assert abs(numeric - analytic) <= rtol * max(1.0, abs(analytic)), (numeric, analytic)


def assert_matches_autograd(torch_forward, args, cotangents, grads, names, *, atol=1e-11, rtol=1e-11):
    """grads equal torch autograd of sum_o <torch_forward(args)_o, cotangent_o> (float64)."""
    import torch

    tensors = {n: torch.tensor(np.asarray(v)) if isinstance(v, np.ndarray) else v for n, v in args.items()}
    for n in names:
        tensors[n] = tensors[n].requires_grad_(True)
    outputs = torch_forward(**tensors)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    total = sum((out * torch.tensor(c)).sum().real for out, c in zip(outputs, cotangents) if c is not None)
    total.backward()
    for n in names:
        np.testing.assert_allclose(grads[n], tensors[n].grad.numpy(), rtol=rtol, atol=atol, err_msg=n)
