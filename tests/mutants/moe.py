"""Deliberately wrong MoE routers, layers and losses: each must be rejected by a claim. Each is
one bug of the kind MoE code has shipped: capacity never enforced because a cumulative count ran
over a singleton axis (huggingface/transformers PR #48421), softmax applied twice before the
load-balancing loss (#45120), the z-loss fed probabilities, gates dropped in the scatter, outputs
scattered back with the sort permutation instead of its inverse, dx overwritten where a token
has several experts, the other originals' conventions (torch's unbiased variance, softmax over
tokens for expert choice, softmax over all experts before top-k)."""

import numpy as np
from scipy.special import logsumexp, softmax, softplus
from scipy.stats import norm

from seqcheck.reference import moe
from seqcheck.reference.moe.layer import _prepare, dispatch_plan, expert_ffn
from seqcheck.reference.moe.losses import load_balancing_loss
from seqcheck.reference.moe.routing import noisy_logits, rank_experts


def _grouped(x, index, gate, w_gate, w_up, w_down, capacity, *, weights_of=None):
    """The dispatch form's steps: (b, t, j) of the kept slots in expert order, and their outputs."""
    (b, t, j), experts = dispatch_plan(index, capacity)
    out = np.empty((len(b), x.shape[-1]))
    starts = np.searchsorted(experts, np.arange(w_gate.shape[0] + 1))
    for e in range(w_gate.shape[0]):
        w = e if weights_of is None else weights_of(e, experts)
        group = slice(starts[e], starts[e + 1])
        out[group] = expert_ffn(x[b[group], t[group]], w_gate[w], w_up[w], w_down[w])
    return (b, t, j), out


def dispatch_with_capacity_never_enforced(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """Queue positions by a cumsum over a singleton axis (one_hot of shape (N, 1, E) summed over
    its axis -2, PR #48421): every position is 1 <= capacity, so no token is ever dropped."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    return moe.moe_dispatch(x, index, gate, w_gate, w_up, w_down, capacity=None if capacity is None else 10**9)


def dispatch_without_gates(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The experts' outputs scattered back without their gate weights."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    (b, t, _), out = _grouped(x, index, gate, w_gate, w_up, w_down, capacity)
    y = np.zeros_like(x)
    np.add.at(y, (b, t), out)
    return y


def dispatch_unpermuted_by_the_permutation(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The expert-ordered outputs written back to the slots in priority order (the sort's
    permutation applied where its inverse belongs): row i goes to the i-th kept slot."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    (b, t, j), out = _grouped(x, index, gate, w_gate, w_up, w_down, capacity)
    order = np.lexsort((t, j, b))  # the kept slots in priority order per batch row
    y = np.zeros_like(x)
    np.add.at(y, (b[order], t[order]), gate[b[order], t[order], j[order]][:, None] * out)
    return y


def dispatch_weights_by_group_number(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The n-th non-empty expert group multiplied by expert n's weights (offsets from a bincount
    that skips empty experts)."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    (b, t, j), out = _grouped(x, index, gate, w_gate, w_up, w_down, capacity,
                              weights_of=lambda e, experts: int(np.searchsorted(np.unique(experts), e)))
    y = np.zeros_like(x)
    np.add.at(y, (b, t), gate[b, t, j][:, None] * out)
    return y


def dispatch_vjp_overwriting_dx(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None, cotangent):
    """dx written with index assignment (index_put, not index_add): a token routed to several
    experts keeps one expert's dx."""
    grads = moe.moe_dispatch_vjp(x, expert_index, gate, w_gate, w_up, w_down, capacity=capacity, cotangent=cotangent)
    single = moe.moe_dispatch_vjp(x, np.where(np.arange(np.shape(expert_index)[2]) == 0, expert_index, -1), gate,
                                  w_gate, w_up, w_down, capacity=capacity, cotangent=cotangent)
    return {**grads, "x": single["x"]}


def switch_with_priority_over_a_singleton_axis(logits, *, capacity):
    """Switch whose token priority is a cumsum over a singleton axis (PR #48421): never drops."""
    return moe.topk_routing(logits, top_k=1, normalize=False)


def topk_ties_to_the_higher_index(logits, *, top_k, normalize=True):
    """Top-k whose ties go to the higher expert index (a descending argsort of the reversed row)."""
    probs = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    E = probs.shape[-1]
    index = E - 1 - rank_experts(probs[..., ::-1])[..., :top_k]
    gate = np.take_along_axis(probs, index, axis=-1)
    return index, gate / gate.sum(axis=-1, keepdims=True) if normalize else gate


def noisy_topk_softmax_over_all_experts(clean_logits, noise_logits, noise, *, top_k):
    """The top k of the softmax over all E noisy logits, not renormalised (Qwen2-MoE's
    ``norm_topk_prob=False`` where the paper renormalises)."""
    probs = softmax(noisy_logits(clean_logits, noise_logits, noise), axis=-1)
    index = rank_experts(probs)[..., :top_k]
    return index, np.take_along_axis(probs, index, axis=-1)


def noisy_topk_with_noise_epsilon(clean_logits, noise_logits, noise, *, top_k):
    """davidmrau/mixture-of-experts: the noise's scale softplus(noise_logits) + 1e-2."""
    H = np.asarray(clean_logits) + np.asarray(noise) * (softplus(np.asarray(noise_logits)) + 1e-2)
    return moe.topk_routing(H, top_k=top_k)


def expert_choice_softmax_over_tokens(logits, *, capacity):
    """Expert choice with the scores a softmax over the tokens (mesh tensorflow's
    ``_expert_selection_gating``), not over the experts."""
    scores = softmax(np.asarray(logits, dtype=np.float64), axis=1)
    B, T, E = scores.shape
    chosen = np.zeros((B, E, T), dtype=bool)
    np.put_along_axis(chosen, rank_experts(np.swapaxes(scores, 1, 2))[..., :capacity], True, axis=-1)
    chosen = np.swapaxes(chosen, 1, 2)
    return np.where(chosen, np.arange(E), -1), np.where(chosen, scores, 0.0)


def balance_hf_switch_times_experts_once(logits, expert_index, *, variant="switch"):
    """HF Switch's per-group loss scaled by E, not E^2 (its mean over the experts left as a mean)."""
    value = load_balancing_loss(logits, expert_index, variant=variant)
    return value / np.shape(logits)[2] if variant == "hf_switch" else value


def balance_with_softmax_twice(logits, expert_index, *, variant="switch"):
    """The router returns softmax(logits) and the loss applies softmax again (#45120)."""
    return load_balancing_loss(softmax(np.asarray(logits, dtype=np.float64), axis=-1), expert_index, variant=variant)


def balance_without_the_expert_count(logits, expert_index, *, variant="switch"):
    """sum_i f_i P_i without the factor N: 1/N under uniform routing."""
    return load_balancing_loss(logits, expert_index, variant=variant) / np.shape(logits)[2]


def z_loss_of_probabilities(logits):
    """The z-loss of the router's probabilities (PR #48421 overwrote router_logits with them)."""
    probs = softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    return float((logsumexp(probs, axis=-1) ** 2).mean()) if probs.size else 0.0


def importance_with_unbiased_variance(expert_index, gate, *, experts):
    """davidmrau's cv_squared: torch's var (unbiased, N - 1) over mean^2 + 1e-10."""
    importance = moe.dense_gates(expert_index, gate, experts).sum(axis=(0, 1))
    return float(importance.var(ddof=1) / (importance.mean() ** 2 + 1e-10)) if experts > 1 else 0.0


def load_with_the_kth_threshold_for_every_expert(clean_logits, noise_logits, noise, *, top_k):
    """Every expert compared with the k-th largest noisy logit, its own among them: the k-th
    expert's P is Phi(0) = 1/2 instead of the probability that it stays in the top k."""
    H = noisy_logits(clean_logits, noise_logits, noise)
    if top_k == H.shape[2]:
        return 0.0
    kth = np.take_along_axis(H, rank_experts(H), axis=-1)[..., top_k - 1:top_k]
    load = norm.cdf((np.asarray(clean_logits) - kth) / softplus(np.asarray(noise_logits))).sum(axis=(0, 1))
    return float(load.var() / load.mean() ** 2) if load.mean() else 0.0


def _ffn_rows(x, w_gate, w_up, w_down):
    return expert_ffn(x.reshape(-1, x.shape[-1]), w_gate, w_up, w_down).reshape(x.shape)


def colt5_ffn_routed_over_the_whole_batch(x, scores, light_gate, light_up, light_down, heavy_gate, heavy_up,
                                          heavy_down, *, k):
    """The top B k scores of the flattened batch routed, not the top k of each row."""
    B, T, _ = x.shape
    flat = np.zeros(B * T, dtype=bool)
    flat[np.argsort(-scores.ravel(), kind="stable")[:B * k]] = True
    routed = flat.reshape(B, T)
    heavy = _ffn_rows(x, heavy_gate, heavy_up, heavy_down)
    return _ffn_rows(x, light_gate, light_up, light_down) + np.where(routed, scores, 0.0)[..., None] * heavy


def colt5_ffn_heavy_unscaled(x, scores, light_gate, light_up, light_down, heavy_gate, heavy_up, heavy_down, *, k):
    """The heavy branch's output added without its router score."""
    routed = moe.routed_mask(scores, k)
    return (_ffn_rows(x, light_gate, light_up, light_down)
            + routed[..., None] * _ffn_rows(x, heavy_gate, heavy_up, heavy_down))


def colt5_attention_over_every_key(x, q_scores, kv_scores, light_qkv, light_out, heavy_qkv, heavy_out, *, window,
                                   k_q, k_kv):
    """The routed queries attend to every key, the kv routing forgotten."""
    return moe.colt5_attention(x, q_scores, kv_scores, light_qkv, light_out, heavy_qkv, heavy_out, window=window,
                               k_q=k_q, k_kv=x.shape[1])


def colt5_attention_causal_light(x, q_scores, kv_scores, light_qkv, light_out, heavy_qkv, heavy_out, *, window,
                                 k_q, k_kv):
    """The light local attention made causal (a decoder's habit; CoLT5 is an encoder)."""
    routed = moe.colt5_attention(x, q_scores, kv_scores, light_qkv, light_out, heavy_qkv, heavy_out, window=window,
                                 k_q=k_q, k_kv=k_kv)
    return (routed - moe.multi_head(x, x, light_qkv, light_out, window=(window, window))
            + moe.multi_head(x, x, light_qkv, light_out, window=(window, 0)))


MUTANTS = {
    "moe.colt5.ffn_as_moe": colt5_ffn_routed_over_the_whole_batch,
    "moe.colt5.ffn_all_routed": colt5_ffn_heavy_unscaled,
    "moe.colt5.attention_masked_dense": colt5_attention_over_every_key,
    "moe.colt5.attention_all_routed": colt5_attention_causal_light,
    "moe.layer.dispatch == moe.layer.per_token": dispatch_with_capacity_never_enforced,
    "moe.layer.identical_experts": dispatch_without_gates,
    "moe.layer.dense_mixture": dispatch_unpermuted_by_the_permutation,
    "moe.layer.expert_permutation": dispatch_weights_by_group_number,
    "moe.layer.dispatch_backward": dispatch_vjp_overwriting_dx,
    "moe.routing.switch_capacity": switch_with_priority_over_a_singleton_axis,
    "moe.routing.topk_tie_rule": topk_ties_to_the_higher_index,
    "moe.routing.noisy_without_noise": noisy_topk_softmax_over_all_experts,
    "moe.routing.noisy_as_topk": noisy_topk_with_noise_epsilon,
    "moe.routing.expert_choice_columns": expert_choice_softmax_over_tokens,
    "moe.loss.uniform": balance_hf_switch_times_experts_once,
    "moe.loss.single_token": balance_with_softmax_twice,
    "moe.loss.collapsed_at_least_one": balance_without_the_expert_count,
    "moe.loss.z_constant": z_loss_of_probabilities,
    "moe.loss.importance_identity": importance_with_unbiased_variance,
    "moe.loss.load_noiseless": load_with_the_kth_threshold_for_every_expert,
}
"""The mutant each claim of the family must reject, by claim key."""
