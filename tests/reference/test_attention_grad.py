"""The attention gradients (reference/attention/grad.py): the VJP against central finite differences
in random directions (JAX's check_vjp: <J^T c, t> = <J t, c>) and against torch autograd of the
definition written in float64 torch (tests/kernels/torch_attention.py); FlashAttention-2's tiled backward against the VJP at
every block size; fully masked rows; bad input."""

import numpy as np
import pytest

from seqcheck.reference.attention import (flash_attention, flash_attention_backward, softmax_attention,
                                          softmax_attention_vjp)

torch = pytest.importorskip("torch")

from kernels.torch_attention import torch_attention  # noqa: E402  (the definition written in torch)

OPTIONS = {
    "plain": {},
    "causal": {"causal": True},
    "local": {"causal": True, "window": (2, 0)},
    "window both sides": {"window": (1, 2)},
    "softcap": {"softcap": 1.5},
    "alibi": {"alibi_slopes": np.array([0.5, 0.25, 0.125, 0.0625])},
    "everything": {"causal": True, "softcap": 2.0, "alibi_slopes": np.full((2, 4), 0.3), "scale": 0.7},
}


def problem(seed, B=2, Tq=5, Tk=7, H=4, Hkv=2, D=3, Dv=2, padded=False):
    rng = np.random.default_rng(seed)
    args = dict(q=rng.standard_normal((B, Tq, H, D)), k=rng.standard_normal((B, Tk, Hkv, D)),
                v=rng.standard_normal((B, Tk, Hkv, Dv)))
    if padded:
        args["key_padding_mask"] = rng.random((B, Tk)) > 0.3
    cotangents = dict(cotangent=rng.standard_normal((B, Tq, H, Dv)), lse_cotangent=rng.standard_normal((B, Tq, H)))
    return args, cotangents, rng


def objective(args, options, cotangents):
    """<out, dO> + <lse, dL> (rows without a visible key contribute 0)."""
    out, lse = softmax_attention(**args, **options, return_lse=True)
    lse_term = np.where(np.isfinite(lse), lse * cotangents["lse_cotangent"], 0.0)
    return (out * cotangents["cotangent"]).sum() + lse_term.sum()


@pytest.mark.parametrize("name", sorted(OPTIONS))
@pytest.mark.parametrize("seed", range(3))
def test_vjp_matches_central_differences_in_a_random_direction(name, seed):
    args, cotangents, rng = problem(seed, padded=seed == 2)
    options = OPTIONS[name]
    grads = softmax_attention_vjp(**args, **options, **cotangents)
    direction = {n: rng.standard_normal(a.shape) for n, a in args.items() if n in ("q", "k", "v")}
    h = 1e-6

    def shifted(sign):
        return {**args, **{n: args[n] + sign * h * t for n, t in direction.items()}}

    numeric = (objective(shifted(1), options, cotangents) - objective(shifted(-1), options, cotangents)) / (2 * h)
    analytic = sum((grads[n] * t).sum() for n, t in direction.items())
    assert abs(numeric - analytic) <= 1e-7 * max(1.0, abs(analytic))


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_vjp_matches_torch_autograd_of_the_definition(name):
    args, cotangents, _ = problem(10, padded=True)
    options = OPTIONS[name]
    tensors = {n: torch.from_numpy(a.copy()).requires_grad_(n in ("q", "k", "v")) for n, a in args.items()
               if n in ("q", "k", "v")}
    out, lse = torch_attention(**tensors, **options, key_padding_mask=args.get("key_padding_mask"), return_lse=True)
    lse_cotangent = torch.from_numpy(cotangents["lse_cotangent"])
    objective = (out * torch.from_numpy(cotangents["cotangent"])).sum() + torch.where(
        torch.isfinite(lse), lse * lse_cotangent, 0.0).sum()
    objective.backward()
    grads = softmax_attention_vjp(**args, **options, **cotangents)
    for n, t in tensors.items():
        np.testing.assert_allclose(grads[n], t.grad.numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("blocks", [(1, 1), (2, 3), (4, 4), (5, 7), (64, 64)])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_flash_backward_equals_the_vjp_at_every_block_size(blocks, name):
    args, cotangents, _ = problem(20, Tq=9, Tk=7, padded=True)
    options = OPTIONS[name]
    out, lse = flash_attention(**args, **options, return_lse=True)
    want = softmax_attention_vjp(**args, **options, **cotangents)
    got = flash_attention_backward(**args, out=out, lse=lse, **options, **cotangents, block_q=blocks[0],
                                   block_k=blocks[1])
    for n in ("q", "k", "v"):
        np.testing.assert_allclose(got[n], want[n], rtol=0, atol=1e-13)


def test_fully_masked_rows_get_zero_gradients_and_no_nan():
    args, cotangents, _ = problem(30, Tq=6, Tk=3)  # causal, Tq > Tk: bottom-right leaves rows without keys
    args["key_padding_mask"] = np.array([[True, True, True], [False, False, False]])
    grads = softmax_attention_vjp(**args, causal=True, **cotangents)
    assert all(np.isfinite(g).all() for g in grads.values())
    assert (grads["q"][1] == 0).all() and (grads["k"][1] == 0).all() and (grads["v"][1] == 0).all()
    assert (grads["q"][0, :3] == 0).all()  # rows 0..2 see no key (i + Tk - Tq < 0)


def test_without_an_lse_cotangent_the_lse_is_not_an_output():
    args, cotangents, _ = problem(40)
    with_zero = softmax_attention_vjp(**args, cotangent=cotangents["cotangent"],
                                      lse_cotangent=np.zeros_like(cotangents["lse_cotangent"]))
    without = softmax_attention_vjp(**args, cotangent=cotangents["cotangent"])
    for n in ("q", "k", "v"):
        np.testing.assert_array_equal(with_zero[n], without[n])


@pytest.mark.parametrize("call, match", [
    (lambda a, c: softmax_attention_vjp(**a, cotangent=c["cotangent"][:, :2]), "^cotangent must have shape"),
    (lambda a, c: softmax_attention_vjp(**a, cotangent=c["cotangent"], lse_cotangent=c["lse_cotangent"][..., :1]),
     "^lse_cotangent must have shape"),
    (lambda a, c: flash_attention_backward(**a, out=np.zeros(3), lse=np.zeros(3), cotangent=c["cotangent"]),
     "^out must have shape"),
    (lambda a, c: flash_attention_backward(**a, out=np.zeros(c["cotangent"].shape), lse=np.zeros(3),
                                           cotangent=c["cotangent"]), "^lse must have shape"),
    (lambda a, c: flash_attention_backward(**a, out=np.zeros(c["cotangent"].shape), lse=np.zeros(3),
                                           cotangent=c["cotangent"], block_q=0), "^block_q"),
])
def test_bad_arguments_are_named(call, match):
    args, cotangents, _ = problem(50)
    with pytest.raises(ValueError, match=match):
        call(args, cotangents)
