"""LTI systems and the S4D kernel in torch (autograd differentiates them), and two wrong backwards.

- ``torch_lti``: the recurrence x_t = Abar x_{t-1} + Bbar u_t, y_t = C x_t + D u_t.
- ``torch_lti_fft``: S4's FFTConv: the Krylov kernel of length T, an FFT convolution padded to 2T.
- ``lti_fft_with_an_unpadded_backward``: the same forward, and a hand-written backward that
  correlates by FFTs of length T, not 2T: the correlation wraps around, so du and the kernel's
  gradient take terms from the other end of the sequence.
- ``torch_s4d``: ``models/s4/s4d.py S4DKernel.forward``: 2 Re sum_n C Bbar exp(dt A l) (ZOH), or the
  bilinear Abar^l.
- ``s4d_with_conjugated_gradients``: the same forward, and a backward whose complex gradients are
  conjugated (JAX's convention, d/dz, read as torch's dL/dRe + i dL/dIm: the complex-A gradient
  gaps of mamba #571 are of this kind).
- ``torch_s4_krylov``, ``torch_s4_dplr``: S4's kernel through the dense bilinear system (``_check``)
  and through the DPLR path (``SSMKernelDPLR.forward``).
- ``s4_dplr_with_q_taken_holomorphically``: the DPLR path with Q's gradient conjugated (Q enters
  conjugated; a backward written for a holomorphic input gets it wrong).
"""

import torch


def torch_lti(u, Abar, Bbar, C, D=None, *, initial_state=None):
    batch, T, channels = u.shape
    A = Abar.expand(channels, *Abar.shape[-2:]) if Abar.ndim == 2 else Abar
    x = u.new_zeros(batch, channels, C.shape[1]) if initial_state is None else initial_state
    ys = []
    for t in range(T):
        x = torch.einsum("dmn,bdn->bdm", A, x) + Bbar * u[:, t, :, None]
        y = torch.einsum("dn,bdn->bd", C, x)
        ys.append(y if D is None else y + D * u[:, t])
    return torch.stack(ys, dim=1) if ys else u.clone()


def _krylov(Abar, Bbar, C, length):
    A = Abar.expand(C.shape[0], *Abar.shape[-2:]) if Abar.ndim == 2 else Abar
    v, taps = Bbar, []
    for _ in range(length):
        taps.append((C * v).sum(-1))
        v = torch.einsum("dmn,dn->dm", A, v)
    return torch.stack(taps, dim=-1) if taps else C.new_zeros(C.shape[0], 0)  # (Dch, L)


def _fft_conv(u, K, n):
    spectrum = torch.fft.rfft(u, n=n, dim=1) * torch.fft.rfft(K, n=n, dim=1).T[None]
    return torch.fft.irfft(spectrum, n=n, dim=1)[:, :u.shape[1]]


def torch_lti_fft(u, Abar, Bbar, C, D=None):
    y = _fft_conv(u, _krylov(Abar, Bbar, C, u.shape[1]), max(2 * u.shape[1], 1))
    return y if D is None else y + D * u


class _UnpaddedBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, K):
        ctx.save_for_backward(u, K)
        return _fft_conv(u, K, max(2 * u.shape[1], 1))

    @staticmethod
    def backward(ctx, dy):
        u, K = ctx.saved_tensors
        n = max(u.shape[1], 1)  # should be 2T: the correlations wrap around
        du = torch.fft.irfft(torch.fft.rfft(dy, n=n, dim=1) * torch.fft.rfft(K, n=n, dim=1).T[None].conj(), n=n, dim=1)
        dK = torch.fft.irfft((torch.fft.rfft(dy, n=n, dim=1) * torch.fft.rfft(u, n=n, dim=1).conj()).sum(0), n=n, dim=0)
        return du[:, :u.shape[1]], dK[:K.shape[1]].T


def lti_fft_with_an_unpadded_backward(u, Abar, Bbar, C, D=None):
    y = _UnpaddedBackward.apply(u, _krylov(Abar, Bbar, C, u.shape[1]))
    return y if D is None else y + D * u


def _s4d(log_dt, A, B, C, length, discretization):
    dt = torch.exp(log_dt)[:, None]
    dtA = dt * A
    l = torch.arange(length, dtype=log_dt.dtype)
    if discretization == "zoh":
        Bbar, powers = torch.expm1(dtA) / A, torch.exp(dtA[..., None] * l)
    else:
        Bbar, powers = dt / (1 - dtA / 2), ((1 + dtA / 2) / (1 - dtA / 2))[..., None] ** l
    CB = C * Bbar if B is None else C * B * Bbar
    return 2 * torch.einsum("hn,hnl->hl", CB, powers).real


def torch_s4d(log_dt, A, B, C, length, *, discretization="zoh"):
    return _s4d(log_dt, A, B, C, length, discretization)


class _Conjugated(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g.conj()


def s4d_with_conjugated_gradients(log_dt, A, B, C, length, *, discretization="zoh"):
    A, C = _Conjugated.apply(A), _Conjugated.apply(C)
    B = None if B is None else _Conjugated.apply(B)
    return _s4d(log_dt, A, B, C, length, discretization)


def _s4_dense(Lambda, P, Q, B, dt):
    """The conjugate-doubled bilinear system: Abar (H, 2n, 2n), Bbar (H, 2n)."""
    pairs = [torch.cat([x, x.conj()], dim=-1) for x in (Lambda, P, Q, B)]
    L2, P2, Q2, B2 = pairs
    eye = torch.eye(L2.shape[-1], dtype=L2.dtype)
    A = torch.diag_embed(L2) - P2[:, :, None] * Q2.conj()[:, None, :]
    half = dt[:, None, None] / 2 * A
    Abar = torch.linalg.solve(eye - half, eye + half)
    Bbar = torch.linalg.solve(eye - half, (dt[:, None] * B2)[..., None])[..., 0]
    return Abar, Bbar


def torch_s4_krylov(Lambda, P, Q, B, C, log_dt, length):
    """S4's ``_check`` path: the dense bilinear system, then K_l = C2 Abar^l Bbar2 (real part)."""
    Abar, v = _s4_dense(Lambda, P, Q, B, torch.exp(log_dt))
    C2, taps = torch.cat([C, C.conj()], dim=-1), []
    for _ in range(length):
        taps.append((C2 * v).sum(-1))
        v = torch.einsum("hmn,hn->hm", Abar, v)
    return torch.stack(taps, dim=-1).real if taps else log_dt.new_zeros(log_dt.shape[0], 0)


def torch_s4_dplr(Lambda, P, Q, B, C, log_dt, length):
    """S4's fast path (``SSMKernelDPLR.forward``): C~ = C2 (I - Abar^L), the Cauchy sums at the
    roots of unity with the rank-one Woodbury correction, irfft."""
    dt = torch.exp(log_dt)
    Abar, _ = _s4_dense(Lambda, P, Q, B, dt)
    if length == 0:
        return log_dt.new_zeros(log_dt.shape[0], 0)
    eye = torch.eye(Abar.shape[-1], dtype=Abar.dtype)
    C2 = torch.cat([C, C.conj()], dim=-1)
    c_tilde = torch.einsum("hm,hmn->hn", C2, eye - torch.linalg.matrix_power(Abar, length))
    omega = torch.exp(-2j * torch.pi * torch.arange(length // 2 + 1, dtype=torch.float64) / length)
    s = (1 + omega) / 2
    L2, P2, B2 = (torch.cat([x, x.conj()], dim=-1) for x in (Lambda, P, B))
    q_star = torch.cat([Q, Q.conj()], dim=-1).conj()
    inverse = dt[:, None, None] / ((1 - omega) - s * dt[:, None, None] * L2[..., None])

    def cauchy(a, b):
        return torch.einsum("hm,hmk->hk", a * b, inverse)

    spectrum = cauchy(c_tilde, B2) - s * cauchy(c_tilde, P2) * cauchy(q_star, B2) / (1 + s * cauchy(q_star, P2))
    return torch.fft.irfft(spectrum, n=length)


def s4_dplr_with_q_taken_holomorphically(Lambda, P, Q, B, C, log_dt, length):
    """S4's DPLR kernel whose backward treats Q, which enters conjugated (A = diag(Lambda) - P Q^*),
    as a holomorphic input: Q's gradient comes back conjugated (the forward is right)."""
    return torch_s4_dplr(Lambda, P, _Conjugated.apply(Q), B, C, log_dt, length)
