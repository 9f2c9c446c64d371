"""MoE candidates a user would write, checked through ``equiv.check``: routers ranking their own
rounded probabilities (ties the tie rule cannot settle within rounding are not false alarms),
a dispatch layer in float32 and bfloat16 and its backward, the token-major queue rejected, and a
layer whose output is a constant zero when every slot drops (its gradient is zero, not an error)."""

import pytest

from seqcheck import equiv

pytest.importorskip("torch")

from kernels import torch_moe  # noqa: E402


@pytest.mark.parametrize("candidate, key", [(torch_moe.torch_topk_by_probabilities, "moe.routing.topk"),
                                            (torch_moe.torch_expert_choice, "moe.routing.expert_choice")])
@pytest.mark.parametrize("seed", range(2))
def test_routers_ranking_their_rounded_probabilities_pass(candidate, key, seed):
    result = equiv.check(candidate, key, backend="torch", seed=seed, max_examples=200)
    assert result.passed, str(result)


@pytest.mark.parametrize("dtype", [None, "float32", "bfloat16"])
def test_a_torch_dispatch_layer_passes(dtype):
    result = equiv.check(torch_moe.torch_moe_dispatch, "moe.layer.dispatch", backend="torch", dtype=dtype, seed=0,
                         max_examples=50)
    assert result.passed, str(result)


@pytest.mark.parametrize("dtype", [None, "float32"])
def test_a_torch_dispatch_backward_passes(dtype):
    result = equiv.check(torch_moe.torch_moe_dispatch, "moe.layer.per_token", backend="torch", grad=True, dtype=dtype,
                         seed=0, max_examples=30)
    assert result.passed, str(result)


def test_a_token_major_queue_is_rejected():
    result = equiv.check(torch_moe.torch_moe_token_major_priority, "moe.layer.dispatch", backend="torch", seed=0,
                         max_examples=100)
    assert result.status == "failed"


def test_a_constant_zero_output_has_a_zero_gradient():
    result = equiv.check(torch_moe.torch_moe_skipping_empty_experts, "moe.layer.per_token", backend="torch",
                         grad=True, seed=0, max_examples=40)
    assert result.passed, str(result)
