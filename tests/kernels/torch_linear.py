"""Causal linear attention in torch, fast-transformers' recurrence (autograd differentiates it):
S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t), out_t = phi(q_t)^T S_t / (phi(q_t) . z_t + eps).

- ``torch_linear_attention``: correct; the state [S | z] (B, H, D, M + 1) as the registered form's.
- ``linear_attention_with_the_denominator_detached``: the normaliser treated as a constant in
  the backward (its gradient, -(dO . out) / den, lost: a hand-written backward that only
  differentiates the numerator).
"""

import torch
import torch.nn.functional as F


def _phi(x, feature_map):
    return F.elu(x) + 1 if feature_map == "elu" else x


def torch_linear_attention(q, k, v, *, feature_map="elu", eps=1e-6, initial_state=None, return_state=False,
                           detach_denominator=False):
    Q, K = _phi(q, feature_map), _phi(k, feature_map)
    batch, T, H, D = Q.shape
    M = v.shape[3]
    if initial_state is None:
        S, z = q.new_zeros(batch, H, D, M), q.new_zeros(batch, H, D)
    else:
        S, z = initial_state[..., :M], initial_state[..., M]
    outs = []
    for t in range(T):
        z = z + K[:, t]
        S = S + K[:, t, :, :, None] * v[:, t, :, None, :]
        den = (Q[:, t] * z).sum(-1) + eps
        outs.append(torch.einsum("bhd,bhdm->bhm", Q[:, t], S) / (den.detach() if detach_denominator else den)[..., None])
    out = torch.stack(outs, dim=1) if outs else v.clone()
    return (out, torch.cat([S, z[..., None]], dim=-1)) if return_state else out


def linear_attention_with_the_denominator_detached(*args, **options):
    return torch_linear_attention(*args, **options, detach_denominator=True)
