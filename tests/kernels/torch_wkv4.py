"""RWKV-4's WKV in torch, the CUDA kernel's stable recurrence (autograd differentiates it), and
the backward of transformers' RWKV ``autograd.Function`` as a NumPy VJP.

- ``torch_wkv4``: correct.
- ``vjp_with_w_and_u_from_the_first_sequence``: the kernel writes dw and du per sequence (B, C)
  and the Function must sum them over the batch (``g_time_decay = torch.sum(g_time_decay,
  dim=0)`` in transformers' ``modeling_rwkv.py``); this one keeps the first sequence's.
"""

import torch

from seqcheck.reference.rwkv import wkv4_vjp


def torch_wkv4(k, v, w, u):
    batch, T, C = k.shape
    p, q, o = k.new_zeros(batch, C), k.new_zeros(batch, C), k.new_full((batch, C), -float("inf"))
    outs = []
    for t in range(T):
        top = torch.maximum(o, u + k[:, t])
        a, b = torch.exp(o - top), torch.exp(u + k[:, t] - top)
        outs.append((a * p + b * v[:, t]) / (a * q + b))
        top = torch.maximum(o - w, k[:, t])
        a, b = torch.exp(o - w - top), torch.exp(k[:, t] - top)
        p, q, o = a * p + b * v[:, t], a * q + b, top
    return torch.stack(outs, dim=1) if outs else v.clone()


def vjp_with_w_and_u_from_the_first_sequence(k, v, w, u, *, cotangent):
    grads = wkv4_vjp(k[:1], v[:1], w, u, cotangent=cotangent[:1])
    full = wkv4_vjp(k, v, w, u, cotangent=cotangent)
    return {**full, "w": grads["w"], "u": grads["u"]}
