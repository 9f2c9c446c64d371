"""GLA's gradient (reference/gla/grad.py) against central differences in random directions and
torch autograd of the recurrence, per key channel and per head, through resets; the chunked
backward against it at every chunk size; bad input."""

import numpy as np
import pytest

from seqcheck.reference.gla import gla_chunked_vjp, gla_recurrent, gla_vjp

torch = pytest.importorskip("torch")

from kernels.torch_gla import torch_gla  # noqa: E402


def problem(seed, per_head=False, resets=False, B=2, T=7, H=2, K=3, V=4):
    rng = np.random.default_rng(seed)
    g_shape = (B, T, H) if per_head else (B, T, H, K)
    g = -np.exp(rng.standard_normal(g_shape))
    if resets:
        g = np.where(rng.random(g_shape) < 0.2, -np.inf, g)
    args = dict(q=rng.standard_normal((B, T, H, K)), k=rng.standard_normal((B, T, H, K)),
                v=rng.standard_normal((B, T, H, V)), g=g, initial_state=rng.standard_normal((B, H, K, V)), scale=0.7)
    cotangents = dict(cotangent=rng.standard_normal((B, T, H, V)), state_cotangent=rng.standard_normal((B, H, K, V)))
    return args, cotangents, rng


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_vjp_matches_central_differences(per_head, seed):
    args, cotangents, rng = problem(seed, per_head)
    grads = gla_vjp(**args, **cotangents)
    names = ("q", "k", "v", "g", "initial_state")
    direction = {n: rng.standard_normal(np.shape(args[n])) for n in names}
    h = 1e-6

    def objective(sign):
        shifted = {**args, **{n: args[n] + sign * h * direction[n] for n in names}}
        out, state = gla_recurrent(**shifted, return_state=True)
        return (out * cotangents["cotangent"]).sum() + (state * cotangents["state_cotangent"]).sum()

    numeric = (objective(1) - objective(-1)) / (2 * h)
    analytic = sum((grads[n] * direction[n]).sum() for n in names)
    assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic))


@pytest.mark.parametrize("per_head, resets", [(False, False), (True, False), (False, True)])
def test_vjp_matches_torch_autograd(per_head, resets):
    args, cotangents, _ = problem(10, per_head, resets)
    tensors = {n: torch.from_numpy(np.asarray(args[n]).copy()).requires_grad_(True)
               for n in ("q", "k", "v", "g", "initial_state")}
    out, state = torch_gla(**tensors, scale=args["scale"], return_state=True)
    ((out * torch.from_numpy(cotangents["cotangent"])).sum()
     + (state * torch.from_numpy(cotangents["state_cotangent"])).sum()).backward()
    grads = gla_vjp(**args, **cotangents)
    for n, t in tensors.items():
        want = np.nan_to_num(t.grad.numpy()) if n == "g" else t.grad.numpy()  # torch: d exp(x)/dx at -inf is 0
        assert np.isfinite(grads[n]).all()
        np.testing.assert_allclose(grads[n], want, rtol=0, atol=1e-12)


def test_without_a_state_cotangent_the_state_is_not_an_output():
    args, cotangents, _ = problem(20)
    zero = gla_vjp(**args, cotangent=cotangents["cotangent"], state_cotangent=np.zeros_like(cotangents["state_cotangent"]))
    none = gla_vjp(**args, cotangent=cotangents["cotangent"])
    for n in zero:
        np.testing.assert_array_equal(zero[n], none[n])


@pytest.mark.parametrize("call, match", [
    (lambda a, c: gla_vjp(**a, cotangent=c["cotangent"][:, :2]), "^cotangent must have shape"),
    (lambda a, c: gla_vjp(**a, cotangent=c["cotangent"], state_cotangent=c["state_cotangent"][..., :1]),
     "^state_cotangent must have shape"),
])
def test_bad_arguments_are_named(call, match):
    args, cotangents, _ = problem(30)
    with pytest.raises(ValueError, match=match):
        call(args, cotangents)


@pytest.mark.parametrize("per_head", [False, True])
@pytest.mark.parametrize("resets", [False, True])
def test_the_chunked_backward_equals_the_recurrence_at_every_chunk_size(per_head, resets):
    args, cotangents, _ = problem(4, per_head, resets, T=9)
    want = gla_vjp(**args, **cotangents)
    for chunk_size in range(1, 11):
        got = gla_chunked_vjp(**args, **cotangents, chunk_size=chunk_size)
        assert sorted(got) == sorted(want)
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-12, err_msg=f"{name} {chunk_size}")
    assert np.isfinite(got["g"]).all()
