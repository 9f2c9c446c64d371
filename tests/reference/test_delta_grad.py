"""The (gated) delta rule's gradient (reference/delta/grad.py) against central differences in
random directions and torch autograd of the recurrence; bad input."""

import numpy as np
import pytest

from seqcheck.reference.delta import delta_rule_recurrent, delta_rule_vjp

torch = pytest.importorskip("torch")


def problem(seed, gated, B=2, T=7, H=2, K=3, V=4):
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((B, T, H, K))
    args = dict(q=rng.standard_normal((B, T, H, K)), k=k / np.linalg.norm(k, axis=-1, keepdims=True),
                v=rng.standard_normal((B, T, H, V)), beta=rng.uniform(0, 2, (B, T, H)),
                initial_state=rng.standard_normal((B, H, K, V)), scale=0.7)
    if gated:
        args["g"] = -np.exp(rng.standard_normal((B, T, H)))
    cotangents = dict(cotangent=rng.standard_normal((B, T, H, V)), state_cotangent=rng.standard_normal((B, H, K, V)))
    return args, cotangents, rng


def differentiable(args):
    return [n for n in ("q", "k", "v", "beta", "g", "initial_state") if n in args]


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_vjp_matches_central_differences(gated, seed):
    args, cotangents, rng = problem(seed, gated)
    grads = delta_rule_vjp(**args, **cotangents)
    direction = {n: rng.standard_normal(np.shape(args[n])) for n in differentiable(args)}
    h = 1e-6

    def objective(sign):
        shifted = {**args, **{n: args[n] + sign * h * t for n, t in direction.items()}}
        out, state = delta_rule_recurrent(**shifted, return_state=True)
        return (out * cotangents["cotangent"]).sum() + (state * cotangents["state_cotangent"]).sum()

    numeric = (objective(1) - objective(-1)) / (2 * h)
    analytic = sum((grads[n] * t).sum() for n, t in direction.items())
    assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic))


def torch_delta(q, k, v, beta, g, initial_state, scale):
    """The delta rule as 'predict, then write the correction', in torch."""
    S, outs = initial_state, []
    for t in range(q.shape[1]):
        if g is not None:
            S = torch.exp(g[:, t])[..., None, None] * S
        written = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * written[:, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", scale * q[:, t], S))
    return torch.stack(outs, dim=1), S


@pytest.mark.parametrize("gated", [False, True])
def test_vjp_matches_torch_autograd(gated):
    args, cotangents, _ = problem(10, gated)
    tensors = {n: torch.from_numpy(np.asarray(args[n]).copy()).requires_grad_(True) for n in differentiable(args)}
    out, state = torch_delta(tensors["q"], tensors["k"], tensors["v"], tensors["beta"], tensors.get("g"),
                             tensors["initial_state"], args["scale"])
    ((out * torch.from_numpy(cotangents["cotangent"])).sum()
     + (state * torch.from_numpy(cotangents["state_cotangent"])).sum()).backward()
    grads = delta_rule_vjp(**args, **cotangents)
    assert set(grads) == set(tensors)
    for n, t in tensors.items():
        np.testing.assert_allclose(grads[n], t.grad.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda a, c: delta_rule_vjp(**a, cotangent=c["cotangent"][:, :2]), "^cotangent must have shape"),
    (lambda a, c: delta_rule_vjp(**a, cotangent=c["cotangent"], state_cotangent=c["state_cotangent"][..., :1]),
     "^state_cotangent must have shape"),
])
def test_bad_arguments_are_named(call, match):
    args, cotangents, _ = problem(20, True)
    with pytest.raises(ValueError, match=match):
        call(args, cotangents)
