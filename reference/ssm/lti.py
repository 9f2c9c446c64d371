"""Time-invariant discrete SSM, one input and one output per channel: recurrence, kernel, convolutions.

Every channel d of u (B, T, Dch) runs its own single-input single-output system

    x_t = Abar_d x_{t-1} + Bbar_d u_t,    y_t = C_d x_t + D_d u_t,    x_{-1} = initial state (0)

with Abar (Dch, N, N), or (N, N) shared by every channel, Bbar (Dch, N), C (Dch, N), D (Dch,).
Unrolled, y_t = sum_{l=0}^{t} K_l u_{t-l} + D u_t + C Abar^{t+1} x_{-1} with the kernel
K_l = C Abar^l Bbar (Gu et al. 2022, S4, arXiv:2111.00396, eqs. (2)-(5)).

Signals, kernels and states are not checked for NaN or Inf: they propagate through the
arithmetic, to later outputs only in the recurrent and direct forms, to every output in
``fft_conv``. ``lti_recurrent`` and ``lti_kernel`` also run in exact arithmetic on object arrays
of fractions.Fraction (then every input must be rational, and so is every output).
"""

import numpy as np

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, int_in_range


def _array(name, x, *, complex_ok=False, exact_ok=False):
    """``as_real``, with an object array as Fractions if ``exact_ok`` (exact arithmetic)."""
    a = as_real(name, x, complex_ok=complex_ok, exact_ok=exact_ok)
    return as_fractions(name, a) if a.dtype == object else a


def _system(Abar, Bbar, C):
    """Abar broadcast to (Dch, N, N), Bbar and C (Dch, N), each float64 (complex128 if complex;
    Fractions if given as an object array)."""
    Abar, Bbar, C = (_array(name, a, complex_ok=True, exact_ok=True)
                     for name, a in (("Abar", Abar), ("Bbar", Bbar), ("C", C)))
    channels, n = check_layout("C", C, "(Dch, N)")
    check_shape("Bbar", Bbar, (channels, n), "(Dch, N)", match="C")
    if Abar.shape == (n, n):
        Abar = np.broadcast_to(Abar, (channels, n, n))
    check_shape("Abar", Abar, (channels, n, n), "(N, N) or (Dch, N, N)", match="C")
    return Abar, Bbar, C


def _signal(u, channels, source, exact_ok=False):
    u = _array("u", u, exact_ok=exact_ok)
    if u.ndim != 3 or u.shape[2] != channels:
        raise ValueError(f"u must have shape (B, T, Dch)=(B, T, {channels}) to match {source}; got shape {u.shape}")
    return u


def _skip(D, channels, source, exact_ok=False):
    if D is None:
        return np.zeros(channels, dtype=object if exact_ok else np.float64)
    D = _array("D", D, exact_ok=exact_ok)
    check_shape("D", D, (channels,), "(Dch,)", match=source)
    return D


def lti_recurrent(u, Abar, Bbar, C, D=None, *, initial_state=None, return_state=False):
    """y (B, T, Dch) of the recurrence x_t = Abar x_{t-1} + Bbar u_t, y_t = C x_t + D u_t.

    u (B, T, Dch); Abar (Dch, N, N) or (N, N) shared; Bbar, C (Dch, N); D (Dch,) or None (no
    skip); initial_state x_{-1} (B, Dch, N) or None (zeros). All real; returns float64, and with
    return_state=True the pair (y, x_{T-1}), so that a run over [u1; u2] equals a run over u2
    started from the state left by u1. Matches the dense step of ``state-spaces/s4:
    models/s4/s4.py SSMKernelDPLR.step`` (``_step_state`` then ``y = C x``) and
    ``FFTConv.step`` (the D skip), in the real (Dch, N) state layout of seqcheck.
    """
    return_state = check_bool("return_state", return_state)
    Abar, Bbar, C = _system(Abar, Bbar, C)
    for name, a in (("Abar", Abar), ("Bbar", Bbar), ("C", C)):
        if np.iscomplexobj(a):
            raise TypeError(f"{name} must hold real numbers (lti_recurrent takes a real system); got {a.dtype}")
    channels, n = C.shape
    u = _signal(u, channels, "C", exact_ok=True)
    exact = object in (Abar.dtype, Bbar.dtype, C.dtype, u.dtype)
    D = _skip(D, channels, "C", exact_ok=True)
    batch, length, _ = u.shape
    dtype = object if exact else np.float64
    if initial_state is None:
        x = np.zeros((batch, channels, n), dtype=dtype)
    else:
        x = _array("initial_state", initial_state, exact_ok=True)
        check_shape("initial_state", x, (batch, channels, n), "(B, Dch, N)", match="u and C")

    y = np.empty((batch, length, channels), dtype=dtype)
    for t in range(length):
        x = np.einsum("dmn,bdn->bdm", Abar, x) + Bbar * u[:, t, :, None]
        y[:, t] = np.einsum("dn,bdn->bd", C, x) + D * u[:, t]
    return (y, x) if return_state else y


def lti_kernel(Abar, Bbar, C, length):
    """Convolution kernel K (Dch, L) with K_l = C Abar^l Bbar, l = 0..L-1 (Krylov form).

    Abar (Dch, N, N) or (N, N) shared; Bbar, C (Dch, N); float64 result, complex128 if any input
    is complex. Computed by the Krylov recurrence v_0 = Bbar, v_{l+1} = Abar v_l, K_l = C v_l.
    Matches ``state-spaces/s4: src/models/functional/krylov.py krylov(L, A, b, c)`` (and
    ``krylov_sequential``), x[i, l] = c[i] @ A^l @ b[i], as used by ``models/s4/s4.py
    SSMKernelDPLR._check``.
    """
    Abar, Bbar, C = _system(Abar, Bbar, C)
    length = int_in_range("length", length, 0)
    K = np.empty((C.shape[0], length), dtype=np.result_type(Abar, Bbar, C))
    v = Bbar
    for l in range(length):
        K[:, l] = np.einsum("dn,dn->d", C, v)
        v = np.einsum("dmn,dn->dm", Abar, v)
    return K


def _conv_args(u, K, D):
    K = as_real("K", K)
    check_layout("K", K, "(Dch, L)", ("L",))
    return _signal(u, K.shape[0], "K"), K, _skip(D, K.shape[0], "K")


def causal_conv(u, K, D=None):
    """Direct causal convolution y_t = sum_{l=0}^{min(t, L-1)} K_l u_{t-l} + D u_t, shape (B, T, Dch).

    u (B, T, Dch) real, K (Dch, L) real with any L >= 0 (taps at l >= T never reach an output),
    D (Dch,) or None. Evaluated literally as a sum over lags with u_{t-l} = 0 for t < l.
    """
    u, K, D = _conv_args(u, K, D)
    length = u.shape[1]
    lag = np.arange(length)[:, None] - np.arange(K.shape[1])[None, :]  # (T, L): t - l
    shifted = np.where((lag >= 0)[None, :, :, None], u[:, np.clip(lag, 0, None)], 0.0)  # (B, T, L, Dch)
    return np.einsum("btld,dl->btd", shifted, K) + D * u


def fft_conv(u, K, D=None):
    """The causal convolution of ``causal_conv`` through the FFT, shape (B, T, Dch).

        y = irfft(rfft(u, n) * rfft(K, n), n)[:T] + D u,    n = T + L

    Zero padding to n >= T + L - 1 makes the circular convolution equal the linear one on the
    first T outputs, for every T and L. Matches ``state-spaces/s4: models/s4/s4.py FFTConv.forward``
    (n = l_kernel + L, i.e. 2L for a full-length kernel, as ``models/s4/s4d.py S4D.forward``).
    """
    u, K, D = _conv_args(u, K, D)
    length = u.shape[1]
    n = max(length + K.shape[1], 1)  # T = L = 0: one (zero) point
    spectrum = np.fft.rfft(u, n=n, axis=1) * np.fft.rfft(K, n=n, axis=1).T[None]
    return np.fft.irfft(spectrum, n=n, axis=1)[:, :length] + D * u
