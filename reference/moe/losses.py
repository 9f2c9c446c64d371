"""The routers' auxiliary losses.

- ``load_balancing_loss``, Switch's (Fedus et al. 2021, eqs. 4-6): N sum_i f_i P_i, f_i the
  fraction of routed slots that chose expert i, P_i the mean router probability of i, N the
  number of experts; 1 when f and P are uniform. Three published codes compute three values:
  ``variant="switch"`` the paper's, over every token of the batch (f over the B T k slots);
  ``"hf_switch"`` huggingface/transformers models/switch_transformers/modeling_switch_transformers.py
  ``load_balancing_loss_func`` (as flaxformer's ``_load_balancing_loss``): f and P per group (batch
  row), a token counted once per expert (max over its slots), E^2 mean_{b, i} f_bi P_bi;
  ``"mixtral"`` models/mixtral/modeling_mixtral.py ``load_balancing_loss_func``: global means,
  summed over the k slots, times E (k under uniform routing). Pass the router's choices before
  any capacity drop: an empty slot (-1) counts for no expert (HF's Switch v4 counted a dropped
  token as expert 0, its argmax of an all-zero row).
- ``router_z_loss`` (Zoph et al. 2022, ST-MoE, eq. 5): mean over tokens of logsumexp(logits)^2,
  HF's ``router_z_loss_func``.
- ``importance_loss`` and ``load_loss`` (Shazeer et al. 2017, eqs. 6-10): CV^2 = var / mean^2 of
  the experts' importance (the sum of each expert's gates over the batch) and of their smooth load
  (the sum over tokens of the probability that expert i stays in the noisy top k). The variance is
  the population's (tensor2tensor's); davidmrau/mixture-of-experts: moe.py ``cv_squared`` takes
  torch's unbiased var (E / (E - 1) times this) and adds 1e-10 to the mean^2.
"""

import numpy as np
from scipy.special import logsumexp, softmax, softplus
from scipy.stats import norm

from .._checks import check_choice, int_in_range
from .routing import _logits, check_routing, dense_gates, noisy_logits, rank_experts

VARIANTS = ("switch", "hf_switch", "mixtral")


def _choices(expert_index, logits):
    """One-hot (B, T, k, E) of the slots' experts (an empty slot: all zero)."""
    index, _ = check_routing(expert_index, np.zeros(np.shape(expert_index)), logits.shape[2])
    if index.shape[:2] != logits.shape[:2]:
        raise ValueError(f"expert_index must have shape (B, T, k) with (B, T)={logits.shape[:2]} to match logits; "
                         f"got shape {index.shape}")
    return (index[..., None] == np.arange(logits.shape[2])).astype(np.float64)


def load_balancing_loss(logits, expert_index, *, variant="switch"):
    """Switch's auxiliary load-balancing loss of router ``logits`` (B, T, E) and the slots'
    ``expert_index`` (B, T, k) in one of the published ``variant``s (module docstring). A batch
    without tokens has loss 0. Returns a float."""
    logits = _logits("logits", logits)
    mask = _choices(expert_index, logits)
    check_choice("variant", variant, VARIANTS)
    B, T, k, E = mask.shape
    if B * T == 0:
        return 0.0
    probs = softmax(logits, axis=-1)
    if variant == "switch":
        f, P = mask.mean(axis=(0, 1, 2)), probs.mean(axis=(0, 1))
        return float(E * (f * P).sum())
    if variant == "hf_switch":
        f, P = mask.max(axis=2).mean(axis=1), probs.mean(axis=1)  # (B, E) each
        return float(E ** 2 * (f * P).mean())
    f, P = mask.mean(axis=(0, 1)), probs.mean(axis=(0, 1))  # (k, E), (E,)
    return float(E * (f * P).sum())


def router_z_loss(logits):
    """ST-MoE's router z-loss: (1 / (B T)) sum_{b, t} (log sum_i e^{logits_bti})^2; 0 for no tokens."""
    logits = _logits("logits", logits)
    if logits.shape[0] * logits.shape[1] == 0:
        return 0.0
    return float((logsumexp(logits, axis=-1) ** 2).mean())


def _cv_squared(values):
    """var / mean^2 (population variance); 0 where every value is 0."""
    mean = values.mean()
    return 0.0 if mean == 0 else float(values.var() / mean ** 2)


def importance_loss(expert_index, gate, *, experts):
    """Shazeer's importance loss CV(Importance)^2 without its weight: Importance_i = the sum over
    every token of the batch of the gates routed to expert i (``dense_gates``). Returns a float."""
    return _cv_squared(dense_gates(expert_index, gate, experts).sum(axis=(0, 1)))


def smooth_load(clean_logits, noise_logits, noise, *, top_k):
    """Shazeer's smooth load estimator (eqs. 8-9): with H = ``noisy_logits`` and sigma =
    softplus(noise_logits), P(t, i) = Phi((clean_ti - kth_excluding(H_t, k, i)) / sigma_ti), the
    k-th largest noisy logit among the other experts: the (k+1)-th largest of H_t where i is in
    its top k, the k-th where not (with k = E every expert keeps every token: P = 1); where sigma
    underflows to 0, Phi's limit (1, 0, or 1/2 at a tie). Returns
    Load_i = sum_t P(t, i) over the batch, (E,)."""
    H = noisy_logits(clean_logits, noise_logits, noise)
    clean, sigma = np.asarray(clean_logits, dtype=np.float64), softplus(np.asarray(noise_logits, dtype=np.float64))
    B, T, E = H.shape
    k = int_in_range("top_k", top_k, 1, E)
    if k == E:
        return np.full(E, float(B * T))
    order = rank_experts(H)
    ranked = np.take_along_axis(H, order, axis=-1)
    inside = np.zeros(H.shape, dtype=bool)
    np.put_along_axis(inside, order[..., :k], True, axis=-1)
    threshold = np.where(inside, ranked[..., k:k + 1], ranked[..., k - 1:k])
    with np.errstate(divide="ignore", invalid="ignore"):  # sigma underflows to 0 below about -745: Phi's limit
        z = np.where(sigma > 0, (clean - threshold) / sigma, np.sign(clean - threshold) * np.inf)
    return norm.cdf(np.nan_to_num(z, nan=0.0, posinf=np.inf, neginf=-np.inf)).sum(axis=(0, 1))


def load_loss(clean_logits, noise_logits, noise, *, top_k):
    """Shazeer's load loss CV(Load)^2 without its weight (eq. 10), Load = ``smooth_load``.
    Returns a float."""
    return _cv_squared(smooth_load(clean_logits, noise_logits, noise, top_k=top_k))
