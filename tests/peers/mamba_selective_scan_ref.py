"""state-spaces/mamba's selective_scan_ref (mamba_ssm/ops/selective_scan_interface.py), ported to
torch float64 for the tests (the original computes in float32). Channels first: u, delta, z
(B, D, L); B/C (D, N), (B, N, L) or (B, G, N, L), complex ones over time as real (re, im) pairs
along L. Written from the original's semantics, not copied.
"""


def torch_selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """selective_scan_ref ported faithfully to torch float64 (the original computes in float32):
    channels-first, variable complex B/C as real tensors with (re, im) interleaved along time."""
    import torch
    import torch.nn.functional as F

    delta = delta if delta_bias is None else delta + delta_bias[..., None]
    delta = F.softplus(delta) if delta_softplus else delta
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    variable_B, variable_C = B.dim() >= 3, C.dim() >= 3
    if A.is_complex():
        if variable_B:
            B = torch.view_as_complex(B.reshape(*B.shape[:-1], -1, 2).contiguous())
        if variable_C:
            C = torch.view_as_complex(C.reshape(*C.shape[:-1], -1, 2).contiguous())
    x = A.new_zeros((batch, dim, dstate))
    deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
    if not variable_B:
        deltaB_u = torch.einsum("bdl,dn,bdl->bdln", delta, B, u)
    elif B.dim() == 3:
        deltaB_u = torch.einsum("bdl,bnl,bdl->bdln", delta, B, u)
    else:
        B = B.repeat_interleave(dim // B.shape[1], dim=1)
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
    if variable_C and C.dim() == 4:
        C = C.repeat_interleave(dim // C.shape[1], dim=1)
    ys = []
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        if not variable_C:
            y = torch.einsum("bdn,dn->bd", x, C)
        elif C.dim() == 3:
            y = torch.einsum("bdn,bn->bd", x, C[:, :, i])
        else:
            y = torch.einsum("bdn,bdn->bd", x, C[:, :, :, i])
        ys.append(y.real * 2 if y.is_complex() else y)
    y = torch.stack(ys, dim=2)
    out = y if D is None else y + u * D[:, None]
    out = out if z is None else out * F.silu(z)
    return out, x
