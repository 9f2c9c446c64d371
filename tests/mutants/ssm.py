"""Deliberately wrong state space model implementations, each rejected by a claim or by check().

Small plain-NumPy functions with the reference's signature, each one bug a kernel author could
write: a transposed state matrix, a kernel one power off, an FFT without enough padding, a state
that is not carried, the wrong discretisation, a DPLR kernel without its Woodbury correction.
"""

import numpy as np

from seqcheck.reference.ssm import discretize, fft_conv, lti_kernel, lti_recurrent, s4d_kernel


def _per_channel(Abar, C):
    Abar = np.asarray(Abar)
    return np.broadcast_to(Abar, (C.shape[0],) + Abar.shape[-2:])


def recurrence_abar_transposed(u, Abar, Bbar, C, D=None, *, initial_state=None, return_state=False):
    """The recurrence with x_t = Abar^T x_{t-1} + Bbar u_t (an einsum index swapped)."""
    Abar = np.swapaxes(_per_channel(Abar, np.asarray(C)), -1, -2)
    return lti_recurrent(u, Abar, Bbar, C, D, initial_state=initial_state, return_state=return_state)


def kernel_abar_transposed(u, Abar, Bbar, C, D=None):
    """The convolution form whose Krylov kernel powers Abar^T: K_l = C (Abar^T)^l Bbar."""
    Abar = np.swapaxes(_per_channel(Abar, np.asarray(C)), -1, -2)
    return fft_conv(u, lti_kernel(Abar, Bbar, C, np.shape(u)[1]), D)


def kernel_off_by_one_power(Abar, Bbar, C, length):
    """K_l = C Abar^(l+1) Bbar: the Krylov loop multiplies before it reads."""
    Abar = _per_channel(Abar, np.asarray(C))
    return lti_kernel(Abar, np.einsum("dmn,dn->dm", Abar, np.asarray(Bbar)), C, length)


def convolution_kernel_off_by_one_power(u, Abar, Bbar, C, D=None):
    """The direct convolution with the kernel one power off."""
    from seqcheck.reference.ssm import causal_conv

    return causal_conv(u, kernel_off_by_one_power(Abar, Bbar, C, np.shape(u)[1]), D)


def fft_circular(u, Abar, Bbar, C, D=None):
    """FFT convolution without zero padding (n = T): a circular convolution that wraps around."""
    u = np.asarray(u, dtype=np.float64)
    T = u.shape[1]
    K = lti_kernel(Abar, Bbar, C, T)
    y = np.fft.irfft(np.fft.rfft(u, n=T, axis=1) * np.fft.rfft(K, n=T, axis=1).T[None], n=T, axis=1)
    return y + (0.0 if D is None else np.asarray(D) * u)


def fft_padded_to_2T(u, K, D=None):
    """FFT convolution padded to 2T, S4's n = 2L for a full-length kernel, whatever the kernel's
    length: a kernel longer than T + 1 wraps around."""
    u, K = np.asarray(u, dtype=np.float64), np.asarray(K, dtype=np.float64)
    T = u.shape[1]
    n = 2 * T
    y = np.fft.irfft(np.fft.rfft(u, n=n, axis=1) * np.fft.rfft(K, n=n, axis=1).T[None], n=n, axis=1)[:, :T]
    return y + (0.0 if D is None else np.asarray(D) * u)


def recurrence_state_not_carried(u, Abar, Bbar, C, D=None, *, initial_state=None, return_state=False):
    """A recurrence that returns its state but ignores initial_state (always starts at zero)."""
    return lti_recurrent(u, Abar, Bbar, C, D, initial_state=None, return_state=return_state)


def zoh_as_forward_euler(A, B, step, method, *, alpha=None):
    """Euler used where ZOH is claimed: method 'zoh' returns I + h A, h B."""
    return discretize(A, B, step, "forward_euler" if method == "zoh" else method, alpha=alpha)


def bilinear_plain_input_matrix(A, B, step, method, *, alpha=None):
    """The bilinear Abar with Bbar = h B (the resolvent (I - h/2 A)^-1 forgotten): first order."""
    Abar, Bbar = discretize(A, B, step, method, alpha=alpha)
    return (Abar, step * np.asarray(B, dtype=np.float64)) if method == "bilinear" else (Abar, Bbar)


def _pairs(x):
    return np.concatenate([x, x.conj()], axis=-1)


def dplr_without_woodbury(Lambda, P, Q, B, C, log_dt, length):
    """S4's generating-function kernel with C~ from the full Abar but the rank-1 Woodbury
    correction left out: K^(omega) = k_{C~ B}(omega) only."""
    Lambda, P, Q, B, C = (np.asarray(x, dtype=np.complex128) for x in (Lambda, P, Q, B, C))
    dt = np.exp(np.asarray(log_dt, dtype=np.float64))
    n2 = 2 * Lambda.shape[1]
    A = np.einsum("hm,mn->hmn", _pairs(Lambda), np.eye(n2)) - np.einsum("hm,hn->hmn", _pairs(P), _pairs(Q).conj())
    half = dt[:, None, None] / 2 * A
    Abar = np.linalg.solve(np.eye(n2) - half, np.eye(n2) + half)
    c_tilde = np.einsum("hm,hmn->hn", _pairs(C), np.eye(n2) - np.linalg.matrix_power(Abar, length))
    omega = np.exp(-2j * np.pi * np.arange(length // 2 + 1) / length)
    inverse = dt[:, None, None] / ((1 - omega) - (1 + omega) / 2 * dt[:, None, None] * _pairs(Lambda)[..., None])
    return np.fft.irfft(np.einsum("hm,hmk->hk", c_tilde * _pairs(B), inverse), n=length)


def krylov_forward_euler(Lambda, P, Q, B, C, log_dt, length):
    """The S4 Krylov kernel of the forward-Euler system (I + dt A, dt B) instead of the bilinear one."""
    Lambda, P, Q, B, C = (np.asarray(x, dtype=np.complex128) for x in (Lambda, P, Q, B, C))
    dt = np.exp(np.asarray(log_dt, dtype=np.float64))
    n2 = 2 * Lambda.shape[1]
    A = np.einsum("hm,mn->hmn", _pairs(Lambda), np.eye(n2)) - np.einsum("hm,hn->hmn", _pairs(P), _pairs(Q).conj())
    Abar, Bbar = np.eye(n2) + dt[:, None, None] * A, dt[:, None] * _pairs(B)
    return lti_kernel(Abar, Bbar, _pairs(C), length).real


def s4d_without_conjugate_doubling(log_dt, A, B, C, length, *, discretization="zoh"):
    """S4D with conjugate halving but Re instead of 2 Re: half the kernel."""
    return s4d_kernel(log_dt, A, B, C, length, discretization=discretization, conj_halving=False).real


def s4d_zoh_euler_input(log_dt, A, B, C, length, *, discretization="zoh"):
    """S4D whose ZOH Bbar is dt B (Euler's) instead of (exp(dt A) - 1) / A B."""
    if discretization != "zoh":
        return s4d_kernel(log_dt, A, B, C, length, discretization=discretization)
    dt = np.exp(np.asarray(log_dt, dtype=np.float64))[:, None]
    A = np.asarray(A, dtype=np.complex128)
    B = np.ones(A.shape) if B is None else np.asarray(B, dtype=np.complex128)
    powers = np.exp((dt * A)[..., None] * np.arange(length))
    return 2 * np.einsum("hn,hnl->hl", np.asarray(C) * dt * B, powers).real


MUTANTS = {
    "ssm.lti.convolution == ssm.lti.recurrent": convolution_kernel_off_by_one_power,
    "ssm.lti.fft == ssm.lti.recurrent": fft_circular,
    "ssm.conv.fft_every_length": fft_padded_to_2T,
    "ssm.lti.state_continuation": recurrence_state_not_carried,
    "ssm.lti.krylov_exact": kernel_off_by_one_power,
    "ssm.s4.dplr_kernel == ssm.s4.krylov_kernel": dplr_without_woodbury,
    "ssm.s4d.kernel == ssm.s4d.krylov": s4d_without_conjugate_doubling,
    "ssm.discretize.scipy": zoh_as_forward_euler,
    "ssm.discretize.order": bilinear_plain_input_matrix,
}
"""The mutant each claim of the family must reject, by claim key."""
