"""Softmax attention in torch, written from ``softmax_attention``'s docstring (bottom-right masks,
fully masked rows 0 with lse -inf, GQA), for the gradient tests: autograd differentiates it.

- ``torch_attention``: correct, forward and (by autograd) backward.
- ``causal_blind_backward``: the same forward, with a hand-written backward that recomputes
  P = exp(s - lse) over every key, the causal mask forgotten (triton-lang/triton #4541: the
  fused-attention tutorial's backward ignores ``causal``). Its forward is right, so only a
  gradient check can catch it.
"""

import torch


def _visible(B, H, Tq, Tk, causal, window, key_padding_mask):
    offset = (torch.arange(Tq)[:, None] + Tk - Tq) - torch.arange(Tk)[None, :]  # i + Tk - Tq - j
    visible = torch.ones(Tq, Tk, dtype=torch.bool)
    if causal:
        visible &= offset >= 0
    if window is not None:
        left, right = window
        if left is not None and left >= 0:
            visible &= offset <= left
        if right is not None and right >= 0:
            visible &= -offset <= right
    visible = visible[None, None].expand(B, H, Tq, Tk)
    if key_padding_mask is not None:
        visible = visible & torch.as_tensor(key_padding_mask)[:, None, None, :]
    return visible, offset


def _scores(q, k, scale, softcap, alibi_slopes, offset):
    B, Tq, H, D = q.shape
    s = torch.einsum("bihd,bjhd->bhij", q, k.repeat_interleave(H // k.shape[2], dim=2))
    s = s * (D ** -0.5 if scale is None else scale)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if alibi_slopes is not None:
        slopes = torch.as_tensor(alibi_slopes).to(s.dtype)  # float32 slopes for a low-precision kernel
        s = s - slopes.reshape(-1, H)[:, :, None, None] * offset.abs()
    return s


def _attend(s, visible, v, H):
    seen = visible.any(dim=-1)
    masked = s.masked_fill(~visible, -torch.inf)
    lse = torch.logsumexp(masked, dim=-1)
    # exp(-inf) = 0 with a 0 gradient (where(visible, exp(s - lse), 0) would back-propagate 0 * inf = NaN
    # from a masked key whose score is far above the row's lse)
    P = torch.exp(masked - torch.where(seen, lse, 0.0)[..., None])
    return torch.einsum("bhij,bjhd->bihd", P, v.repeat_interleave(H // v.shape[2], dim=2)), lse.transpose(1, 2)


def torch_attention(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None, alibi_slopes=None,
                    softcap=None, return_lse=False):
    visible, offset = _visible(q.shape[0], q.shape[2], q.shape[1], k.shape[1], causal, window, key_padding_mask)
    out, lse = _attend(_scores(q, k, scale, softcap, alibi_slopes, offset), visible, v, q.shape[2])
    return (out, lse) if return_lse else out


class _CausalBlind(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal):
        visible, offset = _visible(q.shape[0], q.shape[2], q.shape[1], k.shape[1], causal, None, None)
        s = _scores(q, k, None, None, None, offset)
        out, lse = _attend(s, visible, v, q.shape[2])
        ctx.save_for_backward(q, k, v, s, lse)
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, s, lse = ctx.saved_tensors
        H, scale = q.shape[2], q.shape[3] ** -0.5
        group = H // k.shape[2]
        P = torch.exp(s - lse.transpose(1, 2)[..., None])  # every key: the causal mask forgotten
        vh = v.repeat_interleave(group, dim=2)
        dP = torch.einsum("bihd,bjhd->bhij", dout, vh)
        out = torch.einsum("bhij,bjhd->bihd", P, vh)
        dS = P * (dP - (dout * out).sum(-1).transpose(1, 2)[..., None])
        dq = scale * torch.einsum("bhij,bjhd->bihd", dS, k.repeat_interleave(group, dim=2))
        dk = scale * torch.einsum("bhij,bihd->bjhd", dS, q)
        dv = torch.einsum("bhij,bihd->bjhd", P, dout)

        def fold(g):
            return g.reshape(*g.shape[:2], k.shape[2], group, g.shape[3]).sum(3)

        return dq, fold(dk), fold(dv), None


def causal_blind_backward(q, k, v, *, causal=False, **options):
    return _CausalBlind.apply(q, k, v, causal)
