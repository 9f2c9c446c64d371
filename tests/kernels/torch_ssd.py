"""Mamba-2's SSD in torch, one step at a time (autograd differentiates it):
h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t, B and C (B, T, G, N) read by head h // (H / G).

- ``torch_ssd``: correct.
- ``ssd_with_dt_detached_in_the_input``: dt detached where it scales x (its gradient through
  dt x lost: only the decay's part of ddt remains).
"""

import torch


def torch_ssd(x, dt, A, B, C, *, initial_state=None, return_state=False, detach_input_dt=False):
    batch, T, H, P = x.shape
    r = H // B.shape[2]
    B, C = B.repeat_interleave(r, dim=2), C.repeat_interleave(r, dim=2)
    h = x.new_zeros(batch, H, P, B.shape[-1]) if initial_state is None else initial_state
    scaled = x * (dt.detach() if detach_input_dt else dt)[..., None]
    ys = []
    for t in range(T):
        h = torch.exp(dt[:, t] * A)[..., None, None] * h + scaled[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", h, C[:, t]))
    y = torch.stack(ys, dim=1) if ys else x.clone()
    return (y, h) if return_state else y


def ssd_with_dt_detached_in_the_input(*args, **options):
    return torch_ssd(*args, **options, detach_input_dt=True)
