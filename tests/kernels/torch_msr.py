"""Multi-scale retention in torch as torchscale decodes it (``recurrent_forward``: the running
scale s_n = gamma s_{n-1} + 1, the rotation, k K^-1/2, the per-head RMSNorm); autograd
differentiates it.

- ``torch_msr``: correct.
- ``msr_with_the_norm_detached``: the RMSNorm's normaliser 1/sqrt(mean(x^2) + eps) held constant
  in the backward (dx = r dy, the projection -r y (dy . y)/V lost: a fused norm's hand-written
  backward that computes the statistics' gradient and never uses it, as mamba #342's dz).
"""

import torch


def _rotate(x):
    T, K = x.shape[1], x.shape[3]
    angle = 1.0 / 10000 ** torch.linspace(0, 1, K // 2, dtype=x.dtype)
    theta = torch.arange(T, dtype=x.dtype)[:, None] * angle.repeat_interleave(2)  # (T, K)
    turned = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).reshape(x.shape)
    return x * torch.cos(theta)[:, None] + turned * torch.sin(theta)[:, None]


def torch_msr(q, k, v, *, eps=1e-6, detach_norm=False):
    B, T, H, K = q.shape
    gamma = 1 - 2.0 ** (-5 - torch.arange(H, dtype=q.dtype))
    qr, kr = _rotate(q), _rotate(k * K ** -0.5)
    kv, scale, outs = None, torch.ones(H, dtype=q.dtype), []
    for t in range(T):
        step = kr[:, t, :, :, None] * v[:, t, :, None, :]
        if kv is None:
            kv = step
        else:
            new_scale = scale * gamma + 1
            kv = kv * (torch.sqrt(scale) * gamma / torch.sqrt(new_scale))[:, None, None] \
                + step / torch.sqrt(new_scale)[:, None, None]
            scale = new_scale
        outs.append(torch.einsum("bhk,bhkv->bhv", qr[:, t], kv))
    if not outs:
        return v.clone()
    x = torch.stack(outs, dim=1)
    norm = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return x * (norm.detach() if detach_norm else norm)


def msr_with_the_norm_detached(q, k, v, *, eps=1e-6):
    return torch_msr(q, k, v, eps=eps, detach_norm=True)
