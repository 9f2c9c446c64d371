"""Unit tests of the time-invariant SSM references: discretisation, recurrence/kernel/convolution
forms, HiPPO-LegS NPLR/DPLR identities, S4D and S4 kernels."""

import math

import mpmath
import numpy as np
import pytest
import scipy.linalg
import scipy.signal

from seqcheck.reference.ssm import (
    causal_conv,
    discretize,
    dplr_from_legs,
    fft_conv,
    hippo_legs,
    hippo_legs_nplr,
    lti_kernel,
    lti_recurrent,
    s4_dplr_kernel,
    s4_krylov_kernel,
    s4d_init_inv,
    s4d_init_lin,
    s4d_kernel,
)

EPS = np.finfo(np.float64).eps

# a stable, non-normal 3x3 system with eigenvalues -1.28 +- 2.04i and -1.95
A3 = np.array([[-1.0, 2.0, 0.0], [-2.0, -1.5, 0.5], [0.0, -0.5, -2.0]])
B3 = np.array([1.0, 0.5, -1.0])


def rel_err(a, b):
    """max |a - b| / max |b|."""
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b))


def stable_system(rng, channels, n, radius=0.9):
    """Random per-channel (Abar, Bbar, C, D) with spectral radius ``radius``."""
    Abar = rng.standard_normal((channels, n, n))
    Abar *= radius / np.max(np.abs(np.linalg.eigvals(Abar)), axis=-1)[:, None, None]
    return Abar, rng.standard_normal((channels, n)), rng.standard_normal((channels, n)), rng.standard_normal(channels)


def random_dplr(rng, H, n, scale=0.5):
    """Lambda with negative real parts, P, Q independent (so Q != P), B, C, log_dt."""
    def cplx(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    Lambda = -rng.uniform(0.1, 1.0, (H, n)) + 1j * np.pi * rng.uniform(0, n, (H, n))
    log_dt = np.log(rng.uniform(0.01, 0.3, H))
    return Lambda, scale * cplx(H, n), scale * cplx(H, n), cplx(H, n), cplx(H, n), log_dt


# ----------------------------------------------------------------------------- discretize

SCIPY_METHODS = [
    ("forward_euler", None, "euler", None),
    ("backward_euler", None, "backward_diff", None),
    ("bilinear", None, "bilinear", None),
    ("gbt", 0.3, "gbt", 0.3),
    ("gbt", 0.0, "euler", None),
    ("zoh", None, "zoh", None),
]


@pytest.mark.parametrize("method, alpha, scipy_method, scipy_alpha", SCIPY_METHODS)
@pytest.mark.parametrize("m", [None, 1, 2])
def test_discretize_matches_cont2discrete(method, alpha, scipy_method, scipy_alpha, m):
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4)) - 2 * np.eye(4)
    B = rng.standard_normal((4,) if m is None else (4, m))
    step = 0.07
    Abar, Bbar = discretize(A, B, step, method, alpha=alpha)
    assert Abar.dtype == np.float64 and Abar.shape == (4, 4) and Bbar.shape == B.shape
    ad, bd, *_ = scipy.signal.cont2discrete(
        (A, B.reshape(4, -1), np.eye(4), np.zeros((4, B.reshape(4, -1).shape[1]))), step,
        method=scipy_method, alpha=scipy_alpha,
    )
    # same formulas evaluated by the same LAPACK/expm routines: a few eps
    assert rel_err(Abar, ad) < 1e-14
    assert rel_err(Bbar, bd.reshape(B.shape)) < 1e-14


@pytest.mark.parametrize(
    "A",
    [
        np.zeros((3, 3)),
        np.array([[0.0, 1.0], [0.0, 0.0]]),  # double integrator, nilpotent
        np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, -1.0]]),
    ],
    ids=["zero", "double-integrator", "mixed"],
)
def test_discretize_zoh_singular_A(A):
    n = A.shape[0]
    B = np.arange(1.0, n + 1)
    h = 0.25
    Abar, Bbar = discretize(A, B, h, "zoh")
    ad, bd, *_ = scipy.signal.cont2discrete((A, B[:, None], np.eye(n), np.zeros((n, 1))), h, method="zoh")
    assert rel_err(Abar, ad) < 1e-14 and rel_err(Bbar, bd[:, 0]) < 1e-14
    # int_0^h e^(sA) ds B by its power series (A nilpotent or diagonal here: exact after n terms)
    series = sum(np.linalg.matrix_power(A, k) * h ** (k + 1) / math.factorial(k + 1) for k in range(12))
    assert rel_err(Bbar, series @ B) < 1e-14


@mpmath.workdps(40)
def test_discretize_zoh_against_mpmath():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 3)) - np.eye(3)
    B = rng.standard_normal((3, 2))
    h = 0.3
    Abar, Bbar = discretize(A, B, h, "zoh")
    augmented = mpmath.zeros(5, 5)
    for i in range(3):
        for j in range(3):
            augmented[i, j] = A[i, j] * h
        for j in range(2):
            augmented[i, 3 + j] = B[i, j] * h
    e = np.array(mpmath.expm(augmented).tolist(), dtype=float)
    # expm (Pade with scaling and squaring) is accurate to a small multiple of eps * ||hA||
    assert rel_err(Abar, e[:3, :3]) < 1e-14
    assert rel_err(Bbar, e[:3, 3:]) < 1e-14


def test_discretize_complex_and_no_mutation():
    A = np.diag([-1.0 + 2j, -0.5 - 1j])
    B = np.array([1.0, 1.0j])
    A0, B0 = A.copy(), B.copy()
    Abar, Bbar = discretize(A, B, 0.1, "zoh")
    assert Abar.dtype == np.complex128
    np.testing.assert_allclose(np.diag(Abar), np.exp(0.1 * np.diag(A)), rtol=1e-15)
    np.testing.assert_allclose(Bbar, np.expm1(0.1 * np.diag(A)) / np.diag(A) * B, rtol=1e-14)
    np.testing.assert_array_equal(A, A0)
    np.testing.assert_array_equal(B, B0)
    Abar_i, _ = discretize(np.array([[-1, 0], [0, -2]]), np.array([1, 1]), 1, "bilinear")
    assert Abar_i.dtype == np.float64


# Global error at a fixed horizon T = n h: a method whose one-step map has local error O(h^(p+1))
# accumulates O(h^p) over T/h steps. Euler (forward, backward, gbt alpha != 1/2) has p = 1,
# bilinear (trapezoid, alpha = 1/2) p = 2. ZOH is exact for piecewise-constant input: its n-step
# transition is e^(TA) and its step response A^-1 (e^(TA) - I) B, the references here. The
# one-step map alone would show p + 1; the accumulated quantities are what the orders refer to.
@pytest.mark.parametrize(
    "method, alpha, order",
    [("forward_euler", None, 1), ("backward_euler", None, 1), ("gbt", 0.25, 1), ("bilinear", None, 2)],
)
def test_discretize_convergence_order(method, alpha, order):
    horizon = 1.0
    exact_transition = discretize(A3, B3, horizon, "zoh")[0]
    exact_step_response = discretize(A3, B3, horizon, "zoh")[1]  # = A^-1 (e^(TA) - I) B
    transition_err, response_err = [], []
    for n in (32, 64, 128, 256):
        Abar, Bbar = discretize(A3, B3, horizon / n, method, alpha=alpha)
        transition_err.append(np.max(np.abs(np.linalg.matrix_power(Abar, n) - exact_transition)))
        _, x = lti_recurrent(np.ones((1, n, 1)), Abar, Bbar[None], np.ones((1, 3)), return_state=True)
        response_err.append(np.max(np.abs(x[0, 0] - exact_step_response)))
    for errors in (transition_err, response_err):
        observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
        assert np.all((observed > order - 0.2) & (observed < order + 0.2)), observed


def test_zoh_step_response_is_exact():
    horizon, n = 1.0, 200
    Abar, Bbar = discretize(A3, B3, horizon / n, "zoh")
    _, x = lti_recurrent(np.ones((1, n, 1)), Abar, Bbar[None], np.ones((1, 3)), return_state=True)
    exact = np.linalg.solve(A3, (scipy.linalg.expm(horizon * A3) - np.eye(3)) @ B3)
    # n steps, each adding a few eps of the state's size
    assert rel_err(x[0, 0], exact) < 4 * n * EPS


# ----------------------------------------------------------------------------- LTI forms


def conv_scale(u, K, D):
    """Per-position magnitude of the terms summed: sum_l |K_l| |u_{t-l}| + |D u_t|."""
    return causal_conv(np.abs(u), np.abs(K), np.abs(D))


@pytest.mark.parametrize("T", [1, 2, 7, 33])
def test_lti_forms_agree(T):
    rng = np.random.default_rng(T)
    channels, n = 3, 4
    Abar, Bbar, C, D = stable_system(rng, channels, n)
    u = rng.standard_normal((2, T, channels))
    K = lti_kernel(Abar, Bbar, C, T)
    y_rec = lti_recurrent(u, Abar, Bbar, C, D)
    y_direct = causal_conv(u, K, D)
    y_fft = fft_conv(u, K, D)
    assert y_rec.shape == (2, T, channels) and y_rec.dtype == np.float64
    # float64 forms: bound T * eps times the magnitude of the terms, per position (the recurrent
    # form sums the same terms in another order; powers of Abar add up to n eps per step)
    bound = 4 * (T + n) * EPS * conv_scale(u, K, D)
    assert np.all(np.abs(y_rec - y_direct) <= bound)
    # FFT errors are normwise: c log2(2T) eps ||u|| ||K|| per channel
    fft_bound = 4 * np.log2(4 * T) * EPS * np.linalg.norm(u, axis=1) * np.linalg.norm(K, axis=1)
    assert np.all(np.abs(y_fft - y_direct) <= fft_bound[:, None, :] + np.abs(D * u) * 2 * EPS)


def test_lti_recurrent_matches_lfilter():
    rng = np.random.default_rng(11)
    channels, n, T = 2, 4, 50
    Abar, Bbar, C, D = stable_system(rng, channels, n, radius=0.8)
    u = rng.standard_normal((3, T, channels))
    y = lti_recurrent(u, Abar, Bbar, C, D)
    for d in range(channels):
        # y_t = C x_t + D u_t with x_t = Abar x_{t-1} + Bbar u_t is the textbook
        # x_{t+1} = Abar x_t + Bbar u_t with output row C Abar and feedthrough C Bbar + D
        num, den = scipy.signal.ss2tf(Abar[d], Bbar[d][:, None], (C[d] @ Abar[d])[None], [[C[d] @ Bbar[d] + D[d]]])
        expected = scipy.signal.lfilter(num[0], den, u[:, :, d], axis=1)
        # transfer-function coefficients come from eigenvalues (ss2tf): error ~ cond * eps
        assert rel_err(y[:, :, d], expected) < 1e-11


@pytest.mark.parametrize("T", [1, 2, 5, 16, 17])
@pytest.mark.parametrize(
    "kernel_length",
    [lambda T: 1, lambda T: max(1, T // 2), lambda T: T, lambda T: T + 4],
    ids=["L=1", "L=T/2", "L=T", "L=T+4"],
)
def test_fft_conv_equals_causal_conv_for_every_length(T, kernel_length):
    rng = np.random.default_rng(T)
    L = kernel_length(T)
    u = rng.standard_normal((2, T, 3))
    K = rng.standard_normal((3, L))
    D = rng.standard_normal(3)
    direct = causal_conv(u, K, D)
    fft_bound = 4 * np.log2(4 * (T + L)) * EPS * np.linalg.norm(u, axis=1) * np.linalg.norm(K, axis=1)
    assert np.all(np.abs(fft_conv(u, K, D) - direct) <= fft_bound[:, None, :] + 2 * EPS * np.abs(D * u))
    # the definition, written out
    expected = np.zeros_like(u)
    for t in range(T):
        for l in range(min(t + 1, L)):
            expected[:, t] += K[:, l] * u[:, t - l]
    assert np.all(np.abs(causal_conv(u, K) - expected) <= 2 * L * EPS * conv_scale(u, K, np.zeros(3)))
    np.testing.assert_array_equal(direct, causal_conv(u, K) + D * u)


def test_causal_conv_nan_stays_causal():
    u = np.ones((1, 6, 1))
    u[0, 3, 0] = np.nan
    y = causal_conv(u, np.ones((1, 6)))
    assert np.all(np.isfinite(y[0, :3])) and np.all(np.isnan(y[0, 3:]))
    assert np.all(np.isnan(fft_conv(u, np.ones((1, 6)))))  # documented: FFT spreads NaN everywhere


def test_lti_recurrent_state_continuation():
    rng = np.random.default_rng(5)
    Abar, Bbar, C, D = stable_system(rng, 3, 4)
    u = rng.standard_normal((2, 20, 3))
    y_all, state_all = lti_recurrent(u, Abar, Bbar, C, D, return_state=True)
    y1, state1 = lti_recurrent(u[:, :13], Abar, Bbar, C, D, return_state=True)
    y2, state2 = lti_recurrent(u[:, 13:], Abar, Bbar, C, D, initial_state=state1, return_state=True)
    # the same operations in the same order
    np.testing.assert_array_equal(np.concatenate([y1, y2], axis=1), y_all)
    np.testing.assert_array_equal(state2, state_all)


def test_lti_recurrent_initial_state_unrolled():
    rng = np.random.default_rng(6)
    channels, n, T = 2, 3, 12
    Abar, Bbar, C, D = stable_system(rng, channels, n)
    u = rng.standard_normal((2, T, channels))
    x0 = rng.standard_normal((2, channels, n))
    y = lti_recurrent(u, Abar, Bbar, C, D, initial_state=x0)
    # y_t = (K * u)_t + D u_t + C Abar^(t+1) x_{-1}
    free = np.stack(
        [np.einsum("dn,dnm,bdm->bd", C, np.linalg.matrix_power(Abar, t + 1), x0) for t in range(T)], axis=1
    )
    expected = causal_conv(u, lti_kernel(Abar, Bbar, C, T), D) + free
    assert rel_err(y, expected) < 1e-13


def test_lti_shared_abar_and_no_D_and_no_mutation():
    rng = np.random.default_rng(7)
    Abar, Bbar, C, _ = stable_system(rng, 1, 3)
    shared = Abar[0]
    Bbar2, C2 = np.repeat(Bbar, 2, axis=0), rng.standard_normal((2, 3))
    u = rng.standard_normal((1, 9, 2))
    saved = [a.copy() for a in (shared, Bbar2, C2, u)]
    y_shared = lti_recurrent(u, shared, Bbar2, C2)
    y_full = lti_recurrent(u, np.stack([shared, shared]), Bbar2, C2)
    np.testing.assert_array_equal(y_shared, y_full)
    K_shared = lti_kernel(shared, Bbar2, C2, 9)
    np.testing.assert_array_equal(K_shared, lti_kernel(np.stack([shared, shared]), Bbar2, C2, 9))
    for before, after in zip(saved, (shared, Bbar2, C2, u)):
        np.testing.assert_array_equal(before, after)


def test_lti_kernel_integer_input_gives_float64():
    K = lti_kernel(np.array([[1, 1], [0, 1]]), np.array([[0, 1]]), np.array([[1, 0]]), 4)
    assert K.dtype == np.float64
    np.testing.assert_array_equal(K, [[0.0, 1.0, 2.0, 3.0]])


# ----------------------------------------------------------------------------- HiPPO


@pytest.mark.parametrize("N", [1, 2, 5, 16])
def test_hippo_legs_matches_s4_transition(N):
    A, B = hippo_legs(N)
    # state-spaces/s4 models/s4/s4.py transition('legs', N), written out
    q = np.arange(N, dtype=np.float64)
    col, row = np.meshgrid(q, q)
    M = -(np.where(row >= col, 2 * q + 1, 0) - np.diag(q))
    T = np.sqrt(np.diag(2 * q + 1))
    np.testing.assert_allclose(A, T @ M @ np.linalg.inv(T), rtol=4 * EPS, atol=0)
    np.testing.assert_allclose(B, np.sqrt(2 * q + 1), rtol=0, atol=0)


@pytest.mark.parametrize("N", [1, 2, 3, 8, 32])
def test_hippo_legs_nplr_identity(N):
    A, P, B = hippo_legs_nplr(N)
    np.testing.assert_array_equal(P, np.sqrt(np.arange(N) + 0.5))
    A_legs, B_legs = hippo_legs(N)
    np.testing.assert_array_equal(A, A_legs)
    np.testing.assert_array_equal(B, B_legs)
    S = A + np.outer(P, P) + np.eye(N) / 2
    # each entry is one product minus one product: a few eps of sqrt((2n+1)(2k+1))
    assert np.max(np.abs(S + S.T)) <= 4 * EPS * (2 * N - 1)
    np.testing.assert_allclose(np.tril(S, -1), -np.tril(np.outer(np.sqrt(2 * np.arange(N) + 1),
                                                                   np.sqrt(2 * np.arange(N) + 1)), -1) / 2,
                               rtol=8 * EPS)


@pytest.mark.parametrize("N", [2, 4, 8, 16, 64])
def test_dplr_from_legs_identities(N):
    Lambda, P, B, V = dplr_from_legs(N)
    A, P_r, B_r = hippo_legs_nplr(N)
    n = N // 2
    assert Lambda.shape == P.shape == B.shape == (n,) and V.shape == (N, n)
    tol = 64 * N * EPS  # eigh backward error ~ N eps ||S||, ||S|| ~ N
    np.testing.assert_allclose(Lambda.real, -0.5, atol=0)
    assert np.all(Lambda.imag < 0)
    assert np.max(np.abs(V.conj().T @ V - np.eye(n))) < tol
    normal = A + np.outer(P_r, P_r)
    assert np.max(np.abs(2 * (V @ np.diag(Lambda) @ V.conj().T).real - normal)) < tol * N
    assert np.max(np.abs(2 * (V @ P).real - P_r)) < tol * np.sqrt(N)
    assert np.max(np.abs(2 * (V @ B).real - B_r)) < tol * np.sqrt(N)
    # A = W (diag(Lambda2) - P2 P2^*) W^*, W = [V, conj V]
    W = np.concatenate([V, V.conj()], axis=1)
    P2 = np.concatenate([P, P.conj()])
    rebuilt = W @ (np.diag(np.concatenate([Lambda, Lambda.conj()])) - np.outer(P2, P2.conj())) @ W.conj().T
    assert np.max(np.abs(rebuilt - A)) < tol * N
    # the eigenvalues of the normal part against an independent dense eigensolver
    np.testing.assert_allclose(np.sort(np.linalg.eigvals(normal).imag)[:n], Lambda.imag, atol=tol * N)


@pytest.mark.parametrize("N", [4, 16])
@pytest.mark.parametrize("L", [1, 8, 33])
def test_s4_on_legs_equals_dense_bilinear_kernel(N, L):
    """S4's DPLR kernel of HiPPO-LegS equals the Krylov kernel of the dense bilinear LegS system."""
    Lambda, P, B, V = dplr_from_legs(N)
    c = np.random.default_rng(N).standard_normal(N)
    dt = 0.05
    K = s4_dplr_kernel(Lambda[None], P[None], P[None], B[None], (c @ V)[None], [np.log(dt)], L)
    Abar, Bbar = discretize(*hippo_legs(N), dt, "bilinear")
    assert rel_err(K, lti_kernel(Abar, Bbar[None], c[None], L)) < 1e-10


# ----------------------------------------------------------------------------- S4 DPLR


@pytest.mark.parametrize("n", [1, 2, 4, 8])
@pytest.mark.parametrize("L", [1, 2, 3, 16, 63, 64])
def test_s4_dplr_equals_krylov(n, L):
    rng = np.random.default_rng(100 * n + L)
    args = random_dplr(rng, 3, n)
    K_fast = s4_dplr_kernel(*args, L)
    K_slow = s4_krylov_kernel(*args, L)
    assert K_fast.shape == K_slow.shape == (3, L) and K_fast.dtype == np.float64
    assert rel_err(K_fast, K_slow) < 1e-10


def test_s4_dplr_c_tilde_convention():
    """s4 stores C~ = C (I - Abar^L) as its parameter: the same kernel from the generating function."""
    rng = np.random.default_rng(9)
    Lambda, P, Q, B, C, log_dt = random_dplr(rng, 1, 3)
    L = 10
    dt = np.exp(log_dt[0])
    pairs = lambda x: np.concatenate([x, x.conj()], axis=-1)  # noqa: E731
    A = np.diag(pairs(Lambda)[0]) - np.outer(pairs(P)[0], pairs(Q)[0].conj())
    Abar, Bbar = discretize(A, pairs(B)[0], dt, "bilinear")
    # the truncated generating function at the L-th roots of unity, by dense solves
    c_tilde = pairs(C)[0] @ (np.eye(6) - np.linalg.matrix_power(Abar, L))
    omega = np.exp(-2j * np.pi * np.arange(L) / L)
    gf = np.array([c_tilde @ np.linalg.solve(np.eye(6) - w * Abar, Bbar) for w in omega])
    assert rel_err(s4_dplr_kernel(Lambda, P, Q, B, C, log_dt, L)[0], np.fft.ifft(gf).real) < 1e-12


def test_s4_reduces_to_s4d_bilinear_when_P_is_zero():
    rng = np.random.default_rng(12)
    Lambda, _, _, B, C, log_dt = random_dplr(rng, 2, 4)
    zero = np.zeros_like(Lambda)
    K = s4_dplr_kernel(Lambda, zero, zero, B, C, log_dt, 20)
    assert rel_err(K, s4d_kernel(log_dt, Lambda, B, C, 20, discretization="bilinear")) < 1e-12


# ----------------------------------------------------------------------------- S4D


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_s4d_conj_halving_equals_full_sum(discretization):
    rng = np.random.default_rng(13)
    H, n, L = 3, 5, 40
    A = s4d_init_inv(H, 2 * n) * rng.uniform(0.5, 2, (H, n))
    B = rng.standard_normal((H, n)) + 1j * rng.standard_normal((H, n))
    C = rng.standard_normal((H, n)) + 1j * rng.standard_normal((H, n))
    log_dt = np.log(rng.uniform(1e-3, 1e-1, H))
    half = s4d_kernel(log_dt, A, B, C, L, discretization=discretization)
    pairs = lambda x: np.concatenate([x, x.conj()], axis=-1)  # noqa: E731
    full = s4d_kernel(log_dt, pairs(A), pairs(B), pairs(C), L, discretization=discretization, conj_halving=False)
    assert half.dtype == np.float64 and full.dtype == np.complex128
    assert rel_err(half, full.real) < 1e-13
    assert np.max(np.abs(full.imag)) < 1e-13 * np.max(np.abs(full))


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
def test_s4d_equals_dense_discretisation(discretization):
    rng = np.random.default_rng(14)
    H, n, L = 2, 3, 25
    A = s4d_init_lin(H, 2 * n)
    C = rng.standard_normal((H, n)) + 1j * rng.standard_normal((H, n))
    log_dt = np.log([0.01, 0.2])
    K = s4d_kernel(log_dt, A, None, C, L, discretization=discretization)
    np.testing.assert_array_equal(K, s4d_kernel(log_dt, A, np.ones((H, n)), C, L, discretization=discretization))
    for h in range(H):
        Abar, Bbar = discretize(np.diag(A[h]), np.ones(n), np.exp(log_dt[h]), discretization)
        expected = 2 * lti_kernel(Abar, Bbar[None], C[h][None], L).real
        assert rel_err(K[h], expected[0]) < 1e-12


def test_s4d_inits_literal():
    lin = s4d_init_lin(2, 8)
    assert lin.shape == (2, 4) and lin.dtype == np.complex128
    np.testing.assert_array_equal(lin[1], [-0.5 + 0j, -0.5 + 1j * np.pi, -0.5 + 2j * np.pi, -0.5 + 3j * np.pi])
    inv = s4d_init_inv(1, 8)
    np.testing.assert_allclose(inv[0].imag, [8 / np.pi * (8 / (2 * k + 1) - 1) for k in range(4)], rtol=4 * EPS)
    np.testing.assert_array_equal(inv.real, -0.5)


# ----------------------------------------------------------------------------- bad input


def _with(fn, base, **changes):
    """A call of fn on the keyword arguments ``base`` with ``changes`` applied."""
    return lambda: fn(**{**base, **changes})


def _disc(**changes):
    return _with(discretize, dict(A=np.eye(2), B=np.ones(2), step=0.1, method="zoh"), **changes)


def _rec(**changes):
    base = dict(u=np.ones((1, 4, 3)), Abar=np.eye(2) * 0.5, Bbar=np.ones((3, 2)), C=np.ones((3, 2)))
    return _with(lti_recurrent, base, **changes)


def _s4d(**changes):
    base = dict(log_dt=np.zeros(2), A=-np.ones((2, 2)), B=None, C=np.ones((2, 2)), length=4)
    return _with(s4d_kernel, base, **changes)


def _s4(fn, **changes):
    names = ("Lambda", "P", "Q", "B", "C", "log_dt")
    return _with(fn, {**dict(zip(names, random_dplr(np.random.default_rng(0), 2, 3))), "length": 8}, **changes)


KERNEL_ARGS = dict(Abar=np.eye(2) * 0.5, Bbar=np.ones((3, 2)), C=np.ones((3, 2)))
U3 = np.ones((1, 4, 3))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (_disc(A=np.ones((2, 3))), ValueError, "A must be a square"),
        (_disc(B=np.ones(3)), ValueError, r"B must have shape \(N,\)=\(2,\)"),
        (_disc(B=np.ones((2, 0))), ValueError, "B must have shape"),
        (_disc(step=0.0), ValueError, "step must be a finite number > 0"),
        (_disc(step=-1), ValueError, "step"),
        (_disc(step=np.inf), ValueError, "step"),
        (_disc(step="0.1"), TypeError, "step must be a real number"),
        (_disc(method="euler"), ValueError, "method must be one of"),
        (_disc(alpha=0.5), ValueError, "alpha applies only"),
        (_disc(method="gbt"), ValueError, "alpha must be given"),
        (_disc(method="gbt", alpha=1.5), ValueError, r"alpha must be a real number in \[0, 1\]"),
        (_disc(A=np.array([[np.nan]]), B=np.ones(1)), ValueError, "A must be finite"),
        (_disc(A=np.eye(2, dtype=bool)), TypeError, "A must hold"),
        (_disc(A=np.eye(1) * 10, B=np.ones(1), method="backward_euler"), ValueError, "singular"),
        (_rec(u=np.ones((1, 4, 2))), ValueError, r"u must have shape \(B, T, Dch\)=\(B, T, 3\)"),
        (_rec(u=np.ones((4, 3))), ValueError, "u must have shape"),
        (_rec(u=np.ones((1, 4, 3), dtype=complex)), TypeError, "u must hold real"),
        (_rec(Abar=np.eye(3)), ValueError, "Abar must have shape"),
        (_rec(Abar=np.eye(2) + 0j), TypeError, "real system"),
        (_rec(Bbar=np.ones((3, 3))), ValueError, r"Bbar must have shape \(Dch, N\)=\(3, 2\)"),
        (_rec(C=np.ones(2)), ValueError, "C must have shape"),
        (_rec(D=np.ones(2)), ValueError, r"D must have shape \(Dch,\)"),
        (_rec(initial_state=np.ones((1, 3))), ValueError, "initial_state must have shape"),
        (_rec(return_state=1), TypeError, "return_state must be a bool"),
        (lambda: lti_kernel(**KERNEL_ARGS, length=-1), ValueError, "length must be an int >= 0"),  # L = 0 is empty
        (lambda: lti_kernel(**KERNEL_ARGS, length=2.0), TypeError, "length must be an int"),
        (lambda: causal_conv(U3, np.ones(3)), ValueError, r"K must have shape \(Dch, L\)"),
        (lambda: fft_conv(U3, np.ones((2, 5))), ValueError, r"u must have shape \(B, T, Dch\)=\(B, T, 2\)"),
        (lambda: fft_conv(U3, np.ones((3, 5)), D=np.ones((3, 1))), ValueError, "D must have shape"),
        (lambda: hippo_legs(0), ValueError, "N must be an int >= 1"),
        (lambda: hippo_legs_nplr(2.0), TypeError, "N must be an int"),
        (lambda: dplr_from_legs(5), ValueError, "N must be an even int"),
        (lambda: s4d_init_lin(2, 3), ValueError, "N must be an even int"),
        (lambda: s4d_init_inv(0, 4), ValueError, "H must be an int >= 1"),
        (_s4d(A=np.ones((3, 2)), C=np.ones((3, 2))), ValueError,
         r"A must have shape \(H, n\)=\(2, 2\) to match log_dt"),
        (_s4d(log_dt=np.zeros((2, 1))), ValueError, "log_dt must have shape"),
        (_s4d(B=np.ones((2, 3))), ValueError, "B must have shape"),
        (_s4d(C=np.ones(2)), ValueError, "C must have shape"),
        (_s4d(A=np.zeros((2, 2))), ValueError, "A must be nonzero"),
        (_s4d(discretization="euler"), ValueError, "discretization must be one of"),
        (_s4d(conj_halving=None), TypeError, "conj_halving must be a bool"),
        (_s4d(length=-1), ValueError, "length must be an int >= 0"),
        (_s4(s4_dplr_kernel, P=np.ones((1, 2, 3))), ValueError, r"P must have shape \(H, n\)=\(2, 3\)"),
        (_s4(s4_dplr_kernel, Q=np.ones((2, 4))), ValueError, "Q must have shape"),
        (_s4(s4_dplr_kernel, log_dt=np.zeros(3)), ValueError,
         r"Lambda must have shape \(H, n\)=\(3, 3\) to match log_dt"),
        (_s4(s4_dplr_kernel, log_dt=np.zeros((2, 1))), ValueError, "log_dt must have shape"),
        (_s4(s4_dplr_kernel, length=-1), ValueError, "length must be an int >= 0"),
        (_s4(s4_krylov_kernel, Lambda=np.full((2, 3), np.nan)), ValueError, "Lambda must be finite"),
        (_s4(s4_krylov_kernel, C=np.full((2, 3), "a")), TypeError, "C must hold"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()
