"""The Attention Free Transformer's forms in torch (autograd differentiates them), and one with a
hand-written backward.

- ``torch_aft_full``, ``torch_aft_local``, ``torch_aft_simple``: a softmax over t' of k_t' +
  w_tt' per channel (torch.softmax), the gate sigmoid(q); ``torch_aft_conv``: the paper's eq. 6,
  e^{K} convolved with e^{w} - 1 plus every key with weight 1.
- ``aft_full_forgetting_the_mean``: an autograd.Function whose backward takes dS = P dm V,
  forgetting the row's mean (dS = P dm (V - m)): the D_i term of attention's backward, lost.
"""

import torch


def _mean(k, v, W, causal):
    exponents = k[:, None] + W[None]
    if causal:
        T = k.shape[1]
        exponents = exponents.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril()[None, :, :, None], -float("inf"))
    return (torch.softmax(exponents, dim=2) * v[:, None]).sum(dim=2)


def _gated(q, mean):
    return mean if q is None else torch.sigmoid(q) * mean


def _biases(w):
    return w if w.ndim == 3 else w[..., None]


def torch_aft_full(q, k, v, w, *, causal=False):
    return _gated(q, _mean(k, v, _biases(w), causal))


def torch_aft_local(q, k, v, w, *, window, causal=False):
    t = torch.arange(k.shape[1])
    inside = ((t[:, None] - t[None, :]).abs() < window)[..., None]
    return _gated(q, _mean(k, v, torch.where(inside, _biases(w), torch.zeros(())), causal))


def torch_aft_simple(q, k, v, *, causal=False):
    T = k.shape[1]
    return _gated(q, _mean(k, v, k.new_zeros(T, T, 1), causal))


def torch_aft_conv(q, k, v, w):
    B, T, H, D = k.shape
    s = w.shape[1]
    a = torch.exp(k - k.max(dim=1, keepdim=True).values)
    excess = torch.expm1(w)  # (H, s)

    def conv(x):
        padded = torch.nn.functional.pad(x, (0, 0, 0, 0, s // 2, s // 2))
        return sum(padded[:, j:j + T] * excess[:, j, None] for j in range(s))

    num = conv(a * v) + (a * v).sum(dim=1, keepdim=True)
    den = conv(a) + a.sum(dim=1, keepdim=True)
    return _gated(q, num / den)


class _ForgettingTheMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, W):
        P = torch.softmax(k[:, None] + W[None], dim=2)
        mean = (P * v[:, None]).sum(dim=2)
        ctx.save_for_backward(q, v, P, mean)
        return torch.sigmoid(q) * mean

    @staticmethod
    def backward(ctx, dY):
        q, v, P, mean = ctx.saved_tensors
        gate = torch.sigmoid(q)
        dm = dY * gate
        dS = P * dm[:, :, None] * v[:, None]  # the row's mean forgotten
        return dY * mean * gate * (1 - gate), dS.sum(dim=1), (P * dm[:, :, None]).sum(dim=1), dS.sum(dim=0)


def aft_full_forgetting_the_mean(q, k, v, w, *, causal=False):
    if q is None or causal:
        return torch_aft_full(q, k, v, w, causal=causal)
    W = _biases(w)
    return _ForgettingTheMean.apply(q, k, v, W.expand(W.shape[:2] + k.shape[2:]))
