"""Routing tokens to experts: softmax top-k, Shazeer's noisy top-k, Switch's top-1 with an
expert capacity, and expert choice.

Every router reads logits (B, T, E), one row of E expert logits per token, batch first, and
returns the routing every MoE layer here takes: ``expert_index`` int64 (B, T, k), the expert of
each of a token's k slots (-1: the slot is empty), and ``gate`` (B, T, k) float64, the weight its
expert's output is scaled by (0 in an empty slot).

Tie rule (one total order everywhere, as the eviction family's ``topk_lowest_index``): experts
rank by score, higher first, and at equal score the lower expert index first; expert choice
ranks tokens the same way, at equal score the earlier token first. ``torch.topk``, which the
originals use, leaves the order among equal values unspecified.

Capacity (``apply_capacity``). Each batch row is one group (HF's ``SwitchTransformersTop1Router``
and ``SwitchTransformersSparseMLP`` group by sequence); in a group every expert takes at most
``capacity`` slots, in priority order: every token's first choice, left to right, before any
token's second choice, and so on (GShard's top-2: ``locations2 += sum(mask1)``; for top-1 it is
Switch's left-to-right order). A slot over capacity is dropped: its expert index becomes -1 and
its gate 0, so the layer adds nothing for it and the token passes through the residual alone.
Gates are not renormalised after a drop (mesh tensorflow and tutel normalise top-2 gates before
the drop, as a router here does; DeepSpeed's top2gating renormalises after it, so a token whose
second choice is dropped gets weight 1 on its first). Counting the dropped slots in the queue
(DeepSpeed's ``locations2 += sum(mask1)`` before the drop) or not (mesh's after it) keeps the
same slots: an expert drops only once it is full.
"""

import numpy as np
from scipy.special import softmax, softplus

from .._checks import as_int, as_real, check_bool, check_layout, check_shape, finite_real, int_in_range

# ----------------------------------------------------------------------------- checks


def _logits(name, logits):
    """logits (B, T, E) as float64, E >= 1, finite."""
    a = as_real(name, logits)
    check_layout(name, a, "(B, T, E)")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (the tie rule orders real numbers)")
    return a


def check_routing(expert_index, gate, experts=None):
    """expert_index int64 (B, T, k) with entries in [-1, experts) and gate float64 of its shape, finite."""
    index = np.asarray(expert_index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"expert_index must hold integers (-1 for an empty slot); got dtype {index.dtype}")
    check_layout("expert_index", index, "(B, T, k)")
    high = "" if experts is None else f", {experts}"
    if index.size and (index.min() < -1 or experts is not None and index.max() >= experts):
        raise ValueError(f"expert_index must hold expert indices in [-1{high}) (-1: an empty slot); "
                         f"got values from {index.min()} to {index.max()}")
    gate = as_real("gate", gate)
    check_shape("gate", gate, index.shape, "(B, T, k)", match="expert_index")
    if not np.isfinite(gate).all():
        raise ValueError("gate must be finite")
    return index.astype(np.int64), gate


def _capacity(capacity):
    return None if capacity is None else int_in_range("capacity", capacity, 0)


# ----------------------------------------------------------------------------- the tie rule


def rank_experts(scores):
    """The experts of each row of ``scores`` (..., E) from first chosen to last: score
    descending, then index ascending (a stable sort of -scores). scores real, no NaN."""
    a = as_real("scores", scores)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"scores must have a non-empty last axis (..., E); got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError("scores must not contain NaN (the tie rule orders real numbers only)")
    return np.argsort(-a, axis=-1, kind="stable")


# ----------------------------------------------------------------------------- routers


def topk_routing(logits, *, top_k, normalize=True):
    """Softmax top-k gating: p = softmax(logits) over the E experts, the k experts of highest p
    in rank order (tie rule above; ranked by the logits, which order p exactly where rounded
    probabilities may tie), gate_j = p_{e_j} / sum_{j'} p_{e_j'} when ``normalize``
    (Mixtral: ``routing_weights /= routing_weights.sum(-1)``, the softmax of the k chosen
    logits), else gate_j = p_{e_j} (Switch's top-1, Qwen2-MoE's ``norm_topk_prob=False``).

    huggingface/transformers: models/mixtral/modeling_mixtral.py MixtralSparseMoeBlock (softmax,
    topk, renormalise). Returns (expert_index (B, T, k) int64, gate (B, T, k))."""
    logits = _logits("logits", logits)
    k = int_in_range("top_k", top_k, 1, logits.shape[2])
    normalize = check_bool("normalize", normalize)
    probs = softmax(logits, axis=-1)
    index = rank_experts(logits)[..., :k]  # the order of p, exactly: softmax is monotone in each row
    gate = np.take_along_axis(probs, index, axis=-1)
    if normalize:
        gate = gate / gate.sum(axis=-1, keepdims=True)
    return index.astype(np.int64), gate


def noisy_logits(clean_logits, noise_logits, noise):
    """Shazeer et al. 2017 (eq. 4): H = clean + noise * softplus(noise_logits), the noise a
    standard normal draw passed in, so the routing is a function of its inputs. Returns H (B, T, E)."""
    clean = _logits("clean_logits", clean_logits)
    raw = as_real("noise_logits", noise_logits)
    check_shape("noise_logits", raw, clean.shape, "(B, T, E)", match="clean_logits")
    noise = as_real("noise", noise)
    check_shape("noise", noise, clean.shape, "(B, T, E)", match="clean_logits")
    if not (np.isfinite(raw).all() and np.isfinite(noise).all()):
        raise ValueError("noise_logits and noise must be finite")
    return clean + noise * softplus(raw)


def noisy_topk_routing(clean_logits, noise_logits, noise, *, top_k):
    """Noisy top-k gating (Shazeer et al. 2017, "Outrageously Large Neural Networks", eqs. 3-5):
    G = softmax(KeepTopK(H, k)), H = ``noisy_logits``: the k largest noisy logits in rank order,
    gates their softmax (the others' -inf). davidmrau/mixture-of-experts: moe.py
    MoE.noisy_top_k_gating (which adds noise_epsilon = 1e-2 to the softplus: pass
    noise_logits such that softplus matches, or compare with it added). Returns (expert_index,
    gate) as ``topk_routing``."""
    H = noisy_logits(clean_logits, noise_logits, noise)
    k = int_in_range("top_k", top_k, 1, H.shape[2])
    index = rank_experts(H)[..., :k]
    return index.astype(np.int64), softmax(np.take_along_axis(H, index, axis=-1), axis=-1)


def switch_capacity(tokens, experts, capacity_factor, min_capacity):
    """Switch's expert capacity per group: max(round(capacity_factor * tokens / experts),
    min_capacity), Python's round (halves to even) as google/flaxformer:
    flaxformer/architectures/moe/moe_layers.py MoeLayer, whose port HF's Switch config cites.
    The others differ, so pass their value to ``capacity`` when matching them: mesh tensorflow
    (transformer/moe.py) rounds down, microsoft/DeepSpeed (deepspeed/moe/sharded_moe.py
    ``_capacity``) up and multiplies capacity_factor by k, tutel takes k int(cf ceil(T / E))."""
    tokens, experts = int_in_range("tokens", tokens, 0), int_in_range("experts", experts, 1)
    capacity_factor = finite_real("capacity_factor", capacity_factor)
    if capacity_factor < 0:
        raise ValueError(f"capacity_factor must be >= 0; got {capacity_factor}")
    return max(round(capacity_factor * tokens / experts), int_in_range("min_capacity", min_capacity, 0))


def apply_capacity(expert_index, gate, capacity):
    """The routing with every slot beyond its expert's ``capacity`` dropped (module docstring):
    per batch row, slots in priority order (slot j of every token, left to right, before slot
    j + 1), each expert keeping its first ``capacity``. capacity None keeps every slot.
    Returns (expert_index, gate) with the dropped slots -1 and 0."""
    index, gate = check_routing(expert_index, gate)
    capacity = _capacity(capacity)
    if capacity is None:
        return index, gate
    index, gate = index.copy(), gate.copy()
    B, T, k = index.shape
    for b in range(B):
        taken = {}
        for j in range(k):
            for t in range(T):
                e = int(index[b, t, j])
                if e < 0:
                    continue
                if taken.get(e, 0) < capacity:
                    taken[e] = taken.get(e, 0) + 1
                else:
                    index[b, t, j], gate[b, t, j] = -1, 0.0
    return index, gate


def switch_routing(logits, *, capacity):
    """Switch Transformer's router (Fedus et al. 2021, "Switch Transformers", sec. 2.1-2.2):
    top-1 of p = softmax(logits), gate p_e (not renormalised), each expert keeping at most
    ``capacity`` tokens per batch row, left to right (None: no limit); a dropped token gets
    expert -1 and gate 0.
    huggingface/transformers: models/switch_transformers/modeling_switch_transformers.py
    SwitchTransformersTop1Router (its priority is ``cumsum(expert_index, dim=-2)``; no jitter
    noise here: add it to the logits). Returns (expert_index (B, T, 1), gate (B, T, 1))."""
    index, gate = topk_routing(logits, top_k=1, normalize=False)
    return apply_capacity(index, gate, capacity)


def expert_choice_routing(logits, *, capacity):
    """Expert choice (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing", eq. 1):
    S = softmax(logits) over the experts; every expert takes the ``capacity`` tokens of its batch
    row with the highest S[:, e] (ties to the earlier token). Slot e of a token is expert e's:
    expert_index[b, t, e] = e and gate S[b, t, e] where expert e chose token t, else -1 and 0; a
    token may be chosen by no expert or by all. Returns (expert_index (B, T, E), gate (B, T, E))."""
    logits = _logits("logits", logits)
    B, T, E = logits.shape
    capacity = int_in_range("capacity", capacity, 0, T)
    scores = softmax(logits, axis=-1)
    chosen = np.zeros((B, E, T), dtype=bool)
    if T:
        np.put_along_axis(chosen, rank_experts(np.swapaxes(scores, 1, 2))[..., :capacity], True, axis=-1)
    chosen = np.swapaxes(chosen, 1, 2)  # (B, T, E)
    index = np.where(chosen, np.arange(E), -1).astype(np.int64)
    return index, np.where(chosen, scores, 0.0)


def dense_gates(expert_index, gate, experts):
    """The routing as a dense (B, T, E) matrix: entry e sums the gates of the slots routed to
    expert e (0 for experts a token does not reach)."""
    index, gate = check_routing(expert_index, gate)
    experts = as_int("experts", experts)
    if experts < 1 or (index.size and index.max() >= experts):
        raise ValueError(f"experts must be >= 1 and above every expert_index (max {index.max(initial=-1)}); "
                         f"got {experts}")
    B, T, _ = index.shape
    dense = np.zeros((B, T, experts + 1))
    np.add.at(dense, (np.arange(B)[:, None, None], np.arange(T)[None, :, None], index), gate)
    return dense[..., :experts]
