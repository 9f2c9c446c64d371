"""Mamba's selective scan in torch, one step at a time, batch-first as our reference (autograd
differentiates it): x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t, y_t = C_t . x_t (2 Re with a
complex A), out = (y + D u) silu(z).

- ``torch_scan``: correct (B and C as (D, N), (B, T, N) or (B, T, G, N)).
- ``scan_with_z_gradient_dropped``: the gate's gradient computed and not used, z detached (the
  fast path of state-spaces/mamba #342 computed dz and never returned it).
"""

import torch
import torch.nn.functional as F


def _per_channel(M, D):
    if M.dim() == 2:  # (D, N)
        return M
    if M.dim() == 3:  # (B, T, N)
        return M[:, :, None, :]
    return M.repeat_interleave(D // M.shape[2], dim=2)  # (B, T, G, N)


def torch_scan(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False, initial_state=None,
               return_state=False, detach_z=False):
    batch, T, dim = u.shape
    if delta_bias is not None:
        delta = delta + delta_bias
    if delta_softplus:
        delta = F.softplus(delta)  # torch's: x above 20 passes through
    B, C = _per_channel(B, dim), _per_channel(C, dim)
    if A.is_complex():
        B, C = B.to(A.dtype), C.to(A.dtype)
    x = torch.zeros(batch, dim, A.shape[1], dtype=A.dtype) if initial_state is None else initial_state
    ys = []
    for t in range(T):
        Bt = B if B.dim() == 2 else B[:, t]
        Ct = C if C.dim() == 2 else C[:, t]
        x = torch.exp(delta[:, t, :, None] * A) * x + (delta[:, t] * u[:, t])[..., None] * Bt
        y = (x * Ct).sum(-1)
        ys.append(2 * y.real if A.is_complex() else y)
    y = torch.stack(ys, dim=1) if ys else u.clone()
    out = y if D is None else y + u * D
    if z is not None:
        out = out * F.silu(z.detach() if detach_z else z)
    return (out, x) if return_state else out


def scan_with_z_gradient_dropped(*args, **options):
    return torch_scan(*args, **options, detach_z=True)
