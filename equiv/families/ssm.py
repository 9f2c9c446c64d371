"""Linear time-invariant state space models (LTI recurrence, convolution, FFT), S4 and S4D kernels.

Float64 bounds, first order in the unit roundoff u = 2**-53 (Higham, *Accuracy and Stability of
Numerical Algorithms*, ch. 3 and 24). Two correct forms each lie within their bound E of the exact
value, so they differ by at most twice the larger one; every bound below is that.

LTI forms. Let ``m_t`` be the state of the *absolute* system, m_t = |Abar| m_{t-1} + |Bbar| |u_t|,
m_{-1} = |x_{-1}|, and M_t = |C| m_t: it bounds every term summed into y_t (for x_{-1} = 0,
M_t = sum_l |C| |Abar|^l |Bbar| |u_{t-l}| >= sum_l |K_l| |u_{t-l}|).

- Recurrence: step s rounds x_s = Abar x_{s-1} + Bbar u_s within gamma_{N+1} m_s; propagated to
  y_t by |C| |Abar|^{t-s} and summed over s <= t (|Abar|^{t-s} m_s <= m_t), then y_t = C x_t + D u_t
  adds gamma_{N+1} M_t + 2u |D u_t|: E_t = (t+2)(N+1) u M_t + 2u |D u_t|.
- Direct convolution of the Krylov kernel: K_l = C v_l, v_l = Abar v_{l-1}, carries
  (l+1) N u |C| |Abar|^l |Bbar|; the sum over T lags adds T u sum_l |K_l| |u_{t-l}|:
  E_t = (T + (t+1) N + 1) u M_t + 2u |D u_t|. Both are covered by
  E_t = (T + (t+2)(N+1)) u M_t + 2u |D u_t|, and the forms differ by at most 2 E_t.
- FFT convolution, n = T + L: with eps(n) = u sum_{p | n} (sqrt(p) (p+2) + 8) (prime factors of n
  with multiplicity: a radix-p pass of direct p-point sums has normwise relative error
  gamma_{p+2} sqrt(p), its twiddles about 8u; this covers radix 2 (Higham Thm 24.2), mixed radix
  and Bluestein), each transform is normwise within eps(n). Then
  ||y^ - y||_2 <= (2 eps(n) + 3u) (||u||_2 ||K||_1 + ||u||_1 ||K||_2) per batch and channel
  (rfft errors times ||rfft K||_inf <= ||K||_1, resp. ||rfft u||_inf <= ||u||_1; the complex
  product; the inverse), and |e_t| <= ||e||_2 at every t. With the kernel's own error:
  E_t = ((t+1) N + 1) u M_t + (2 eps(n) + 3u) S + 2u |D u_t|.

S4 (DPLR against Krylov). Abar^ = (I - dt/2 A)^-1 (I + dt/2 A) comes from an LU solve; its error
is bounded a posteriori: ||Abar^ - Abar||_inf <= ||M^-1||_inf (||M Abar^ - N||_inf +
(2n+4) u || |M| |Abar^| + |N| ||_inf) with M, N = I -+ dt/2 A, likewise Bbar^ (delta_A, delta_B).
With a_k = ||Abar^k||_inf (k <= L; kappa their maximum: non-normal transients are counted, not
||Abar||^k), g = 2(2n+2) u (complex inner products of length 2n) and v_l = Abar^l Bbar the Krylov
vectors: each step adds g || |Abar| |v_{l-1}| || + delta_A ||v_{l-1}||, carried to lag l by
Abar^(l-j), so Krylov E_l = ||C2||_1 (sum_{j=1}^{l} a_{l-j} (g || |Abar||v_{j-1}| || + delta_A ||v_{j-1}||)
+ a_l delta_B + g ||v_l||). DPLR: C~ = C2 (I - Abar^L) by repeated squaring inherits
(P_L + delta_A sum_j a_j a_{L-1-j} + u (1 + kappa)) ||C2||_1, P_L the rounding of binary powering:
a rounding in the square Abar^p reaches Abar^L through floor(L/p) sandwiches Abar^i E Abar^j of norm
at most max_{i+j=L-p} a_i a_j (``_power_error``);
at each node omega (error <= 12u), every Cauchy term a_m b_m r_m, r_m = dt / ((1-omega) -
s dt Lambda_m), carries its denominator's relative error plus (2n+3)2u; the Woodbury quotient
propagates these to first order (every term written out in ``dplr_bound``); irfft averages the
node errors with weights 1, 2, ..., 2, (1) / L and adds eps(L) ||K||_2.

S4D (Vandermonde against Krylov on the conjugate-doubled diagonal system): per mode, with
z = dt A, rho = |Abar|, tau_l = |C| |Bbar| rho^l: exp(z l) is within (l |z| + 4) u, a power
Abar^l within (6l + 6 + 2l (|log rho| + pi)) u (numpy's complex power, by squaring or by
exp(l log)), Krylov's l products within (4l + 3l) u; Bbar within 8u (|e^z| + 1) |B| / |A| + 6u |Bbar|
(ZOH: expm1 or exp - 1) or (6u + u (1 + |z|/2) / |1 - z/2|) |Bbar| (bilinear), bilinear Abar within
4u (1 + |z|/2)(1 + rho) / |1 - z/2|; the sums add (6n + 17) u tau_l.

Discretisation against scipy: both solve (I - a h A) X = R by LU; a posteriori,
||X^ - X||_inf <= ||M^-1||_inf (||M X^ - R||_inf + (N+4) u || |M| |X^| + |R| ||_inf), summed over
the two results. ZOH: both take scipy.linalg.expm of h [[A, B], [0, 0]]; with X that matrix and s
its squarings, expm is within (||X||_1 + 2 (s+8) (N+M+2)) u e^{||X||_1} (backward error u ||X||
by design, Al-Mohy & Higham 2009, times the condition bound ||X|| e^{||X||}; evaluation and
squaring rounding).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import scipy.signal
from hypothesis import strategies as st

from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.registry import (Claim, Form, Gradient, Implementation, Sweep, register_claim, register_form,
                                     register_gradient, register_implementation, without)
from seqcheck.gpu.backend import where
from seqcheck.properties.ssm import (continuation_inputs, conv_inputs, discretize_inputs, dplr_inputs,
                                     lti_conv_inputs, lti_inputs, order_inputs, rational_lti_inputs, s4d_inputs)
from seqcheck.reference import ssm as ref
from seqcheck.reference.arith import U64, accumulator, exact_difference, fractions, rounding
from seqcheck.reference._checks import as_real, check_ndim
from seqcheck.reference.ssm.s4 import _dense_bilinear
from seqcheck.reference.ssm.s4d import _s4d_args



# ------------------------------------------------------------------------------------------- LTI

def _krylov_of_length_T(u, Abar, Bbar, C):
    """u, checked, and the Krylov kernel of length T of the system (Abar, Bbar, C), which must be real."""
    u = as_real("u", u)
    check_ndim("u", u, 3, "(B, T, Dch)")
    Abar, Bbar, C = (as_real(name, a, exact_ok=True) for name, a in (("Abar", Abar), ("Bbar", Bbar), ("C", C)))
    return u, ref.lti_kernel(Abar, Bbar, C, u.shape[1])


def lti_convolution(u, Abar, Bbar, C, D=None):
    """The LTI output as a direct causal convolution with the Krylov kernel of length T."""
    return ref.causal_conv(*_krylov_of_length_T(u, Abar, Bbar, C), D)


def lti_fft(u, Abar, Bbar, C, D=None):
    """The LTI output as an FFT convolution with the Krylov kernel of length T (S4's FFTConv)."""
    return ref.fft_conv(*_krylov_of_length_T(u, Abar, Bbar, C), D)


def _system(args: dict):
    C = np.asarray(args["C"], dtype=np.float64)
    Abar = np.broadcast_to(np.asarray(args["Abar"], dtype=np.float64), (C.shape[0],) + (C.shape[1],) * 2)
    return Abar, np.asarray(args["Bbar"], dtype=np.float64), C


def lti_magnitudes(args: dict) -> tuple:
    """Per batch, time and channel: M_t = |C| m_t of the absolute system and |D u_t|."""
    Abar, Bbar, C = _system(args)
    u = np.asarray(args["u"], dtype=np.float64)
    x0 = args.get("initial_state")
    m = np.zeros((u.shape[0],) + C.shape) if x0 is None else np.abs(np.asarray(x0, dtype=np.float64))
    M = np.empty(u.shape)
    for t in range(u.shape[1]):
        m = np.einsum("dmn,bdn->bdm", np.abs(Abar), m) + np.abs(Bbar) * np.abs(u[:, t, :, None])
        M[:, t] = np.einsum("dn,bdn->bd", np.abs(C), m)
    D = np.zeros(C.shape[0]) if args.get("D") is None else np.asarray(args["D"], dtype=np.float64)
    return M, np.abs(D * u)


def _per_position(x: np.ndarray) -> np.ndarray:
    """Max over batch and channel of a (B, T, Dch) array: one value per time position."""
    return x.max(axis=(0, 2))


def lti_bound(args: dict, expected: tuple) -> tuple:
    """2 E_t with E_t = (T + (t+2)(N+1)) u M_t + 2u |D u_t| (recurrence and direct convolution)."""
    M, DU = lti_magnitudes(args)
    T, N = M.shape[1], np.shape(args["C"])[1]
    t = np.arange(T)[None, :, None]
    return (_per_position(2 * U64 * ((T + (t + 2) * (N + 1)) * M + 2 * DU)),)


def lti_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale per position: M_t + |D u_t|, the size of the terms y_t
    sums, plus the rounding of an FFT convolution at any position, log2(n) ||u||_2 ||K||_2 / sqrt(n)
    (n = 2T: Higham's normwise FFT bound, of order log2(n) u, spread evenly over the n outputs by
    the inverse transform), since S4's FFTConv is a correct way to compute it."""
    M, DU = lti_magnitudes(args)
    u = np.asarray(args["u"], dtype=np.float64)
    T = u.shape[1]
    if T == 0:
        return (np.zeros(0),)
    K = ref.lti_kernel(*_system(args), T)  # (Dch, T)
    n = 2 * T
    spectral = np.log2(n) / np.sqrt(n) * np.linalg.norm(u, axis=1) * np.linalg.norm(K, axis=1)  # (B, Dch)
    return (_per_position(M + DU) + spectral.max(initial=0.0),)


LTI_RULE = "derived float64 bound: 2u ((T + (t+2)(N+1)) M_t + 2|D u_t|), M_t = |C| m_t of the absolute system"


def fft_error(n: int) -> float:
    """eps(n): normwise relative error of one length-n FFT, u sum over the prime factors p of n
    (with multiplicity) of sqrt(p) (p + 2) + 8."""
    total, p = 0.0, 2
    while n > 1:
        while n % p == 0:
            total += np.sqrt(p) * (p + 2) + 8
            n //= p
        p += 1 if p == 2 else 2
        if p * p > n and n > 1:
            total += np.sqrt(n) * (n + 2) + 8
            break
    return U64 * total


def fft_conv_error(u: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(2 eps(n) + 3u)(||u||_2 ||K||_1 + ||u||_1 ||K||_2) per batch and channel, n = T + L."""
    u, K = np.asarray(u, dtype=np.float64), np.asarray(K, dtype=np.float64)
    n = u.shape[1] + K.shape[1]
    norms = (np.linalg.norm(u, axis=1) * np.abs(K).sum(axis=1) + np.abs(u).sum(axis=1) * np.linalg.norm(K, axis=1))
    return (2 * fft_error(n) + 3 * U64) * norms  # (B, Dch)


def lti_fft_bound(args: dict, expected: tuple) -> tuple:
    """E_t of the recurrence plus E_t of the FFT form (kernel error, FFT error, skip)."""
    M, DU = lti_magnitudes(args)
    T, N = M.shape[1], np.shape(args["C"])[1]
    t = np.arange(T)[None, :, None]
    K = ref.lti_kernel(args["Abar"], args["Bbar"], args["C"], T)
    spectral = fft_conv_error(args["u"], K)[:, None, :]
    recurrent = ((t + 2) * (N + 1)) * U64 * M + 2 * U64 * DU
    fft = ((t + 1) * N + 1) * U64 * M + (1 + U64) * spectral + 2 * U64 * DU
    return (_per_position(2 * np.maximum(recurrent, fft)),)


LTI_FFT_RULE = ("derived float64 bound: 2 max(recurrence E_t, FFT E_t), FFT E_t = ((t+1)N+1) u M_t "
                "+ (2 eps(T+L) + 3u)(|u|_2 |K|_1 + |u|_1 |K|_2) + 2u |D u_t|")


def lti_plain(args: dict, dtype) -> tuple:
    """The recurrence evaluated in ``dtype``: inputs rounded to dtype, each step's Abar x and
    C x accumulated in float32 (float64 for a 64-bit dtype) and rounded once, Bbar u, the sums
    and D u rounded to dtype. Overflow is part of the result."""
    rnd = rounding(numpy_dtype(dtype))[0]
    work = accumulator(numpy_dtype(dtype))

    def acc(x):
        return np.asarray(x).astype(work)

    Abar, Bbar, C = (rnd(x) for x in _system(args))
    u = rnd(args["u"])
    D = np.zeros(C.shape[0]) if args.get("D") is None else rnd(args["D"])
    x0 = args.get("initial_state")
    x = np.zeros((u.shape[0],) + C.shape) if x0 is None else rnd(x0)
    y = np.empty(u.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(u.shape[1]):
            ax = rnd(np.einsum("dmn,bdn->bdm", acc(Abar), acc(x)))
            x = rnd(ax + rnd(Bbar * u[:, t, :, None]))
            y[:, t] = rnd(rnd(np.einsum("dn,bdn->bd", acc(C), acc(x))) + rnd(D * u[:, t]))
    return (y,)


def _sweep_system(rng, T: int, *, channels: int = 4, N: int = 16) -> dict:
    """The report's LTI sweeps: B=1, Dch=4, N=16, Gaussian Abar per channel scaled to
    ||Abar||_inf = 0.97 (so the absolute system is contractive and the bound stays finite)."""
    G = rng.standard_normal((channels, N, N))
    Abar = 0.97 * G / np.abs(G).sum(axis=2).max(axis=1)[:, None, None]
    return {"u": rng.standard_normal((1, T, channels)), "Abar": Abar, "Bbar": rng.standard_normal((channels, N)),
            "C": rng.standard_normal((channels, N)), "D": rng.standard_normal(channels)}


SWEEP_T = Sweep("T", "sequence length T (Dch = 4, N = 16)", (16, 64, 256, 1024), lambda T, rng: _sweep_system(rng, T))

LTI_DATA = ("u",)

register_form(Form(
    key="ssm.lti.recurrent",
    fn=ref.lti_recurrent,
    inputs=lti_inputs,
    bound=lti_bound,
    rule=LTI_RULE,
    statement="the LTI recurrence x_t = Abar x_{t-1} + Bbar u_t, y_t = C x_t + D u_t, the definition",
    plain=lti_plain,
    magnitude=lti_magnitude,
    magnitude_rule="each position's M_t + |D u_t| (M_t = |C| m_t of the absolute system) "
                   "+ log2(n) ||u||_2 ||K||_2 / sqrt(n) (an FFT convolution's rounding, n = 2T)",
    data_args=LTI_DATA,
    outputs=("y",),
))

register_form(Form(
    key="ssm.lti.convolution",
    fn=lti_convolution,
    inputs=lti_conv_inputs,
    bound=lti_bound,
    rule=LTI_RULE,
    statement="the direct causal convolution with the Krylov kernel K_l = C Abar^l Bbar equals the recurrence",
    oracle="ssm.lti.recurrent",
    data_args=LTI_DATA,
    outputs=("y",),
    sweeps=(SWEEP_T,),
))

register_form(Form(
    key="ssm.lti.fft",
    fn=lti_fft,
    inputs=lti_conv_inputs,
    bound=lti_fft_bound,
    rule=LTI_FFT_RULE,
    statement="the FFT convolution (padded to T + L) with the Krylov kernel equals the recurrence",
    oracle="ssm.lti.recurrent",
    data_args=LTI_DATA,
    outputs=("y",),
    sweeps=(SWEEP_T,),
))


# ---------------------------------------------------------------------------- LTI gradient
#
# ``lti_vjp`` runs the transposed system backward, lambda_t = Abar^T lambda_{t+1} + C^T dy_t, then
# sums products of lambda, the states and the inputs over batch and time. Every term is bounded by
# the same VJP run on magnitudes (|u|, |Abar|, |Bbar|, |C|, |D|, |x_{-1}|, |dy|): lambda_t and
# x_t each within (T+2)(N+1) u of exact relatively (the forward's argument, both directions), the
# products and their B T-term sums adding (B T + 4) u. A backward through S4's FFTConv instead
# correlates dy with the kernel (du) and with u (the kernel's cotangent) by FFTs of length n = 2T,
# each within (2 eps(n) + 3u)(|a|_2 |b|_1 + |a|_1 |b|_2) normwise (the forward's FFT bound), and
# the kernel's cotangent reaches Abar, Bbar, C through the Krylov VJP on magnitudes. Two correct
# backwards differ by twice the recurrent bound plus twice the FFT one.

def lti_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of the LTI recurrence's gradients
    (comment above): per time for du, per axis 1 (state or channel) for the parameters."""
    Abar, Bbar, C = (np.abs(np.asarray(args[n], dtype=np.float64)) for n in ("Abar", "Bbar", "C"))
    u, dy = np.asarray(args["u"], dtype=np.float64), np.asarray(args["cotangent"], dtype=np.float64)
    D, x0 = args.get("D"), args.get("initial_state")
    magnitudes = ref.lti_vjp(np.abs(u), Abar, Bbar, C, None if D is None else np.abs(D), cotangent=np.abs(dy),
                             initial_state=None if x0 is None else np.abs(x0))
    B, T, _ = u.shape
    N = C.shape[1]
    factor = 2 * U64 * (2 * (T + 2) * (N + 1) + B * T + 4)
    fft = {name: np.zeros(np.shape(magnitudes[name])) for name in magnitudes}
    if T:
        K = ref.lti_kernel(args["Abar"], args["Bbar"], args["C"], T)
        fft["u"] = np.broadcast_to(fft_conv_error(dy, K)[:, None, :], u.shape)
        per_lag = np.broadcast_to(fft_conv_error(dy, u).sum(axis=0)[:, None], K.shape)  # (Dch, T)
        fft.update(ref.lti_kernel_vjp(Abar, Bbar, C, T, cotangent=per_lag))
        fft["Abar"] = np.abs(fft["Abar"]) if np.ndim(args["Abar"]) == 3 else np.abs(fft["Abar"]).sum(axis=0)
        fft["Bbar"], fft["C"] = np.abs(fft["Bbar"]), np.abs(fft["C"])
    return tuple(2 * per_position(factor * np.abs(magnitudes[name]) + fft[name]) if args.get(name) is not None
                 else np.zeros(0) for name in LTI_GRADIENT_WRT)


LTI_GRADIENT_WRT = ("u", "Abar", "Bbar", "C", "D", "initial_state")

register_gradient(Gradient(
    form="ssm.lti.recurrent",
    vjp=lambda **args: ref.lti_vjp(**args),
    wrt=LTI_GRADIENT_WRT,
    cotangents=("cotangent",),
    bound=lti_grad_bound,
    rule="derived float64 bound: 2u (2(T+2)(N+1) + B T + 4) M + 2 F, M the VJP on magnitudes (|u|, |Abar|, |Bbar|, "
         "|C|, |D|, |x_-1|, |dy|), F an FFTConv backward's correlation errors (2 eps(2T) + 3u)(|a|_2 |b|_1 + "
         "|a|_1 |b|_2) through the Krylov VJP on magnitudes; per time for du, per axis 1 for the parameters",
    axes=(("batch", "time", "channel"), ("channel", "row", "column"), ("channel", "state"), ("channel", "state"),
          ("channel",), ("batch", "channel", "state")),
))


# ---------------------------------------------------------------------------- state continuation

def _continued(impl, args: dict):
    """Run the pieces of u between consecutive cuts, each from the state the previous one left."""
    system = without(args, ("u", "initial_state", "cuts"))
    state, pieces = args.get("initial_state"), []
    bounds = (0,) + tuple(args["cuts"]) + (args["u"].shape[1],)
    for start, stop in zip(bounds, bounds[1:]):
        y, state = impl(args["u"][:, start:stop], **system, initial_state=state, return_state=True)
        pieces.append(y)
    whole, final = impl(args["u"], **system, initial_state=args.get("initial_state"), return_state=True)
    return (np.concatenate(pieces, axis=1), state[:, None]), (whole, final[:, None])


def _continuation_bound(args: dict, expected: tuple) -> tuple:
    """2 E_t for y; for the final state, 2 (T+1)(N+1) u max m_{T-1} (the recurrence's state error)."""
    (y_bound,) = lti_bound(without(args, ("cuts",)), expected)
    Abar, Bbar, C = _system(args)
    u = np.asarray(args["u"], dtype=np.float64)
    x0 = args.get("initial_state")
    m = np.zeros((u.shape[0],) + C.shape) if x0 is None else np.abs(np.asarray(x0, dtype=np.float64))
    for t in range(u.shape[1]):
        m = np.einsum("dmn,bdn->bdm", np.abs(Abar), m) + np.abs(Bbar) * np.abs(u[:, t, :, None])
    T, N = u.shape[1], C.shape[1]
    return y_bound, 2 * U64 * (T + 1) * (N + 1) * m.max(initial=0.0)


register_claim(Claim(
    key="ssm.lti.state_continuation",
    statement=("running [u1; u2; ...] from x_{-1} equals running each piece from the state the previous "
               "one returned, for every set of split points (all of them: T single steps)"),
    subject="ssm.lti.recurrent",
    default_impl=ref.lti_recurrent,
    relation=_continued,
    inputs=continuation_inputs,
    bound=_continuation_bound,
    rule=LTI_RULE + "; final state 2(T+1)(N+1) u max m_{T-1}",
    outputs=("y", "final_state"),
))


# ------------------------------------------------------------------- exact Krylov = impulse response

def _krylov_exact(impl, args: dict):
    Abar, Bbar, C = (fractions(args[name], args["den"]) for name in ("Abar_num", "Bbar_num", "C_num"))
    length = args["length"]
    impulse = np.zeros((1, length, C.shape[0]), dtype=object)
    impulse[:, 0] = Fraction(1)
    response = ref.lti_recurrent(impulse, Abar, Bbar, C)[0].T
    difference = exact_difference(impl(Abar, Bbar, C, length), response)
    return (difference,), (np.zeros(difference.shape),)


register_claim(Claim(
    key="ssm.lti.krylov_exact",
    statement=("the Krylov kernel K_l = C Abar^l Bbar (lti_kernel) equals the recurrence's impulse response "
               "(lti_recurrent) exactly, in rational arithmetic"),
    subject="ssm.lti kernel (lti_kernel)",
    default_impl=ref.lti_kernel,
    relation=_krylov_exact,
    inputs=rational_lti_inputs,
    bound=None,
    rule="exact: both forms evaluated on fractions.Fraction object arrays (denominators 1, 3, 7)",
    exactness="exact (rational)",
    outputs=("kernel",),
))


# -------------------------------------------------------------------- FFT == direct for every L

def _fft_direct(impl, args: dict):
    return (impl(**args),), (ref.causal_conv(**args),)


def conv_bound(args: dict, expected: tuple) -> tuple:
    """2 max(direct E_t, FFT E_t): direct (L + 1) u sum_l |K_l| |u_{t-l}| + 2u |D u_t|; FFT
    (2 eps(T+L) + 3u) S + 2u |D u_t| (+ u |y_t|)."""
    u, K = np.asarray(args["u"], dtype=np.float64), np.asarray(args["K"], dtype=np.float64)
    D = np.zeros(K.shape[0]) if args.get("D") is None else np.asarray(args["D"], dtype=np.float64)
    magnitude = np.abs(ref.causal_conv(np.abs(u), np.abs(K)))  # sum_l |K_l| |u_{t-l}|, (B, T, Dch)
    DU = np.abs(D * u)
    direct = (K.shape[1] + 1) * U64 * magnitude + 2 * U64 * DU
    fft = (1 + U64) * fft_conv_error(u, K)[:, None, :] + U64 * magnitude + 2 * U64 * DU
    return (_per_position(2 * np.maximum(direct, fft)),)


def _length_sweep(L: int, rng) -> dict:
    """B=1, T=256, Dch=4, normal u and K of length L, with D."""
    return {"u": rng.standard_normal((1, 256, 4)), "K": rng.standard_normal((4, L)), "D": rng.standard_normal(4)}


register_claim(Claim(
    key="ssm.conv.fft_every_length",
    statement="fft_conv equals causal_conv for every kernel length L, shorter or longer than the signal",
    subject="fft_conv",
    default_impl=ref.fft_conv,
    relation=_fft_direct,
    inputs=conv_inputs,
    bound=conv_bound,
    rule="derived float64 bound: 2 max((L+1) u sum|K||u| , (2 eps(T+L) + 3u)(|u|_2|K|_1 + |u|_1|K|_2)) + 4u|D u_t|",
    sweeps=(Sweep("L", "kernel length L (T = 256, Dch = 4)", (1, 16, 64, 256, 1024), _length_sweep),),
))


# ------------------------------------------------------------------------------------------ S4

def _pairs(x):
    return np.concatenate([x, x.conj()], axis=-1)


def _power_error(Abar: np.ndarray, L: int, a: np.ndarray, g: float) -> np.ndarray:
    """First-order bound on ||fl(Abar^L) - Abar^L||_inf for numpy's matrix_power (binary powering),
    per channel. A product X Y rounds by at most g || |X| |Y| ||. A rounding in the square
    Z = Abar^p reaches Abar^L through floor(L/p) sandwiches Abar^i E Abar^j (i + j = L - p), each
    of norm at most s_p = max_{i+j=L-p} a_i a_j; one in the running product of degree r through
    the right factor Abar^(L-r), of norm a_{L-r}. a[h, k] = ||Abar^k||_inf for k <= L."""
    def sandwich(q):
        return (a[:, : q + 1] * a[:, q::-1]).max(axis=1)

    def rounding(X, Y):
        return g * np.abs(np.abs(X) @ np.abs(Y)).sum(axis=-1).max(axis=-1)

    total, z, degree, result, result_degree, n = np.zeros(a.shape[0]), Abar, 1, None, 0, L
    while n > 0:
        if degree > 1:
            total = total + (L // degree) * sandwich(L - degree) * rounding(z, z)
            z = z @ z
        n, bit = divmod(n, 2)
        if bit:
            if result is not None:
                total = total + a[:, L - result_degree - degree] * rounding(result, z)
                result = result @ z
            else:
                result = z
            result_degree += degree
        if n:
            degree *= 2
    return total


def dplr_bound(args: dict, expected: tuple) -> tuple:
    """Per lag l: 2 max(E_Krylov(l), E_DPLR) per channel, maximised over channels (module docstring)."""
    Lambda, P, Q, B, C = (np.asarray(args[k], dtype=np.complex128) for k in ("Lambda", "P", "Q", "B", "C"))
    dt, L = np.exp(np.asarray(args["log_dt"], dtype=np.float64)), int(args["length"])
    H, n = Lambda.shape
    N2, u = 2 * n, U64
    g = 2 * (N2 + 2) * u
    Abar, Bbar = _dense_bilinear(Lambda, P, Q, B, dt)
    L2, P2, Q2, B2, C2 = (_pairs(x) for x in (Lambda, P, Q, B, C))
    h = (dt / 2)[:, None, None]
    A = np.einsum("hm,mn->hmn", L2, np.eye(N2)) - np.einsum("hm,hn->hmn", P2, Q2.conj())
    magnitude_A = np.einsum("hm,mn->hmn", np.abs(L2), np.eye(N2)) + np.einsum("hm,hn->hmn", np.abs(P2), np.abs(Q2))
    eye = np.eye(N2)
    M, Nn = eye - h * A, eye + h * A
    Mmag = eye + h * magnitude_A
    Minv = np.abs(np.linalg.inv(M)).sum(axis=2).max(axis=1)  # ||M^-1||_inf per channel

    def inf_norm(X):
        return np.abs(X).sum(axis=-1).max(axis=-1) if X.ndim == 3 else np.abs(X).max(axis=-1)

    delta_A = Minv * (inf_norm(M @ Abar - Nn) + (N2 + 4) * u * inf_norm(Mmag @ np.abs(Abar) + Mmag))
    rhs_B = dt[:, None] * B2
    delta_B = Minv * (inf_norm(np.einsum("hmn,hn->hm", M, Bbar) - rhs_B)
                      + (N2 + 4) * u * inf_norm(np.einsum("hmn,hn->hm", Mmag, np.abs(Bbar)) + np.abs(rhs_B)))
    c1 = np.abs(C2).sum(axis=1)

    # norms of the powers a_k = ||Abar^k||_inf, k = 0..L (non-normal Abar: transient growth)
    a, X = np.empty((H, L + 1)), np.broadcast_to(eye, Abar.shape)
    for k in range(L + 1):
        a[:, k] = inf_norm(X)
        X = X @ Abar if k < L else X
    kappa = a.max(axis=1) + delta_A * L * a.max(axis=1) ** 2

    # Krylov: v_0 = Bbar^, v_l = Abar^ v_{l-1}, K_l = C2 v_l
    v = [Bbar]
    for _ in range(L - 1):
        v.append(np.einsum("hmn,hn->hm", Abar, v[-1]))
    z = np.stack([inf_norm(x) for x in v], axis=1)  # ||v_l||_inf, (H, L)
    w = np.stack([inf_norm(np.einsum("hmn,hn->hm", np.abs(Abar), np.abs(x))) for x in v], axis=1)
    source = g * w + delta_A[:, None] * z  # what step j adds, before propagation by Abar^(l-j)
    d_v = np.zeros((H, L))
    for index in range(H):
        d_v[index, 1:] = np.convolve(a[index, :L], source[index])[: L - 1]
    d_v += a[:, :L] * delta_B[:, None]
    krylov = c1[:, None] * (d_v + g * z)

    # DPLR: C~ = C2 (I - Abar^L) by repeated squaring (_power_error); delta_A reaches Abar^L
    # through sum_j Abar^j dA Abar^(L-1-j), of norm at most sum_j a_j a_{L-1-j}
    power = np.linalg.matrix_power(Abar, L)
    c_tilde = np.einsum("hm,hmn->hn", C2, eye - power)
    sandwiches = np.einsum("hj,hj->h", a[:, :L], a[:, L - 1::-1])  # sum_j a_j a_{L-1-j}
    d_power = _power_error(Abar, L, a, g) + sandwiches * delta_A + u * (1 + kappa)
    d_c = c1 * (d_power + g * (1 + kappa))  # (H,) bound on every |delta C~_m|
    abs_c = np.abs(c_tilde) + d_c[:, None]

    omega = np.exp(-2j * np.pi * np.arange(L // 2 + 1) / L)
    d_omega = 12 * u
    s = (1 + omega) / 2
    d_s = d_omega / 2 + u
    dtL = dt[:, None, None] * np.abs(L2)[..., None]  # (H, 2n, 1)
    den = (1 - omega) - s * dt[:, None, None] * L2[..., None]  # (H, 2n, K)
    d_den = d_omega * (1 + dtL / 2) + 6 * u * (np.abs(1 - omega) + np.abs(s) * dtL)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(dt[:, None, None] / den)
        eps_r = d_den / np.abs(den) + 4 * u + 2 * (N2 + 3) * u

    def cauchy(a, b):
        """|k_ab|, its error bound, for magnitudes a, b (H, 2n)."""
        terms = (a * b)[..., None] * r
        return terms.sum(axis=1), (terms * eps_r).sum(axis=1)

    def value(a, b):
        return np.einsum("hm,hmk->hk", a * b, dt[:, None, None] / den)

    q_star = Q2.conj()
    k_cb, k_cp = value(c_tilde, B2), value(c_tilde, P2)
    k_qb, k_qp = value(q_star, B2), value(q_star, P2)
    _, e_cb = cauchy(abs_c, np.abs(B2))
    _, e_cp = cauchy(abs_c, np.abs(P2))
    _, e_qb = cauchy(np.abs(Q2), np.abs(B2))
    _, e_qp = cauchy(np.abs(Q2), np.abs(P2))
    e_cb = e_cb + d_c[:, None] * (np.abs(B2)[..., None] * r).sum(axis=1)
    e_cp = e_cp + d_c[:, None] * (np.abs(P2)[..., None] * r).sum(axis=1)
    abs_s = np.abs(s)
    woodbury = 1 + s * k_qp
    with np.errstate(divide="ignore", invalid="ignore"):
        d_wood = abs_s * e_qp + d_s * np.abs(k_qp) + 3 * u * (1 + np.abs(s * k_qp))
        quotient = np.abs(s * k_cp * k_qb / woodbury)
        d_spectrum = (e_cb + (abs_s * np.abs(k_qb) * e_cp + abs_s * np.abs(k_cp) * e_qb
                              + d_s * np.abs(k_cp) * np.abs(k_qb)) / np.abs(woodbury)
                      + quotient * (d_wood / np.abs(woodbury) + 8 * u) + 2 * u * (np.abs(k_cb) + quotient))
    weights = np.full(omega.shape, 2.0)
    weights[0] = 1.0
    if L % 2 == 0:
        weights[-1] = 1.0
    K_norm = np.linalg.norm(np.asarray(expected[0], dtype=np.float64), axis=1)
    dplr = (d_spectrum * weights).sum(axis=1) / L + (fft_error(L) + u) * K_norm  # (H,)
    bound = 2 * np.maximum(krylov, dplr[:, None])
    return (np.where(np.isnan(bound), np.inf, bound).max(axis=0),)


# The gradient (``s4_krylov_vjp``) on magnitudes: every step of the VJP with each array replaced by
# the size of the terms it sums, the Krylov vectors and their adjoints by the recurrences on
# |Abar|, and each solve X = M^-1 R (Abar, Bbar; G_N, G_X with M^H) by |M^-1| (|M| |X| + |R|): an LU
# solve's backward error of order u |M| |X| and the right side's, carried by the exact inverse's
# magnitude. Each gradient is then within 16 (L + 2)(2n + 4) u of its magnitude through the dense
# system (sums over at most L lags of complex products of 2n terms, the solves' sums, twice for two
# correct backwards). A backward through the DPLR path (S4's kernel) computes the gradients through
# C~ = C2 (I - Abar^L), the truncated generating function, and back through its Cauchy sums: at
# small dt, I - Abar^L is near 0 and its inverse's norm amplifies that path's rounding (70 times
# over the dense bound measured at L = 3, dt = 0.012), so every bound is multiplied by
# 1 + ||(I - Abar^L)^-1||_inf per channel.

S4_GRADIENT_WRT = ("Lambda", "P", "Q", "B", "C", "log_dt")


def _abs_pairs(x):
    return np.abs(_pairs(x))

def s4_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-mode bound (log_dt: per channel) on two correct float64 backwards of the S4 kernel,
    through the dense system or the DPLR path (comment above)."""
    Lambda, P, Q, B, C = (np.asarray(args[k], dtype=np.complex128) for k in ("Lambda", "P", "Q", "B", "C"))
    dt, L = np.exp(np.asarray(args["log_dt"], dtype=np.float64)), int(args["length"])
    dK = np.abs(np.asarray(args["cotangent"], dtype=np.float64))
    H, n = Lambda.shape
    N2, eye = 2 * n, np.eye(2 * n)
    Abar, Bbar = _dense_bilinear(Lambda, P, Q, B, dt)
    h = (dt / 2)[:, None, None]
    A = np.einsum("hm,mn->hmn", _pairs(Lambda), eye) - np.einsum("hm,hn->hmn", _pairs(P), _pairs(Q).conj())
    mA = np.einsum("hm,mn->hmn", _abs_pairs(Lambda), eye) + np.einsum("hm,hn->hmn", _abs_pairs(P), _abs_pairs(Q))
    M = eye - h * A
    mM, iM = eye + h * mA, np.abs(np.linalg.inv(M))
    mAbar = iM @ (mM @ np.abs(Abar) + mM)
    mBbar = np.einsum("hmn,hn->hm", iM, np.einsum("hmn,hn->hm", mM, np.abs(Bbar)) + dt[:, None] * _abs_pairs(B))
    mC2 = _abs_pairs(C)
    vectors, v = [], mBbar
    for _ in range(L):
        vectors.append(v)
        v = np.einsum("hmn,hn->hm", mAbar, v)
    mu, mG_Abar, mG_C2 = np.zeros((H, N2)), np.zeros((H, N2, N2)), np.zeros((H, N2))
    for l in reversed(range(L)):
        mG_Abar += mu[:, :, None] * vectors[l][:, None, :]
        mu = dK[:, l, None] * mC2 + np.einsum("hmn,hm->hn", mAbar, mu)
        mG_C2 += dK[:, l, None] * vectors[l]
    grads = ref.lti_kernel_vjp(Abar, Bbar, _pairs(C), L, cotangent=args["cotangent"])
    M_H = np.conj(np.swapaxes(M, -1, -2))
    G_N = np.linalg.solve(M_H, grads["Abar"])
    G_X = np.linalg.solve(M_H, grads["Bbar"][..., None])[..., 0]
    iM_T, mM_T = np.swapaxes(iM, -1, -2), np.swapaxes(mM, -1, -2)
    mG_N = iM_T @ (mM_T @ np.abs(G_N) + mG_Abar)
    mG_X = np.einsum("hmn,hn->hm", iM_T, np.einsum("hmn,hn->hm", mM_T, np.abs(G_X)) + mu)
    mG_M = mG_N @ np.swapaxes(mAbar, -1, -2) + mG_X[..., :, None] * mBbar[..., None, :]
    mG_A = h * (mG_N + mG_M)
    m_dt = ((mG_N + mG_M) * mA / 2).sum(axis=(-2, -1)) + (mG_X * _abs_pairs(B)).sum(-1)
    def unpaired(m):
        return m[:, :n] + m[:, n:]

    sizes = {"Lambda": unpaired(np.diagonal(mG_A, axis1=-2, axis2=-1)),
             "P": unpaired(np.einsum("hmn,hn->hm", mG_A, _abs_pairs(Q))),
             "Q": unpaired(np.einsum("hmn,hm->hn", mG_A, _abs_pairs(P))), "B": unpaired(dt[:, None] * mG_X),
             "C": unpaired(mG_C2), "log_dt": dt * m_dt}
    # the DPLR path runs through C~ = C2 (I - Abar^L) and back: its inverse's norm amplifies the rounding
    truncation = eye - np.linalg.matrix_power(Abar, L)
    amplification = 1 + np.abs(np.linalg.inv(truncation)).sum(-1).max(-1) if L else np.ones(H)
    factor = 16 * (L + 2) * (N2 + 4) * U64
    return tuple(factor * amplification * sizes[name] if name == "log_dt"
                 else factor * per_position(amplification[:, None] * sizes[name]) for name in S4_GRADIENT_WRT)


DPLR_RULE = ("derived float64 bound: 2 max(Krylov sum_j ||Abar^(l-j)|| (g |||Abar||v_j||| + delta_A ||v_j||) "
             "with a posteriori solve errors, DPLR node errors of the Cauchy sums and the Woodbury quotient "
             "averaged by irfft + eps(L) |K|_2)")

register_form(Form(
    key="ssm.s4.krylov_kernel",
    fn=ref.s4_krylov_kernel,
    inputs=dplr_inputs,
    bound=dplr_bound,
    rule=DPLR_RULE,
    statement="the S4 kernel as the Krylov kernel of the dense bilinear system, the definition",
    data_args=("Lambda", "P", "Q", "B", "C"),
    outputs=("K",),
))

register_gradient(Gradient(
    form="ssm.s4.krylov_kernel",
    vjp=lambda **args: ref.s4_krylov_vjp(**args),
    wrt=S4_GRADIENT_WRT,
    cotangents=("cotangent",),
    bound=s4_grad_bound,
    rule="derived float64 bound: 16 (L+2)(2n+4) u (1 + ||(I - Abar^L)^-1||) times the VJP on magnitudes through the "
         "dense bilinear system (|Abar|-recurrences; each solve by |M^-1| (|M| |X| + |R|)), per mode (log_dt per "
         "channel)",
    axes=(("channel", "mode"),) * 5 + (("channel",),),
))

register_form(Form(
    key="ssm.s4.dplr_kernel",
    fn=ref.s4_dplr_kernel,
    inputs=dplr_inputs,
    bound=dplr_bound,
    rule=DPLR_RULE,
    statement=("S4's DPLR kernel (truncated generating function at the roots of unity, Cauchy sums, rank-1 "
               "Woodbury, irfft) equals the Krylov kernel of the bilinear system"),
    oracle="ssm.s4.krylov_kernel",
    data_args=("Lambda", "P", "Q", "B", "C"),
    outputs=("K",),
))


# ----------------------------------------------------------------------------------------- S4D

def s4d_krylov_kernel(log_dt, A, B, C, length, *, discretization="zoh"):
    """The S4D kernel as the Krylov kernel (``lti_kernel``) of the conjugate-doubled diagonal
    system, each mode discretised elementwise as ``discretize`` does for a diagonal A:
    ZOH Abar = exp(dt A), Bbar = (exp(dt A) - 1) / A B; bilinear Abar = (1 + dt A/2) / (1 - dt A/2),
    Bbar = dt B / (1 - dt A/2). B=None means ones. Returns the real part, float64 (H, L)."""
    dt, A, B, C, length = _s4d_args(log_dt, A, B, C, length, discretization)  # s4d_kernel's checks
    dtA = dt * A
    if discretization == "zoh":
        Abar, Bbar = np.exp(dtA), np.expm1(dtA) / A * B
    else:
        Abar, Bbar = (1 + dtA / 2) / (1 - dtA / 2), dt * B / (1 - dtA / 2)
    Abar2 = np.einsum("hm,mn->hmn", _pairs(Abar), np.eye(2 * A.shape[1]))
    return ref.lti_kernel(Abar2, _pairs(Bbar), _pairs(C), length).real


def s4d_bound(args: dict, expected: tuple) -> tuple:
    """Per lag: 2 sum_m (both halves) of the per-mode errors of the module docstring, max over channels."""
    u = U64
    dt = np.exp(np.asarray(args["log_dt"], dtype=np.float64))[:, None]
    A = np.asarray(args["A"], dtype=np.complex128)
    absB = np.ones(A.shape) if args["B"] is None else np.abs(np.asarray(args["B"], dtype=np.complex128))
    absC = np.abs(np.asarray(args["C"], dtype=np.complex128))
    z = dt * A
    n, L = A.shape[1], int(args["length"])
    l = np.arange(L)[None, None, :]
    absz = np.abs(z)[..., None]
    if args.get("discretization", "zoh") == "zoh":
        rho = np.exp(z.real)[..., None]
        Bbar = np.abs(np.expm1(z)) / np.abs(A) * absB
        d_B = 8 * u * (np.abs(np.exp(z)) + 1) / np.abs(A) * absB + 6 * u * Bbar
        d_pow = rho**l * ((l * absz + 4) + (4 * l + 3 * l)) * u
    else:
        den = np.abs(1 - z / 2)
        rho = (np.abs(1 + z / 2) / den)[..., None]
        Bbar = dt * absB / den
        d_B = (6 * u + u * (1 + np.abs(z) / 2) / den) * Bbar
        d_rho = (4 * u * (1 + np.abs(z) / 2) / den)[..., None] * (1 + rho)
        with np.errstate(divide="ignore"):
            log_rho = np.abs(np.log(rho))
        growth = np.where(l > 0, l * rho ** np.maximum(l - 1, 0), 0.0)
        d_pow = (rho**l * np.where(rho > 0, (6 * l + 6 + 2 * l * (log_rho + np.pi)) + 3 * l, 0.0) * u
                 + 2 * growth * d_rho)
    tau = (absC * Bbar)[..., None] * rho**l
    per_mode = absC[..., None] * 2 * d_B[..., None] * rho**l + (absC * Bbar)[..., None] * d_pow + tau * (6 * n + 17) * u
    return ((2 * 2 * per_mode.sum(axis=1)).max(axis=0),)


S4D_RULE = ("derived float64 bound: 4 sum_m |C| (2|dBbar| rho^l + |Bbar| |d Abar^l|) + (6n+17) u |C||Bbar| rho^l "
            "(Vandermonde powers and Krylov products, Bbar and Abar evaluation)")

register_form(Form(
    key="ssm.s4d.krylov",
    fn=s4d_krylov_kernel,
    inputs=s4d_inputs,
    bound=s4d_bound,
    rule=S4D_RULE,
    statement="the S4D kernel as the Krylov kernel of the conjugate-doubled diagonal system, the definition",
    data_args=("A", "B", "C"),
    outputs=("K",),
))

register_form(Form(
    key="ssm.s4d.kernel",
    fn=ref.s4d_kernel,
    inputs=s4d_inputs,
    bound=s4d_bound,
    rule=S4D_RULE,
    statement="S4D's Vandermonde kernel 2 Re sum_n C Bbar Abar^l (conjugate halving) equals the Krylov kernel",
    oracle="ssm.s4d.krylov",
    data_args=("A", "B", "C"),
    outputs=("K",),
))


# The gradient: with f_nl = C B beta Abar^l, every parameter's gradient is 2 sum_l dK_l conj(df_nl/dp)
# (``s4d_vjp``); each term is a product of the mode's Bbar factor beta, its power Abar^l or
# l Abar^(l-1) and their derivatives, within the forward's per-mode relative errors (the power's
# (6l + 6 + 2l (|log rho| + pi)) u or exp(z l)'s (l |z| + 4) u, bilinear Abar's 4u (1 + |z|/2)
# (1 + rho) / (|1 - z/2| rho) per factor), plus (L + 2n + 40) u for the derivative formulas and the
# sums over lags and modes. The size of each term is taken before cancellation: ZOH's beta_A =
# (dt Abar - beta) / A counts |dt Abar| + |beta|.

def s4d_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-mode (and, for log_dt, per-channel) bound on two correct float64 evaluations of the S4D
    kernel's gradients (comment above)."""
    dt, A, B, C, L = _s4d_args(args["log_dt"], args["A"], args["B"], args["C"], args["length"],
                               args.get("discretization", "zoh"))
    dK = np.abs(np.asarray(args["cotangent"], dtype=np.float64))
    z, n = dt * A, A.shape[1]
    if args.get("discretization", "zoh") == "zoh":
        rho = np.abs(np.exp(z))
        beta = np.abs(np.expm1(z) / A)
        beta_A, Abar_A, beta_dt, Abar_dt = (dt * rho + beta) / np.abs(A), dt * rho, rho, np.abs(A) * rho
        extra = 0.0
    else:
        m = np.abs(1 - z / 2)
        rho, beta = np.abs(1 + z / 2) / m, dt / m
        beta_A, Abar_A, beta_dt, Abar_dt = dt**2 / (2 * m**2), dt / m**2, 1 / m**2, np.abs(A) / m**2
        with np.errstate(divide="ignore"):
            extra = np.where(rho > 0, 4 * (1 + np.abs(z) / 2) * (1 + rho) / (m * rho), 0.0)
    l = np.arange(L)
    with np.errstate(divide="ignore"):
        log_rho = np.where(rho > 0, np.abs(np.log(np.where(rho > 0, rho, 1.0))), 0.0)
    W0 = np.einsum("hl,hnl->hn", dK, rho[..., None] ** l)
    W1 = np.einsum("hl,hnl->hn", dK, np.where(l > 0, l * rho[..., None] ** np.maximum(l - 1, 0), 0.0))
    absB, absC = np.abs(B), np.abs(C)
    eps = U64 * (L * (np.abs(z) + 2 * log_rho + 2 * np.pi + 16 + extra) + L + 2 * n + 40)
    sizes = {"A": 2 * absC * absB * (beta_A * W0 + beta * Abar_A * W1), "B": 2 * absC * beta * W0,
             "C": 2 * absB * beta * W0}
    log_dt = 2 * dt[:, 0] * (eps * absC * absB * (beta_dt * W0 + beta * Abar_dt * W1)).sum(axis=1)
    return tuple(2 * log_dt if name == "log_dt" else np.zeros(0) if args.get(name) is None
                 else 2 * per_position(eps * sizes[name]) for name in S4D_GRADIENT_WRT)


S4D_GRADIENT_WRT = ("log_dt", "A", "B", "C")

register_gradient(Gradient(
    form="ssm.s4d.krylov",
    vjp=lambda **args: ref.s4d_vjp(**args),
    wrt=S4D_GRADIENT_WRT,
    cotangents=("cotangent",),
    bound=s4d_grad_bound,
    rule="derived float64 bound: 2 eps_n 2 sum_l |dK_l| |df_nl/dp| per mode (log_dt: summed over modes), eps_n = "
         "u (L (|z| + 2|log rho| + 2 pi + 16 (+ bilinear Abar's)) + L + 2n + 40), the terms' sizes before cancellation",
    axes=(("channel",), ("channel", "mode"), ("channel", "mode"), ("channel", "mode")),
))


# ------------------------------------------------------------------------------ discretisation

SCIPY_METHOD = {"forward_euler": ("euler", None), "backward_euler": ("backward_diff", None),
                "bilinear": ("bilinear", None), "zoh": ("zoh", None)}


def _scipy_discretize(args: dict) -> tuple:
    A, B = np.asarray(args["A"], dtype=np.float64), np.asarray(args["B"], dtype=np.float64)
    b = B.reshape(A.shape[0], -1)
    method, alpha = SCIPY_METHOD.get(args["method"], ("gbt", args["alpha"]))
    ad, bd, *_ = scipy.signal.cont2discrete((A, b, np.eye(A.shape[0]), np.zeros((A.shape[0], b.shape[1]))),
                                            args["step"], method=method, alpha=alpha)
    return ad, bd.reshape(B.shape)


def _against_scipy(impl, args: dict):
    return impl(**args), _scipy_discretize(args)


def _solve_error(M, X, R, Mmag, Rmag) -> float:
    """A posteriori bound on ||X^ - M^-1 R||_inf for a computed X^ (module docstring)."""
    X, R = X.reshape(M.shape[0], -1), R.reshape(M.shape[0], -1)
    Rmag = Rmag.reshape(R.shape)
    inverse = np.abs(np.linalg.inv(M)).sum(axis=1).max()
    residual = np.abs(M @ X - R).sum(axis=1).max()
    rounding = (M.shape[0] + 4) * U64 * (Mmag @ np.abs(X) + Rmag).sum(axis=1).max()
    return inverse * (residual + rounding)


_ALPHA = {"forward_euler": 0.0, "backward_euler": 1.0, "bilinear": 0.5}


def discretize_bound(args: dict, expected: tuple) -> tuple:
    """Per row of (Abar, Bbar): the sum of the two results' error bounds (module docstring)."""
    A, B, h = np.asarray(args["A"], dtype=np.float64), np.asarray(args["B"], dtype=np.float64), args["step"]
    N = A.shape[0]
    b = B.reshape(N, -1)
    if args["method"] == "zoh":
        X = h * np.block([[A, b], [np.zeros((b.shape[1], N + b.shape[1]))]])
        norm = np.abs(X).sum(axis=0).max()
        squarings = max(0, int(np.ceil(np.log2(norm / 5.37)))) if norm > 0 else 0
        one = (norm + 2 * (squarings + 8) * (X.shape[0] + 2)) * U64 * np.exp(norm)
        return 2 * one, 2 * one
    a = _ALPHA.get(args["method"], args["alpha"])
    M, R = np.eye(N) - a * h * A, np.eye(N) + (1 - a) * h * A
    Mmag, Rmag = np.eye(N) + a * h * np.abs(A), np.eye(N) + (1 - a) * h * np.abs(A)
    ours = ref.discretize(A, B, h, args["method"], alpha=args["alpha"])
    bounds = []
    for index, (rhs, rmag) in enumerate(((R, Rmag), (h * b, h * np.abs(b)))):
        bounds.append(sum(_solve_error(M, X[index], rhs, Mmag, rmag) for X in (ours, expected)))
    return tuple(bounds)


register_claim(Claim(
    key="ssm.discretize.scipy",
    statement=("discretize equals scipy.signal.cont2discrete for every method: forward_euler ('euler'), "
               "backward_euler ('backward_diff'), bilinear, gbt (alpha) and zoh"),
    subject="discretize",
    default_impl=ref.discretize,
    relation=_against_scipy,
    inputs=discretize_inputs,
    bound=discretize_bound,
    rule=("derived float64 bound: a posteriori LU solve errors ||M^-1|| (||M X^ - R|| + (N+4)u || |M||X^| + |R| ||) "
          "of both results; zoh 2 (||X||_1 + 2(s+8)(N+M+2)) u e^||X||_1"),
    outputs=("Abar", "Bbar"),
    time_axis=0,
))


ORDER_STEPS = (1 / 32, 1 / 64)
ORDER_METHODS = ("forward_euler", "backward_euler", "bilinear")
ORDER_TOLERANCE = 0.25


def _final_state(impl, args: dict, step: float, method: str) -> np.ndarray:
    Abar, Bbar = impl(args["A"], args["B"], step, method)
    x = np.asarray(args["x0"], dtype=np.float64)
    for _ in range(round(1 / step)):
        x = Abar @ x + Bbar * args["u"]
    return x


def _observed_orders(impl, args: dict):
    """log2(e(h) / e(h/2)) for each method, e = max-norm distance at time 1 from the ZOH solution
    (exact for the constant input), h = 1/32."""
    orders = []
    for method in ORDER_METHODS:
        errors = [np.abs(_final_state(impl, args, h, method) - _final_state(ref.discretize, args, h, "zoh")).max()
                  for h in ORDER_STEPS]
        with np.errstate(divide="ignore", invalid="ignore"):
            orders.append(np.log2(errors[0] / errors[1]))
    return (np.array(orders),), (np.array([1.0, 1.0, 2.0]),)


register_claim(Claim(
    key="ssm.discretize.order",
    statement=("halving the step halves the global error of forward and backward Euler and quarters that of "
               "the bilinear transform (orders 1, 1, 2), measured against ZOH, exact for a constant input"),
    subject="discretize",
    default_impl=ref.discretize,
    relation=_observed_orders,
    inputs=order_inputs,
    bound=lambda args, expected: (np.full(3, ORDER_TOLERANCE),),
    rule=("observed order within 0.25 of the true order: with e(h) = c h^p (1 + d h + O(h^2)) the observed "
          "order is p + log2((1 + d h)/(1 + d h/2)) ~ p + 0.72 d h, and at h = 1/32 this is within 0.25 "
          "for |d| <= 11, about 3 ||A|| for the strategy's systems (||A|| <= 4); rounding (1e-15) is far "
          "below e(h/2) >= 1e-6"),
    exactness="convergence order (tolerance 0.25)",
    outputs=("order",),
    time_axis=0,
))


# ----------------------------------------------------------------------------- GPU implementations

def _cupy_fft_inputs(simulated: bool):
    """Every system kind, shared or per-channel Abar, with or without D. On NumPy the form's
    tiny sizes (T <= 12, N <= 6); on a GPU T <= 256, N <= 16."""
    moderate = dict(seq_len=st.integers(1, 256), channels=st.integers(1, 4), state_size=st.integers(1, 16))
    return lti_conv_inputs(**(moderate if where("cupy") == "gpu" else {}))


register_implementation(Implementation(
    name="cupy.lti_fft",
    form="ssm.lti.fft",
    target="conv_cupy:lti_fft",
    runtime="cupy",
    dtypes=("float32", "float16"),
    inputs=_cupy_fft_inputs,
))
