"""huggingface/transformers' MoE routing and losses, ported to torch float64 for the tests (the
originals compute the router in float32). Written from the originals' semantics, not copied:

- models/mixtral/modeling_mixtral.py MixtralSparseMoeBlock's routing: softmax over the experts,
  topk, renormalised (``routing_weights /= routing_weights.sum(-1)``);
  ``load_balancing_loss_func``: one-hot (N, k, E) of the top-k, means over tokens, summed over
  slots and experts against the mean probabilities, times E.
- models/switch_transformers/modeling_switch_transformers.py (v4) SwitchTransformersTop1Router:
  argmax of the softmax, ``token_priority = cumsum(one_hot, dim=-2)`` over the sequence, kept
  while ``token_priority <= expert_capacity``, router_probs the max probability;
  ``load_balancing_loss_func``: one-hot max over the top-k axis, means per group,
  mean(f * P) * E^2; ``router_z_loss_func``: sum(logsumexp^2) / (groups * tokens).
"""

import torch
import torch.nn.functional as F


def mixtral_routing(router_logits, top_k):
    routing_weights = F.softmax(router_logits, dim=-1, dtype=torch.float64)
    routing_weights, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    routing_weights = routing_weights / routing_weights.sum(dim=-1, keepdim=True)
    return selected_experts, routing_weights


def mixtral_load_balancing_loss(gate_logits, num_experts, top_k):
    routing_weights = F.softmax(gate_logits.reshape(-1, num_experts), dim=-1)
    _, selected_experts = torch.topk(routing_weights, top_k, dim=-1)
    expert_mask = F.one_hot(selected_experts, num_experts).double()
    tokens_per_expert = expert_mask.mean(dim=0)
    router_prob_per_expert = routing_weights.mean(dim=0)
    return (tokens_per_expert * router_prob_per_expert.unsqueeze(0)).sum() * num_experts


def switch_top1_router(router_logits, expert_capacity):
    router_probs = F.softmax(router_logits, dim=-1, dtype=torch.float64)
    expert_index = torch.argmax(router_probs, dim=-1)
    expert_index = F.one_hot(expert_index, num_classes=router_logits.shape[-1])
    token_priority = torch.cumsum(expert_index, dim=-2)
    expert_index = expert_index * (token_priority <= expert_capacity)
    router_probs = torch.max(router_probs, dim=-1).values.unsqueeze(-1)
    return expert_index, router_probs


def switch_load_balancing_loss(router_probs, expert_indices):
    num_experts = router_probs.shape[-1]
    if expert_indices.ndim == 2:
        expert_indices = expert_indices.unsqueeze(2)
    expert_mask = F.one_hot(expert_indices, num_experts).double()
    expert_mask = torch.max(expert_mask, dim=-2).values
    tokens_per_group_and_expert = expert_mask.mean(dim=-2)
    router_prob_per_group_and_expert = router_probs.mean(dim=-2)
    return (tokens_per_group_and_expert * router_prob_per_group_and_expert).mean() * num_experts ** 2


def router_z_loss(router_logits):
    num_groups, tokens_per_group, _ = router_logits.shape
    log_z = torch.logsumexp(router_logits, dim=-1)
    return (log_z ** 2).sum() / (num_groups * tokens_per_group)
