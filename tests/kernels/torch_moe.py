"""The MoE layer in torch as grouped-matmul code writes it (autograd differentiates it), and one
with a capacity bug.

- ``torch_moe_dispatch``: each slot's queue position by a cumulative count of one-hot rows in
  priority order (slot-major), the kept slots sorted by expert (``argsort(stable=True)``), one
  SwiGLU per expert over its rows (``index_select``), the outputs scaled by their gates and
  added back onto their tokens with ``index_add_``, as megablocks / vLLM's fused_moe reference do.
- ``torch_moe_token_major_priority``: the queue in token-major order (every slot of token 0, then
  token 1: DeepSpeed's topkgating), not GShard's slot-major one: other tokens drop under capacity.
"""

import torch
import torch.nn.functional as F


def _dispatch(x, expert_index, gate, w_gate, w_up, w_down, capacity, slot_major=True):
    B, T, k = expert_index.shape
    E = w_gate.shape[0]
    index = torch.as_tensor(expert_index)
    order = index.transpose(1, 2).reshape(B, k * T) if slot_major else index.reshape(B, T * k)
    one_hot = F.one_hot(order.clamp(min=0), E) * (order >= 0)[..., None]
    location = ((one_hot.cumsum(dim=1) - 1) * one_hot).sum(dim=-1)
    kept = order >= 0
    if capacity is not None:
        kept &= location < capacity
    b, s = kept.nonzero(as_tuple=True)
    j, t = (s // T, s % T) if slot_major else (s % k, s // k)
    experts = order[b, s]
    sort = torch.argsort(experts, stable=True)
    b, t, j, experts = b[sort], t[sort], j[sort], experts[sort]
    rows = x[b, t]
    out = torch.zeros_like(rows)
    for e in range(E):
        mine = (experts == e).nonzero(as_tuple=True)[0]
        r = rows.index_select(0, mine)
        out = out.index_add(0, mine, (F.silu(r @ w_gate[e]) * (r @ w_up[e])) @ w_down[e])
    flat = torch.zeros(B * T, x.shape[-1], dtype=x.dtype)
    flat = flat.index_add(0, b * T + t, gate[b, t, j][:, None] * out)
    return flat.reshape(x.shape)


def torch_moe_dispatch(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    return _dispatch(x, expert_index, gate, w_gate, w_up, w_down, capacity)


def torch_moe_token_major_priority(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    return _dispatch(x, expert_index, gate, w_gate, w_up, w_down, capacity, slot_major=False)


def torch_topk_by_probabilities(logits, *, top_k, normalize=True):
    """Top-k ranked by torch's rounded probabilities (a stable descending sort), as routers do:
    where probabilities underflow to 0 or round equal, ties fall to the lower index among them."""
    probs = torch.softmax(logits, dim=-1)
    gate, index = torch.sort(probs, dim=-1, descending=True, stable=True)
    gate, index = gate[..., :top_k], index[..., :top_k]
    return index, gate / gate.sum(dim=-1, keepdim=True) if normalize else gate


def torch_expert_choice(logits, *, capacity):
    """Expert choice on torch's softmax: each expert's top tokens by a stable descending sort."""
    scores = torch.softmax(logits, dim=-1)
    B, T, E = scores.shape
    order = torch.argsort(-scores.transpose(1, 2), dim=-1, stable=True)[..., :capacity]
    chosen = torch.zeros(B, E, T, dtype=torch.bool).scatter_(-1, order, True).transpose(1, 2)
    return torch.where(chosen, torch.arange(E), -1), torch.where(chosen, scores, torch.zeros(()))


def torch_moe_skipping_empty_experts(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The dispatch form that returns a fresh zero tensor (no graph) when every slot is dropped."""
    if capacity == 0:
        return torch.zeros_like(x.detach())
    return torch_moe_dispatch(x, expert_index, gate, w_gate, w_up, w_down, capacity=capacity)
