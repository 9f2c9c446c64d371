"""The (gated) delta rule in torch, 'predict, then write the correction', for the gradient tests.

- ``torch_delta``: correct (autograd differentiates it).
- ``delta_with_the_prediction_detached``: the prediction k^T S detached, so the erase term passes
  no gradient to the state or the key (a hand-fused kernel that treats the erase as a constant).
"""

import torch


def torch_delta(q, k, v, beta, *, g=None, scale=None, initial_state=None, return_state=False,
                detach_prediction=False):
    B, T, H, K = q.shape
    q = q * (K ** -0.5 if scale is None else scale)
    S = q.new_zeros(B, H, K, v.shape[-1]) if initial_state is None else initial_state.to(q.dtype)
    outs = []
    for t in range(T):
        if g is not None:  # g and the state may come in float32 for a low-precision kernel
            S = torch.exp(g[:, t]).to(q.dtype)[..., None, None] * S
        predicted = torch.einsum("bhk,bhkv->bhv", k[:, t], S)
        written = beta[:, t, :, None] * (v[:, t] - (predicted.detach() if detach_prediction else predicted))
        S = S + k[:, t, :, :, None] * written[:, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    out = torch.stack(outs, dim=1) if outs else v.clone()
    return (out, S) if return_state else out


def delta_with_the_prediction_detached(q, k, v, beta, **options):
    return torch_delta(q, k, v, beta, **options, detach_prediction=True)
