"""Gated linear attention in torch, one step at a time, for the gradient tests (autograd
differentiates it): S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t.

- ``torch_gla``: correct.
- ``torch_retention``: retention as GLA with g = log gamma, scale 1; ``retention_truncated_backward``
  the same with the state detached between steps (no gradient from later queries).
- ``gla_with_the_gate_detached``: the decays computed from ``g.detach()``, so no gradient reaches
  the gate (a kernel whose backward returns dg = 0, the bug class of fla PR #48 and #102: a
  gradient silently missing).
"""

import torch


def torch_gla(q, k, v, g, *, scale=None, initial_state=None, return_state=False, detach_gate=False,
              detach_state=False):
    B, T, H, K = q.shape
    q = q * (K ** -0.5 if scale is None else scale)
    if g.dim() == 3:
        g = g[..., None].expand(B, T, H, K)
    a = torch.exp(g.detach() if detach_gate else g)
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.to(q.dtype)  # a float32 state
    outs = []
    for t in range(T):
        S = a[:, t, :, :, None] * (S.detach() if detach_state else S) + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    out = torch.stack(outs, dim=1) if outs else v.clone()
    return (out, S) if return_state else out


def gla_with_the_gate_detached(q, k, v, g, **options):
    return torch_gla(q, k, v, g, **options, detach_gate=True)


def torch_retention(q, k, v, gamma, *, initial_state=None, return_state=False, detach_state=False):
    """Retention as GLA with g = log gamma and scale 1 (gamma a constant)."""
    B, T, H, _ = q.shape
    g = torch.log(gamma).to(q.dtype)[None, None].expand(B, T, H)
    return torch_gla(q, k, v, g, scale=1.0, initial_state=initial_state, return_state=return_state,
                     detach_state=detach_state)


def retention_truncated_backward(q, k, v, gamma, **options):
    """The state detached between steps (truncated backpropagation): the forward is right, but
    no gradient reaches a key or value from a later query."""
    return torch_retention(q, k, v, gamma, **options, detach_state=True)
