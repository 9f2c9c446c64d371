"""S4D: diagonal state space kernels (Gu, Gupta, Goel & Re 2022, "On the Parameterization and
Initialization of Diagonal State Space Models", arXiv:2206.11893).
"""

import numpy as np

from .._checks import (as_complex, as_real, check_bool, check_choice, check_layout, check_shape, even_positive_int,
                       int_in_range, positive_int)

DISCRETIZATIONS = ("zoh", "bilinear")


def _channels(log_dt, name, modes):
    """log_dt (H,) as float64 and the (H, n) array ``modes`` as complex128, with H, n >= 1."""
    log_dt = as_real("log_dt", log_dt)
    check_layout("log_dt", log_dt, "(H,)")
    modes = as_complex(name, modes)
    check_layout(name, modes, "(H, n)")
    check_shape(name, modes, (log_dt.shape[0], modes.shape[1]), "(H, n)", match="log_dt")
    return log_dt, modes


def _s4d_args(log_dt, A, B, C, length, discretization):
    """The checked arguments of an S4D kernel: (dt (H, 1), A, B, C (H, n) complex128, length)."""
    log_dt, A = _channels(log_dt, "A", A)
    B = np.ones(A.shape, dtype=np.complex128) if B is None else as_complex("B", B)
    check_shape("B", B, A.shape, "(H, n)", match="A")
    C = as_complex("C", C)
    check_shape("C", C, A.shape, "(H, n)", match="A")
    length = int_in_range("length", length, 0)
    check_choice("discretization", discretization, DISCRETIZATIONS)
    dt = np.exp(log_dt)[:, None]
    if discretization == "zoh" and np.any(A == 0):
        raise ValueError("A must be nonzero for discretization 'zoh' (Bbar = (exp(dt A) - 1) / A B); got a 0 entry")
    if discretization == "bilinear" and np.any(dt * A == 2):
        raise ValueError("A must not equal 2/dt for discretization 'bilinear' (1 - dt A/2 = 0); got such an entry")
    return dt, A, B, C, length


def s4d_kernel(log_dt, A, B, C, length, *, discretization="zoh", conj_halving=True):
    """S4D convolution kernel K (H, L) of the diagonal SSM x' = diag(A) x + B u, y = C x.

    log_dt (H,) real, dt = exp(log_dt); A, B, C (H, n) real or complex (B=None means ones, as
    in ``models/s4/s4d.py``, which has no B). Per channel, with the discretisation

        "zoh":       Abar = exp(dt A),                    Bbar = (exp(dt A) - 1) / A * B
        "bilinear":  Abar = (1 + dt A/2) / (1 - dt A/2),  Bbar = dt B / (1 - dt A/2)

    the kernel is the Vandermonde product

        conj_halving=True:   K_l = 2 Re( sum_n C_n Bbar_n Abar_n^l ),   float64
        conj_halving=False:  K_l =       sum_n C_n Bbar_n Abar_n^l,     complex128

    With conj_halving the n given modes stand for N = 2n: each with its conjugate, which
    contributes the conjugate term, hence 2 Re. So ``conj_halving=True`` on (A, B, C) equals
    ``conj_halving=False`` on ([A, conj A], [B, conj B], [C, conj C]) (whose imaginary part is
    zero up to rounding). A need not have negative real part (the kernel then grows), but ZOH
    needs A != 0 and bilinear dt A != 2 (ValueError). NaN or Inf propagate.

    Matches ``state-spaces/s4: models/s4/s4d.py S4DKernel.forward`` (ZOH, B = 1) and
    ``models/s4/s4.py SSMKernelDiag.forward`` (same code in ``src/models/sequence/kernels/ssm.py``)
    with disc 'zoh' or 'bilinear', one channel, ``log_vandermonde_naive``. Differences: dt is per
    channel only (s4's dt_tie=True); exp(dt A) - 1 is evaluated as expm1(dt A); the bilinear
    powers are Abar^l, where s4 takes exp(l log Abar); no bandlimit or state input.
    """
    dt, A, B, C, length = _s4d_args(log_dt, A, B, C, length, discretization)
    conj_halving = check_bool("conj_halving", conj_halving)

    dtA = dt * A
    l = np.arange(length)
    if discretization == "zoh":
        Bbar = np.expm1(dtA) / A * B
        powers = np.exp(dtA[..., None] * l)
    else:
        Bbar = dt * B / (1 - dtA / 2)
        powers = ((1 + dtA / 2) / (1 - dtA / 2))[..., None] ** l
    K = np.einsum("hn,hnl->hl", C * Bbar, powers)
    return 2 * K.real if conj_halving else K


def _init_shape(H, N):
    return positive_int("H", H), even_positive_int("N", N)


def s4d_init_lin(H, N):
    """S4D-Lin diagonal A (H, N/2), complex128: A_n = -1/2 + i pi n, n = 0..N/2-1, every channel.

    N is the full state size (even); the N/2 modes are one of each conjugate pair (use with
    conj_halving=True). Matches ``state-spaces/s4: models/s4/s4d.py S4DKernel.__init__``
    (log_A_real = log 1/2, A_imag = pi n) and ``models/s4/s4.py dplr(init='lin')``, which returns
    the conjugates -1/2 - i pi n (same kernels with B and C conjugated).
    """
    H, N = _init_shape(H, N)
    return np.broadcast_to(-0.5 + 1j * np.pi * np.arange(N // 2), (H, N // 2)).copy()


def s4d_init_inv(H, N):
    """S4D-Inv diagonal A (H, N/2), complex128: A_n = -1/2 + i (N/pi) (N/(2n+1) - 1), n = 0..N/2-1.

    The inverse law follows the asymptotics of the HiPPO-LegS eigenvalues (arXiv:2206.11893,
    Sec. 4). Matches ``state-spaces/s4: models/s4/s4.py dplr(init='inv')`` up to conjugation
    (s4 returns -1/2 - i (N/pi)(N/(2n+1) - 1)).
    """
    H, N = _init_shape(H, N)
    n = np.arange(N // 2)
    return np.broadcast_to(-0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1), (H, N // 2)).copy()
