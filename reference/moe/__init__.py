"""Float64 references for Mixture-of-Experts layers: routers (softmax top-k, noisy top-k, Switch
top-1 with capacity, expert choice), their auxiliary losses, the MoE layer as the per-token
definition and as the dispatch (grouped-matmul) form kernels compute, with VJPs, and CoLT5's
conditional feed-forward and attention."""

from .colt5 import colt5_attention, colt5_ffn, multi_head, routed_mask
from .grad import moe_dispatch_vjp, moe_vjp, moe_vjp_in_dtype
from .layer import expert_ffn, moe_dispatch, moe_in_dtype, moe_per_token
from .losses import importance_loss, load_balancing_loss, load_loss, router_z_loss, smooth_load
from .routing import (apply_capacity, dense_gates, expert_choice_routing, noisy_logits, noisy_topk_routing,
                      rank_experts, switch_capacity, switch_routing, topk_routing)

__all__ = ["apply_capacity", "colt5_attention", "colt5_ffn", "dense_gates", "expert_choice_routing", "expert_ffn", "importance_loss",
           "load_balancing_loss", "load_loss", "moe_dispatch", "moe_dispatch_vjp", "moe_in_dtype", "moe_per_token",
           "moe_vjp", "moe_vjp_in_dtype", "multi_head", "noisy_logits", "noisy_topk_routing", "rank_experts", "routed_mask", "router_z_loss", "smooth_load", "switch_capacity",
           "switch_routing", "topk_routing"]
