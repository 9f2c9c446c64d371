"""FFT convolution of LTI / S4 / S4D layers with cuFFT: Krylov or Vandermonde kernel, then
rfft, pointwise product, irfft, padded to n = T + L so the circular convolution is the causal one.

Written against an array module ``xp`` (CuPy on a GPU, NumPy in CI); no raw CUDA kernel: the
kernel is a log2(L)-step doubling of batched matmuls (``state-spaces/s4``'s ``krylov``), the
convolution is ``xp.fft`` (cuFFT under CuPy, complex64 for float32). float16 inputs are widened
to float32 on the device (cuFFT's half precision only takes powers of two) and the output is
rounded back. Outputs are NaN-filled before they are written.
"""

from __future__ import annotations

import numpy as np

from seqcheck.gpu.xp import array_module, compute_dtype, nan_filled, to_device, to_host


def lti_fft(u, Abar, Bbar, C, D=None, *, xp=None):
    """The form "ssm.lti.fft": y = causal_conv(u, K) + D u with K_l = C Abar^l Bbar, l < T.

    u (B, T, Dch); Abar (N, N) shared or (Dch, N, N); Bbar, C (Dch, N); D (Dch,) or None.
    Returns y (B, T, Dch) in u's dtype.

    The Krylov kernel is generated in float64 (O(Dch N^2 T) flops, small beside the
    convolution) and rounded to the working precision; the FFTs run in complex64. A float32
    Krylov kernel of a non-normal Abar (transient growth) carries errors of |C| |Abar|^l |Bbar|,
    which can exceed the form's float32 budget (4 x the float32 recurrence's error per position:
    ratio up to 1.8, about 1 run in 100 of 100 examples), so the precision split is deliberate.
    """
    xp = array_module(xp)
    out_dtype = u.dtype
    work = compute_dtype(out_dtype)
    u, D = to_device(u, xp, work), to_device(D, xp, work)
    system = (to_device(a, xp, np.float64) for a in (Abar, Bbar, C))
    K = krylov_kernel(*system, u.shape[1], xp).astype(work)
    return to_host(fft_conv_device(u, K, D, xp).astype(out_dtype, copy=False))


def fft_conv(u, K, D=None, *, xp=None):
    """``reference.ssm.fft_conv`` on the device: u (B, T, Dch), K (Dch, L) of any length L, D."""
    xp = array_module(xp)
    out_dtype = u.dtype
    work = compute_dtype(out_dtype)
    u, K, D = (to_device(a, xp, work) for a in (u, K, D))
    return to_host(fft_conv_device(u, K, D, xp).astype(out_dtype, copy=False))


def krylov_kernel(Abar, Bbar, C, length, xp):
    """K (Dch, L), K_l = C Abar^l Bbar, by doubling: [v_0 .. v_{m-1}] -> [.., Abar^m v_0 ..],
    Abar^m -> Abar^2m, so log2(L) batched matmuls instead of L dependent matvecs."""
    channels, N = C.shape
    power = xp.broadcast_to(Abar, (channels, N, N))
    V = Bbar[:, :, None]  # (Dch, N, m)
    while V.shape[-1] < length:
        V = xp.concatenate([V, power @ V], axis=-1)
        if V.shape[-1] < length:
            power = power @ power
    return (C[:, None, :] @ V[..., :length])[:, 0]


def fft_conv_device(u, K, D, xp):
    """irfft(rfft(u, n) rfft(K, n), n)[:T] + D u with n = T + L (no wrap-around), into a
    NaN-filled buffer."""
    batch, T, channels = u.shape
    n = T + K.shape[1]
    spectrum = xp.fft.rfft(u, n=n, axis=1) * xp.fft.rfft(K, n=n, axis=1).T[None]
    out = nan_filled(xp, u.shape, u.dtype)
    out[...] = xp.fft.irfft(spectrum, n=n, axis=1)[:, :T]
    if D is not None:
        out += D * u
    return out


def s4d_kernel(log_dt, A, B, C, length, *, discretization="zoh", xp=None):
    """The form "ssm.s4d.kernel" (conj_halving): K_l = 2 Re sum_n C_n Bbar_n Abar_n^l, (H, L).

    A, B, C (H, n) complex (B None: ones), log_dt (H,). Complex64 for float32 / complex64
    inputs, complex128 for float64. The Vandermonde powers are exp(l log Abar) (exp(l dt A) for
    ZOH), one elementwise exp and one batched (1 x n) @ (n x L) product per channel.
    """
    xp = array_module(xp)
    real = compute_dtype(getattr(log_dt, "dtype", np.float64))
    cplx = np.result_type(real, np.complex64)
    log_dt = to_device(log_dt, xp, real)
    A, C = to_device(A, xp, cplx), to_device(C, xp, cplx)
    B = xp.ones(A.shape, dtype=cplx) if B is None else to_device(B, xp, cplx)
    dtA = xp.exp(log_dt)[:, None] * A
    steps = xp.arange(length, dtype=real)
    if discretization == "zoh":
        Bbar = xp.expm1(dtA) / A * B
        logs = dtA
    elif discretization == "bilinear":
        Bbar = xp.exp(log_dt)[:, None] * B / (1 - dtA / 2)
        logs = xp.log((1 + dtA / 2) / (1 - dtA / 2))
    else:
        raise ValueError(f"discretization: expected 'zoh' or 'bilinear', got {discretization!r}")
    powers = xp.exp(logs[..., None] * steps)  # (H, n, L)
    out = nan_filled(xp, (A.shape[0], length), real)
    out[...] = 2 * ((C * Bbar)[:, None, :] @ powers)[:, 0].real
    return to_host(out)
