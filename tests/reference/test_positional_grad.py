"""RoPE's gradient (``rope_vjp``: the cotangent rotated by -theta) against central differences
and torch autograd, both pairings, positions per batch or shared; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference.positional import apply_rope, rope_vjp

pytest.importorskip("torch")


def problem(seed, per_batch):
    rng = np.random.default_rng(seed)
    B, T, H, D = 2, 5, 3, 8
    positions = rng.integers(0, 4096, (B, T)).astype(float) if per_batch else None
    args = dict(x=rng.standard_normal((B, T, H, D)), positions=positions, base=500.0, interpolation_factor=2.0)
    return args, (rng.standard_normal((B, T, H, D)),), rng


@pytest.mark.parametrize("pairing", ["half", "interleaved"])
@pytest.mark.parametrize("per_batch", [False, True])
def test_rope_vjp_matches_central_differences_and_autograd(pairing, per_batch):
    from kernels.torch_rope import torch_rope

    args, cotangents, rng = problem(3, per_batch)
    grads = rope_vjp(**args, cotangent=cotangents[0], pairing=pairing)
    assert_central_differences(lambda **a: apply_rope(**a, pairing=pairing), args, cotangents, grads, ("x",), rng)
    assert_matches_autograd(torch_rope[pairing], args, cotangents, grads, ("x",), atol=1e-13)


def test_a_cotangent_of_the_wrong_shape_is_named():
    args, cotangents, _ = problem(0, False)
    with pytest.raises(ValueError, match="cotangent must have shape"):
        rope_vjp(**args, cotangent=cotangents[0][:, :-1])
