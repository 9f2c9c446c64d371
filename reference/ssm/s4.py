"""S4 convolution kernel of a diagonal-plus-low-rank SSM (Gu, Goel & Re 2022, "Efficiently Modeling
Long Sequences with Structured State Spaces", arXiv:2111.00396, Algorithm 1).

Parameters, per channel h (shapes (H, n)): the state matrix is A = diag(Lambda) - P Q^* (rank 1,
Q^* the conjugate transpose), input B, output row C (y = C x, not conjugated), dt = exp(log_dt)
(H,). As in s4, the n modes are one of each conjugate pair: the system is the one of size
N = 2n with Lambda2 = [Lambda, conj Lambda], P2 = [P, conj P], Q2, B2, C2 likewise, whose
kernel is real. Its bilinear discretisation is

    Abar = (I - dt/2 A)^-1 (I + dt/2 A),    Bbar = (I - dt/2 A)^-1 dt B,

and both functions return the truncated Krylov kernel K_l = C2 Abar^l Bbar2, l = 0..L-1.
Parameters Lambda, P, Q, B and log_dt must be finite (ValueError); NaN in C propagates.
"""

import numpy as np

from .._checks import as_complex, check_shape, int_in_range
from .lti import lti_kernel
from .s4d import _channels


def _dplr_args(Lambda, P, Q, B, C, log_dt, length):
    log_dt, Lambda = _channels(log_dt, "Lambda", Lambda)
    P, Q, B, C = (as_complex(name, x) for name, x in zip("PQBC", (P, Q, B, C)))
    for name, x in zip("PQBC", (P, Q, B, C)):
        check_shape(name, x, Lambda.shape, "(H, n)", match="Lambda")
    for name, x in (("Lambda", Lambda), ("P", P), ("Q", Q), ("B", B), ("log_dt", log_dt)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} must be finite; got NaN or Inf entries")
    return Lambda, P, Q, B, C, np.exp(log_dt), int_in_range("length", length, 0)


def _pairs(x):
    """(H, n) -> (H, 2n): each mode followed, after all n, by its conjugate."""
    return np.concatenate([x, x.conj()], axis=-1)


def _dense_bilinear(Lambda, P, Q, B, dt):
    """Abar (H, 2n, 2n) and Bbar (H, 2n) of the conjugate-doubled system, bilinear."""
    A = np.einsum("hm,mn->hmn", _pairs(Lambda), np.eye(2 * Lambda.shape[1])) - np.einsum(
        "hm,hn->hmn", _pairs(P), _pairs(Q).conj()
    )
    eye = np.eye(A.shape[-1])
    half = dt[:, None, None] / 2 * A
    try:
        Abar = np.linalg.solve(eye - half, eye + half)
        Bbar = np.linalg.solve(eye - half, (dt[:, None] * _pairs(B))[..., None])[..., 0]
    except np.linalg.LinAlgError:
        raise ValueError("I - dt/2 A is singular for some channel: 2/dt is an eigenvalue of A") from None
    return Abar, Bbar


def s4_krylov_kernel(Lambda, P, Q, B, C, log_dt, length):
    """S4 kernel K (H, L), float64, by materialising the bilinear Abar (2n x 2n) and powering it.

        K_l = C2 Abar^l Bbar2    (imaginary part, zero up to rounding by conjugate symmetry, dropped)

    The slow path that checks ``s4_dplr_kernel``; matches ``state-spaces/s4: models/s4/s4.py
    SSMKernelDPLR._check`` (``krylov(L, dA, dB, dC)`` on the dense ``_setup_state`` matrices),
    with C the original C, not C~.
    """
    Lambda, P, Q, B, C, dt, length = _dplr_args(Lambda, P, Q, B, C, log_dt, length)
    Abar, Bbar = _dense_bilinear(Lambda, P, Q, B, dt)
    return lti_kernel(Abar, Bbar, _pairs(C), length).real


def s4_dplr_kernel(Lambda, P, Q, B, C, log_dt, length):
    """S4 kernel K (H, L), float64, through the generating function at the roots of unity.

    1. C~ = C2 (I - Abar^L), so that at omega^L = 1 the truncated generating function is
           K^(omega) = sum_{l<L} K_l omega^l = C~ (I - omega Abar)^-1 Bbar2.
    2. Nodes omega_k = exp(-2 pi i k / L), k = 0..floor(L/2) (the rfft frequencies).
    3. With the bilinear Abar, (I - omega Abar)^-1 Bbar = [(1-omega) I - (1+omega) dt/2 A]^-1 dt B,
       and with the Cauchy sums over the 2n modes
           k_ab(omega) = sum_m a_m b_m dt / ((1 - omega) - (1 + omega) dt Lambda2_m / 2)
       the rank-1 Woodbury identity gives, with s = (1 + omega)/2,
           K^(omega) = k_{C~ B} - s k_{C~ P} k_{Q^* B} / (1 + s k_{Q^* P}).
    4. K = irfft(K^, n=L).

    This is Algorithm 1 of the paper with every Cauchy sum multiplied by s: the paper's (and
    s4's) r(omega) = sum v / (2/dt (1-omega)/(1+omega) - Lambda) equals s k, and its factor
    2/(1+omega) is 1/s. The two are equal where both are defined; this form also holds at
    omega = -1 (a node for even L), where the paper's form is 0 * inf and s4 evaluates it at
    the float-rounded omega with 1 + omega ~ 1e-16 i.

    Convention: C is the original output row and C~ is formed here (Algorithm 1, line 1), so
    the result equals ``s4_krylov_kernel``, the truncated Krylov kernel of (Abar, Bbar, C).
    ``state-spaces/s4: models/s4/s4.py SSMKernelDPLR.forward`` (the same code as
    ``src/models/sequence/kernels/ssm.py SSMKernelDPLR.forward``) treats its parameter C as
    C~ already (formed once by ``_setup_C``); pass C with C~ = C (I - Abar^L) to compare. Other
    matches and differences: s4 writes A = diag(Lambda) - P Q^T with Q = conj(P) and does not
    conjugate, so its configuration is Q = P here; rank 1 only (s4 also has rank 2 and general);
    no state input, rate or length doubling; the paper writes C^* where s4 and this use C.
    """
    Lambda, P, Q, B, C, dt, length = _dplr_args(Lambda, P, Q, B, C, log_dt, length)
    Abar, _ = _dense_bilinear(Lambda, P, Q, B, dt)
    if length == 0:  # no roots of unity to evaluate at
        return np.zeros((Lambda.shape[0], 0))
    eye = np.eye(Abar.shape[-1])

    # 1. truncation of the generating function to L terms
    c_tilde = np.einsum("hm,hmn->hn", _pairs(C), eye - np.linalg.matrix_power(Abar, length))

    # 2. roots of unity
    omega = np.exp(-2j * np.pi * np.arange(length // 2 + 1) / length)
    s = (1 + omega) / 2

    # 3. Cauchy sums and the Woodbury correction
    inverse = dt[:, None, None] / ((1 - omega) - s * dt[:, None, None] * _pairs(Lambda)[..., None])  # (H, 2n, K)

    def cauchy(a, b):
        return np.einsum("hm,hmk->hk", a * b, inverse)

    B2, P2, q_star = _pairs(B), _pairs(P), _pairs(Q).conj()
    spectrum = cauchy(c_tilde, B2) - s * cauchy(c_tilde, P2) * cauchy(q_star, B2) / (1 + s * cauchy(q_star, P2))

    # 4. back to coefficients
    return np.fft.irfft(spectrum, n=length)
