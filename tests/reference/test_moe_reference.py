"""The MoE references (reference/moe) against Hugging Face's routing and losses (ported to torch
float64, tests/peers/hf_moe.py), the capacity conventions of the originals, and the gradient
oracle against central differences and torch autograd."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference import moe

torch = pytest.importorskip("torch")


def weights(rng, E, D, F):
    return dict(w_gate=rng.standard_normal((E, D, F)), w_up=rng.standard_normal((E, D, F)),
                w_down=rng.standard_normal((E, F, D)))


@pytest.mark.parametrize("seed", range(4))
def test_topk_routing_and_mixtral_loss_match_hf_mixtral(seed):
    from peers.hf_moe import mixtral_load_balancing_loss, mixtral_routing

    rng = np.random.default_rng(seed)
    logits, k = rng.standard_normal((2, 9, 6)), 1 + seed % 3
    experts, weights_ = mixtral_routing(torch.tensor(logits), k)
    index, gate = moe.topk_routing(logits, top_k=k)
    np.testing.assert_array_equal(index, experts.numpy())
    np.testing.assert_allclose(gate, weights_.numpy(), rtol=1e-15, atol=1e-16)
    ours = moe.load_balancing_loss(logits, index, variant="mixtral")
    assert ours == pytest.approx(float(mixtral_load_balancing_loss(torch.tensor(logits), 6, k)), rel=1e-14)


@pytest.mark.parametrize("seed", range(4))
def test_switch_routing_and_losses_match_hf_switch(seed):
    from peers.hf_moe import router_z_loss, switch_load_balancing_loss, switch_top1_router

    rng = np.random.default_rng(seed)
    logits, capacity = rng.standard_normal((3, 11, 4)), seed + 1
    mask, probs = switch_top1_router(torch.tensor(logits), capacity)
    index, gate = moe.switch_routing(logits, capacity=capacity)
    kept = mask.numpy().sum(axis=-1) == 1
    np.testing.assert_array_equal(index[..., 0], np.where(kept, mask.numpy().argmax(axis=-1), -1))
    np.testing.assert_allclose(gate[..., 0], np.where(kept, probs.numpy()[..., 0], 0.0), rtol=1e-15)
    choices, _ = moe.topk_routing(logits, top_k=1, normalize=False)
    hf = switch_load_balancing_loss(torch.softmax(torch.tensor(logits), -1), torch.tensor(choices[..., 0]))
    assert moe.load_balancing_loss(logits, choices, variant="hf_switch") == pytest.approx(float(hf), rel=1e-14)
    assert moe.router_z_loss(logits) == pytest.approx(float(router_z_loss(torch.tensor(logits))), rel=1e-14)


def test_the_variants_differ_as_documented():
    """Mixtral's is k times the paper's; HF Switch's equals the paper's for one group and top-1."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 7, 5))
    index, _ = moe.topk_routing(logits, top_k=3)
    paper, mixtral = (moe.load_balancing_loss(logits, index, variant=v) for v in ("switch", "mixtral"))
    assert mixtral == pytest.approx(3 * paper, rel=1e-14)
    top1, _ = moe.topk_routing(logits[:1], top_k=1)
    assert (moe.load_balancing_loss(logits[:1], top1, variant="hf_switch")
            == pytest.approx(moe.load_balancing_loss(logits[:1], top1), rel=1e-14))


def test_the_balance_loss_can_fall_below_one_for_top1():
    """Not >= 1 in general: three tokens at an exact tie go to expert 0, one certain token to 1."""
    logits = np.array([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [-50.0, 50.0]]])
    index, _ = moe.topk_routing(logits, top_k=1)
    assert moe.load_balancing_loss(logits, index) == pytest.approx(0.875, rel=1e-12)


def test_capacity_conventions():
    """flaxformer rounds (halves to even), as HF's Switch port; min_capacity a floor."""
    assert moe.switch_capacity(64, 8, 1.25, 4) == 10
    assert moe.switch_capacity(20, 8, 1.0, 0) == 2  # round(2.5) = 2
    assert moe.switch_capacity(28, 8, 1.0, 0) == 4  # round(3.5) = 4
    assert moe.switch_capacity(8, 8, 1.0, 4) == 4


def test_capacity_keeps_first_choices_before_second_ones():
    """GShard's priority: every token's first choice, left to right, before any second choice."""
    index = np.array([[[1, 0], [0, 1], [1, 0]]])
    kept, gate = moe.apply_capacity(index, np.ones((1, 3, 2)), 2)
    np.testing.assert_array_equal(kept, [[[1, 0], [0, -1], [1, -1]]])
    np.testing.assert_array_equal(gate, [[[1, 1], [1, 0], [1, 0]]])


def test_expert_choice_gives_every_expert_its_capacity():
    rng = np.random.default_rng(0)
    index, gate = moe.expert_choice_routing(rng.standard_normal((2, 9, 4)), capacity=3)
    assert ((index >= 0).sum(axis=1) == 3).all()
    assert (gate[index < 0] == 0).all()


def test_dispatch_equals_the_loop_when_every_token_drops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 5, 3))
    index, gate = moe.topk_routing(rng.standard_normal((1, 5, 4)), top_k=2)
    for fn in (moe.moe_per_token, moe.moe_dispatch):
        assert (fn(x, index, gate, **weights(rng, 4, 3, 2), capacity=0) == 0).all()


def _torch_moe(x, expert_index, gate, w_gate, w_up, w_down, capacity=None):
    """The definition in torch: a loop over tokens and kept slots."""
    import torch.nn.functional as F

    index, _ = moe.apply_capacity(expert_index, np.zeros(np.shape(expert_index)), capacity)
    rows = []
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            y = torch.zeros(x.shape[-1], dtype=x.dtype)
            for j, e in enumerate(index[b, t]):
                if e >= 0:
                    y = y + gate[b, t, j] * ((F.silu(x[b, t] @ w_gate[e]) * (x[b, t] @ w_up[e])) @ w_down[e])
            rows.append(y)
    return torch.stack(rows).reshape(x.shape)


@pytest.mark.parametrize("capacity", [None, 0, 1, 3])
@pytest.mark.parametrize("seed", range(2))
def test_moe_vjp_matches_central_differences_and_autograd(capacity, seed):
    rng = np.random.default_rng(seed)
    B, T, D, F, E, k = 2, 5, 3, 4, 3, 2
    index, gate = moe.topk_routing(rng.standard_normal((B, T, E)), top_k=k)
    args = dict(x=rng.standard_normal((B, T, D)), expert_index=index, gate=gate, **weights(rng, E, D, F),
                capacity=capacity)
    cotangent = rng.standard_normal((B, T, D))
    names = ("x", "gate", "w_gate", "w_up", "w_down")
    for vjp in (moe.moe_vjp, moe.moe_dispatch_vjp):
        grads = vjp(**args, cotangent=cotangent)
        assert_central_differences(moe.moe_per_token, args, (cotangent,), grads, names, rng)
        if capacity != 0:  # with every slot dropped torch has no gradient to compare (all zero here)
            assert_matches_autograd(_torch_moe, args, (cotangent,), grads, names)
        else:
            assert not any(np.any(g) for g in grads.values())
