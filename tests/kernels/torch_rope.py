"""RoPE in torch as a fused kernel would write it: a custom autograd.Function whose backward
rotates the cotangent by the transposed rotation.

- ``torch_rope``: correct (the backward rotates by -theta).
- ``rope_with_the_backward_unconjugated``: the backward rotates by +theta (the forward again):
  the flag a fused rotary kernel takes for its backward (flash-attention's ``conjugate``,
  ``inplace``/``conj`` in apex and liger's kernels) forgotten.
"""

import torch


def _rotate(x, positions, base, interpolation_factor, pairing, sign):
    D = x.shape[-1]
    inv_freq = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    theta = sign * (positions.to(torch.float64) / interpolation_factor)[..., None] * inv_freq
    theta = theta[..., None, :] if positions.ndim == 2 else theta[None, :, None, :]
    cos, sin = torch.cos(theta), torch.sin(theta)
    if pairing == "half":
        a, b = x[..., : D // 2], x[..., D // 2:]
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


class Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, positions, base, interpolation_factor, pairing, backward_sign):
        ctx.save_for_backward(positions)
        ctx.options = (base, interpolation_factor, pairing, backward_sign)
        return _rotate(x, positions, base, interpolation_factor, pairing, 1.0)

    @staticmethod
    def backward(ctx, grad):
        (positions,) = ctx.saved_tensors
        base, interpolation_factor, pairing, sign = ctx.options
        return _rotate(grad, positions, base, interpolation_factor, pairing, sign), None, None, None, None, None


def _positions(x, positions):
    return torch.arange(x.shape[1], dtype=torch.float64) if positions is None else positions


def rope(pairing, backward_sign=-1.0):
    def fn(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
        return Rope.apply(x, _positions(x, positions), base, interpolation_factor, pairing, backward_sign)
    return fn


torch_rope = {"half": rope("half"), "interleaved": rope("interleaved")}
rope_with_the_backward_unconjugated = {"half": rope("half", 1.0), "interleaved": rope("interleaved", 1.0)}
