"""RWKV-5/6's WKV in torch, one step at a time (autograd differentiates it):
o_t = r_t (diag(u) k_t^T v_t + S_{t-1}), S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t.

- ``torch_wkv6``: correct.
- ``wkv6_ignoring_the_state_cotangent``: the final state returned detached, so the backward
  never sees its cotangent (transformers PR #23774's RWKV backward: ``g_state`` accepted and
  unused, "we don't handle the gradient of the state").
"""

import torch


def torch_wkv6(r, k, v, g, *, u, initial_state=None, return_state=False, detach_state=False):
    batch, T, H, K = r.shape
    if g.ndim == 3:
        g = g[..., None].expand(r.shape)
    elif g.ndim < 3:
        g = (g if g.ndim == 2 else g[:, None].expand(H, K)).expand(r.shape)
    u = u if u.ndim == 2 else u[:, None].expand(H, K)
    S = r.new_zeros(batch, H, K, v.shape[-1]) if initial_state is None else initial_state
    outs = []
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", r[:, t], u[None, :, :, None] * kv + S))
        S = torch.exp(g[:, t])[..., None] * S + kv
    o = torch.stack(outs, dim=1) if outs else v.clone()
    return (o, S.detach() if detach_state else S) if return_state else o


def wkv6_ignoring_the_state_cotangent(*args, **options):
    return torch_wkv6(*args, **options, detach_state=True)
