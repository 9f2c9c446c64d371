"""Exact float64 gradients of the LTI recurrence, the Krylov kernel, and the S4D and S4 kernels
with respect to their parameters.

Complex parameters get the gradient dL/dRe + i dL/dIm of the real objective L (torch's
convention). For L = Re f(z) with f holomorphic that is conj(f'(z)); a holomorphic map Y = F(X)
carries it back as G_X = J^H G_Y (the conjugate-transposed Jacobian), a real parameter t as
dL/dt = Re sum conj(G_Y) dY/dt, and an input entering conjugated (S4's Q, the conjugate halves)
as the conjugate of its half's gradient.

LTI recurrence (``lti_recurrent``), per channel, with dy the output's cotangent and lambda_t the
cotangent of x_t (lambda_{T-1} = dx_{T-1} + C^T dy_{T-1}):

    lambda_t = Abar^T lambda_{t+1} + C^T dy_t,   du_t = Bbar . lambda_t + D dy_t,
    dAbar = sum_{b,t} lambda_t x_{t-1}^T,   dBbar = sum lambda_t u_t,   dC = sum dy_t x_t,
    dD = sum dy_t u_t,   dx_{-1} = Abar^T lambda_0

(dAbar summed over the channels when Abar is shared). Krylov kernel (``lti_kernel``), K_l = C
Abar^l Bbar with a real cotangent dK on Re K: with v_l = Abar^l Bbar and the reverse sums
mu_l = dK_l C + Abar^T mu_{l+1},

    G_C = sum_l dK_l conj(v_l),   G_Abar = conj(sum_l mu_{l+1} v_l^T),   G_Bbar = conj(mu_0).

These are the gradients training takes by autograd through ``state-spaces/s4``'s
``models/s4/s4.py`` (``FFTConv`` and ``SSMKernelDPLR``, dense ``_check`` or fast ``forward``) and
``models/s4/s4d.py S4DKernel``, in the layouts of ``reference.ssm``. Verified in the tests against
central differences (complex directions for complex parameters), the complex step and torch
autograd (both S4 paths).
"""

import numpy as np

from .._checks import as_real, check_shape
from .lti import _signal, _skip, _system, lti_kernel, lti_recurrent
from .s4 import _dense_bilinear, _dplr_args, _pairs
from .s4d import _s4d_args


def lti_vjp(u, Abar, Bbar, C, D=None, *, cotangent, state_cotangent=None, initial_state=None):
    """The gradients of <y, cotangent> (+ <x_{T-1}, state_cotangent>) for ``lti_recurrent(u, Abar,
    Bbar, C, D, initial_state=)`` (module docstring): {"u", "Abar" (its shape), "Bbar", "C", "D"
    (when given), "initial_state" (B, Dch, N)}."""
    y, _ = lti_recurrent(u, Abar, Bbar, C, D, initial_state=initial_state, return_state=True)  # checks the inputs
    A, Bb, Cc = _system(Abar, Bbar, C)
    channels, n = Cc.shape
    u = _signal(u, channels, "C")
    batch, T, _ = u.shape
    skip = _skip(D, channels, "C")
    dy = as_real("cotangent", cotangent)
    check_shape("cotangent", dy, y.shape, "(B, T, Dch)", match="u")
    lam = np.zeros((batch, channels, n))
    if state_cotangent is not None:
        lam = as_real("state_cotangent", state_cotangent)
        check_shape("state_cotangent", lam, (batch, channels, n), "(B, Dch, N)", match="u and C")
    x = np.zeros((batch, channels, n)) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    states = [x]
    for t in range(T):
        states.append(np.einsum("dmn,bdn->bdm", A, states[-1]) + Bb * u[:, t, :, None])
    dA, du = np.zeros(A.shape), np.zeros(u.shape)
    dB, dC = np.zeros(Bb.shape), np.zeros(Cc.shape)
    for t in reversed(range(T)):
        lam = lam + Cc * dy[:, t, :, None]
        du[:, t] = (Bb * lam).sum(-1) + skip * dy[:, t]
        dA += np.einsum("bdm,bdn->dmn", lam, states[t])
        dB += (lam * u[:, t, :, None]).sum(0)
        dC += (dy[:, t, :, None] * states[t + 1]).sum(0)
        lam = np.einsum("dmn,bdm->bdn", A, lam)
    grads = {"u": du, "Abar": dA if np.ndim(Abar) == 3 else dA.sum(0), "Bbar": dB, "C": dC, "initial_state": lam}
    if D is not None:
        grads["D"] = (dy * u).sum(axis=(0, 1))
    return grads


def lti_kernel_vjp(Abar, Bbar, C, length, *, cotangent):
    """The gradients of <Re K, cotangent> for ``K = lti_kernel(Abar, Bbar, C, length)``, cotangent
    real (Dch, L): {"Abar" (Dch, N, N), "Bbar", "C" (Dch, N)}, complex when the system is (module
    docstring)."""
    K = lti_kernel(Abar, Bbar, C, length)  # checks the inputs
    A, Bb, Cc = _system(Abar, Bbar, C)
    dK = as_real("cotangent", cotangent)
    check_shape("cotangent", dK, K.shape, "(Dch, L)", match="the kernel")
    dtype = np.result_type(A, Bb, Cc)
    vectors, v = [], Bb.astype(dtype)
    for _ in range(K.shape[1]):
        vectors.append(v)
        v = np.einsum("dmn,dn->dm", A, v)
    mu, dA = np.zeros(Cc.shape, dtype=dtype), np.zeros(A.shape, dtype=dtype)
    dC = np.zeros(Cc.shape, dtype=dtype)
    for l in reversed(range(K.shape[1])):
        dA += mu[:, :, None] * vectors[l][:, None, :]  # mu_{l+1} v_l^T
        mu = dK[:, l, None] * Cc + np.einsum("dmn,dm->dn", A, mu)
        dC += dK[:, l, None] * np.conj(vectors[l])
    return {"Abar": np.conj(dA), "Bbar": np.conj(mu), "C": dC}


def s4d_vjp(log_dt, A, B, C, length, *, cotangent, discretization="zoh"):
    """The gradients of <K, cotangent> for ``K = s4d_kernel(log_dt, A, B, C, length,
    discretization=)`` (conj_halving, real K): {"log_dt" (H,), "A", "B" (when given), "C" (H, n)}.

    With f_nl = C_n B_n beta_n Abar_n^l (beta = (exp(dt A) - 1)/A, or dt/(1 - dt A/2)) and
    K_l = 2 Re sum_n f_nl, every parameter's gradient is 2 sum_l dK_l conj(df_nl/dp): with
    S0 = sum_l dK_l Abar^l and S1 = sum_l dK_l l Abar^(l-1),

        G_C = 2 conj(B beta S0),   G_B = 2 conj(C beta S0),   G_A = 2 conj(C B (beta_A S0 + beta Abar_A S1)),
        dL/d log_dt = 2 dt Re sum_n C B (beta_dt S0 + beta Abar_dt S1),

    ZOH: Abar_A = dt Abar, beta_A = (dt Abar - beta)/A, Abar_dt = A Abar, beta_dt = Abar; bilinear,
    with m = 1 - dt A/2: Abar_A = dt/m^2, beta_A = dt^2/(2 m^2), Abar_dt = A/m^2, beta_dt = 1/m^2."""
    dt, A_, B_, C_, length = _s4d_args(log_dt, A, B, C, length, discretization)
    dK = as_real("cotangent", cotangent)
    check_shape("cotangent", dK, (A_.shape[0], length), "(H, L)", match="A and length")
    z = dt * A_
    if discretization == "zoh":
        Abar, beta = np.exp(z), np.expm1(z) / A_
        Abar_A, beta_A, Abar_dt, beta_dt = dt * Abar, (dt * Abar - beta) / A_, A_ * Abar, Abar
    else:
        m = 1 - z / 2
        Abar, beta = (1 + z / 2) / m, dt / m
        Abar_A, beta_A, Abar_dt, beta_dt = dt / m**2, dt**2 / (2 * m**2), A_ / m**2, 1 / m**2
    l = np.arange(length)
    powers = Abar[..., None] ** l
    slopes = np.where(l > 0, l * Abar[..., None] ** np.maximum(l - 1, 0), 0)  # d Abar^l / d Abar
    S0, S1 = (np.einsum("hl,hnl->hn", dK, x) for x in (powers, slopes))
    CB = C_ * B_
    grads = {"log_dt": 2 * dt[:, 0] * np.real(CB * (beta_dt * S0 + beta * Abar_dt * S1)).sum(-1),
             "A": 2 * np.conj(CB * (beta_A * S0 + beta * Abar_A * S1)), "C": 2 * np.conj(B_ * beta * S0)}
    if B is not None:
        grads["B"] = 2 * np.conj(C_ * beta * S0)
    return grads


def s4_krylov_vjp(Lambda, P, Q, B, C, log_dt, length, *, cotangent):
    """The gradients of <K, cotangent> for ``K = s4_krylov_kernel(Lambda, P, Q, B, C, log_dt,
    length)``: {"Lambda", "P", "Q", "B", "C" (H, n) complex, "log_dt" (H,)}.

    ``lti_kernel_vjp`` gives G_Abar, G_Bbar and G_C2 of the conjugate-doubled system; through the
    bilinear solves Abar = M^-1 N, Bbar = M^-1 dt B2 (M, N = I -+ dt/2 A),

        G_N = M^-H G_Abar,   G_X = M^-H G_Bbar,   G_M = -G_N Abar^H - G_X Bbar^H,
        G_A = dt/2 (G_N - G_M),   G_B2 = dt G_X,   dL/d dt = Re <G_N - G_M, A/2> + Re <G_X, B2>;

    through A = diag(Lambda2) - P2 Q2^H, G_Lambda2 = diag(G_A), G_P2 = -G_A Q2, G_Q2 = -G_A^H P2
    (Q enters conjugated); each pair [x, conj x] gives G_x = G[:n] + conj(G[n:])."""
    Lambda, P, Q, B, C, dt, length = _dplr_args(Lambda, P, Q, B, C, log_dt, length)
    Abar, Bbar = _dense_bilinear(Lambda, P, Q, B, dt)
    grads = lti_kernel_vjp(Abar, Bbar, _pairs(C), length, cotangent=cotangent)
    n = Lambda.shape[1]
    P2, Q2, B2 = _pairs(P), _pairs(Q), _pairs(B)
    A = np.einsum("hm,mn->hmn", _pairs(Lambda), np.eye(2 * n)) - np.einsum("hm,hn->hmn", P2, Q2.conj())
    M_H = np.conj(np.swapaxes(np.eye(2 * n) - dt[:, None, None] / 2 * A, -1, -2))
    G_N = np.linalg.solve(M_H, grads["Abar"])
    G_X = np.linalg.solve(M_H, grads["Bbar"][..., None])[..., 0]
    G_M = -G_N @ np.conj(np.swapaxes(Abar, -1, -2)) - G_X[..., :, None] * np.conj(Bbar)[..., None, :]
    G_A = dt[:, None, None] / 2 * (G_N - G_M)
    d_dt = np.real(np.conj(G_N - G_M) * A / 2).sum(axis=(-2, -1)) + np.real(np.conj(G_X) * B2).sum(-1)

    def unpaired(G):
        return G[:, :n] + np.conj(G[:, n:])

    return {"Lambda": unpaired(np.diagonal(G_A, axis1=-2, axis2=-1)),
            "P": unpaired(-np.einsum("hmn,hn->hm", G_A, Q2)),
            "Q": unpaired(-np.einsum("hmn,hm->hn", np.conj(G_A), P2)),
            "B": unpaired(dt[:, None] * G_X), "C": unpaired(grads["C"]), "log_dt": dt * d_dt}
