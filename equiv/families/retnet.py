"""RetNet's retention (Sun et al. 2023): forms, derived float64 bounds, claims, sweeps.

The float64 bound (u = 2**-53, eps = 2u). Every form computes o_t as a sum over m <= t of terms
gamma^(t-m) (q_t . k_m) v_m (and gamma^(t+1) q_t S_0): the recurrence accumulates them one step
at a time, the parallel and chunked forms as matrix products over K, then over a chunk's or the
sequence's steps, and the state is carried between chunks. A decay gamma^n computed by n
multiplications, by a power, or as exp of a sum of n logarithms (as log-space kernels do) is
within n u (1 + |log gamma|) of gamma^n relatively, so two correct forms differ at t by at most

    4 (T + K + 4) eps (1 + Lambda) m_t,   Lambda = T max_h |log gamma_h| (0 for gamma = 0)

where m_t is the recurrence run on |q|, |k|, |v|, |S_0| (the size of the terms summed),
maximised over batch, heads and values. The state gets the same factor times the magnitudes'
state, per head.

The registered forms are the references themselves (``seqcheck.reference.retention``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.bounds import cumulative_max, per_axis_max, per_position, with_exponents, with_step_rounding
from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.registry import (Claim, Form, Gradient, Sweep, register_claim, register_form, register_gradient,
                                     without)
from seqcheck.equiv.relations import continuation, unstacked
from seqcheck.properties.arrays import for_form
from seqcheck.properties.retention import msr_inputs, rational_retention_inputs, retention_inputs
from seqcheck.reference import retention as ref
from seqcheck.reference.arith import U64, exact_difference, fractions, rounding
from seqcheck.reference.gla import gla_vjp, gla_vjp_in_dtype
from seqcheck.reference.mamba import ssd_recurrent

CHUNK_ARGS = ("chunk_size",)
DATA = ("q", "k", "v")


# ----------------------------------------------------------------------------- bound

def _log_decays(args: dict, T: int) -> np.ndarray:
    """|log gamma_h| (0 for gamma = 0, whose powers are exactly 0) as (1, T, H), one per step."""
    gamma = np.asarray(args["gamma"], dtype=np.float64)
    with np.errstate(divide="ignore"):
        logs = np.where(gamma > 0, np.abs(np.log(np.where(gamma > 0, gamma, 1.0))), 0.0)
    return np.broadcast_to(logs, (1, T, gamma.shape[0]))


def _magnitude(args: dict) -> tuple:
    """(factor, m_t per position, state magnitude per head, running exponent per position)."""
    S0 = args.get("initial_state")
    out, state = ref.retention_recurrent(np.abs(args["q"]), np.abs(args["k"]), np.abs(args["v"]), args["gamma"],
                                         initial_state=None if S0 is None else np.abs(S0), return_state=True)
    T, K = np.shape(args["q"])[1], np.shape(args["q"])[3]
    exponents = cumulative_max(_log_decays(args, T))
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + exponents.max(initial=0.0))
    return factor, out.max(axis=(0, 2, 3)) if out.size else np.zeros(T), per_axis_max(np.abs(state)), exponents


def retention_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct retention forms (module docstring); the state per head."""
    factor, out, state, _ = _magnitude(args)
    return (factor * out, factor * state)[:len(expected)]


def retention_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: m_t, and m_t times t + 1 plus the decays' running exponent
    (a kernel forming gamma^n as exp(n log gamma) in float32, or gamma itself as exp(log gamma)
    every step: ``with_step_rounding``)."""
    _, out, state, exponents = _magnitude(args)
    return with_exponents(out, state, with_step_rounding(exponents))[:len(expected)]


RULE = ("derived float64 bound: 4(T+K+4) eps (1 + T max|log gamma|) m_t, m_t the recurrence on magnitudes; "
        "state: the same factor times the magnitudes' state per head")


def retention_plain(args: dict, dtype) -> tuple:
    """The recurrence with every input and step rounded to ``dtype``: gamma S, k v^T, their sum,
    q S (summed in float32)."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        q, k, v, gamma = (r(args[name]) for name in ("q", "k", "v", "gamma"))
        S0 = args.get("initial_state")
        S = np.zeros(q.shape[:1] + q.shape[2:] + v.shape[3:]) if S0 is None else r(S0)
        outs = []
        for t in range(q.shape[1]):
            S = r(r(gamma[None, :, None, None] * S) + r(k[:, t, :, :, None] * v[:, t, :, None, :]))
            outs.append(total(r(q[:, t, :, :, None] * S), -2))
    out = np.stack(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if args.get("return_state") else (out,)


# ----------------------------------------------------------------------------- sweeps

def _sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, K=V=64, torchscale's gammas 1 - 2^(-5-h), final state returned."""
    batch, H, K = 1, 4, 64
    return {"q": rng.standard_normal((batch, T, H, K)), "k": rng.standard_normal((batch, T, H, K)) / np.sqrt(K),
            "v": rng.standard_normal((batch, T, H, K)), "gamma": 1 - 2.0 ** (-5 - np.arange(H, dtype=np.float64)),
            "initial_state": None, "return_state": True, "chunk_size": chunk_size}


SWEEP_T = (16, 64, 256, 1024)

# ----------------------------------------------------------------------------- forms

RECURRENT_INPUTS = for_form(retention_inputs, "recurrent", unused=("chunk_size",))
CHUNKED_INPUTS = for_form(retention_inputs, "chunked")

register_form(Form(
    key="retnet.retention.recurrent",
    fn=ref.retention_recurrent,
    inputs=RECURRENT_INPUTS,
    bound=retention_bound,
    rule=RULE,
    statement="retention, the definition: S_n = gamma S_{n-1} + k_n^T v_n, o_n = q_n S_n",
    plain=retention_plain,
    magnitude=retention_magnitude,
    magnitude_rule="each position's m_t, the recurrence on magnitudes, plus float32's ulp at (t+1) (1 + max|log gamma|) "
                   "m_t (the decays' exponents; state: the same with the magnitudes' state)",
    data_args=DATA,
    outputs=("out", "state"),
))


def _as_gla(args: dict) -> dict:
    """Retention's arguments as GLA's: g = log gamma for every step (B, T, H), scale 1."""
    B, T, H = np.shape(args["q"])[:3]
    with np.errstate(divide="ignore"):  # gamma = 0: a reset every step
        g = np.broadcast_to(np.log(np.asarray(args["gamma"], dtype=np.float64)), (B, T, H))
    return {**{n: a for n, a in args.items() if n not in ("gamma", "return_state")}, "g": g, "scale": 1.0}


def retention_vjp(**args) -> dict:
    """The gradient oracle of ``retnet.retention.recurrent``: retention is GLA with g = log gamma
    and scale 1, so its gradients are ``gla_vjp``'s (gamma is a constant here)."""
    return gla_vjp(**_as_gla(args))


def retention_grad_bound(args: dict, expected: tuple) -> tuple:
    """GLA's gradient bound (``equiv/families/gla.py``) with g = log gamma: 4 (T + K + V + 4) eps
    (1 + T max|log gamma|) times the VJP on magnitudes, per position."""
    gla = _as_gla(args)
    S0, dS = gla.get("initial_state"), gla.get("state_cotangent")
    magnitudes = gla_vjp(np.abs(gla["q"]), np.abs(gla["k"]), np.abs(gla["v"]), gla["g"],
                         cotangent=np.abs(gla["cotangent"]), state_cotangent=None if dS is None else np.abs(dS),
                         scale=1.0, initial_state=None if S0 is None else np.abs(S0))
    T, K, V = np.shape(args["q"])[1], np.shape(args["q"])[3], np.shape(args["v"])[3]
    logs = np.where(np.isfinite(gla["g"]), np.abs(gla["g"]), 0.0)
    factor = 4 * (T + K + V + 4) * 2 * U64 * (1 + cumulative_max(logs).max(initial=0.0))
    return tuple(factor * per_position(magnitudes[name]) for name in ("q", "k", "v"))


def retention_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype``: GLA's (``gla_vjp_in_dtype``) with g = log gamma."""
    grads = gla_vjp_in_dtype(**_as_gla(args), dtype=dtype)
    return tuple(grads[name] for name in ("q", "k", "v"))


def retention_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: GLA's VJP on magnitudes (the bound's M) times 1 + the
    decays' running exponent, per position."""
    gla = _as_gla(args)
    S0, dS = gla.get("initial_state"), gla.get("state_cotangent")
    magnitudes = gla_vjp(np.abs(gla["q"]), np.abs(gla["k"]), np.abs(gla["v"]), gla["g"],
                         cotangent=np.abs(gla["cotangent"]), state_cotangent=None if dS is None else np.abs(dS),
                         scale=1.0, initial_state=None if S0 is None else np.abs(S0))
    logs = np.where(np.isfinite(gla["g"]), np.abs(gla["g"]), 0.0)
    exponent = 1 + cumulative_max(logs).max(initial=0.0)
    return tuple(exponent * per_position(magnitudes[name]) for name in ("q", "k", "v"))


register_gradient(Gradient(
    form="retnet.retention.recurrent",
    vjp=retention_vjp,
    wrt=("q", "k", "v"),
    cotangents=("cotangent", "state_cotangent"),
    bound=retention_grad_bound,
    rule="derived float64 bound: 4(T+K+V+4) eps (1 + T max|log gamma|) M, M GLA's VJP on magnitudes with "
         "g = log gamma, per position",
    axes=(("batch", "time", "head", "channel"),) * 3,
    plain=retention_grad_plain,
    magnitude=retention_grad_magnitude,
))

register_form(Form(
    key="retnet.retention.parallel",
    fn=ref.retention_parallel,
    inputs=for_form(retention_inputs, "parallel", unused=("chunk_size", "initial_state", "return_state")),
    bound=retention_bound,
    rule=RULE,
    statement="retention's parallel form ((Q K^T) o D) V, D_nm = gamma^(n-m), equals its recurrence",
    oracle="retnet.retention.recurrent",
    data_args=DATA,
    sweeps=(Sweep("T", "sequence length T (H=4, K=V=64)", SWEEP_T,
                  lambda T, rng: without(_sweep_args(T, rng), CHUNK_ARGS + ("initial_state", "return_state"))),),
))

register_form(Form(
    key="retnet.retention.chunked",
    fn=ref.retention_chunked,
    inputs=CHUNKED_INPUTS,
    bound=retention_bound,
    rule=RULE,
    statement="chunkwise retention (parallel within a chunk, the state across chunks) equals its recurrence, "
              "for every chunk size, dividing T or not",
    oracle="retnet.retention.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (chunks of 64, H=4, K=V=64)", SWEEP_T, lambda T, rng: _sweep_args(T, rng)),
            Sweep("chunk_size", "chunk size (T=256, H=4, K=V=64)", (1, 4, 16, 64, 256),
                  lambda c, rng: _sweep_args(256, rng, chunk_size=c))),
))


# ----------------------------------------------------------------------------- claims

register_claim(Claim(
    key="retnet.retention.continuation",
    statement="retention continues from its returned state: [x1; x2] equals x1 then x2 from x1's state, at every "
              "split point",
    subject="retnet.retention.chunked",
    default_impl=ref.retention_chunked,
    relation=lambda impl, args: continuation(impl, args, DATA),
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(retention_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _steps(impl, args: dict) -> tuple:
    """T calls of retention_step against one recurrent pass."""
    full = ref.retention_recurrent(**{**args, "return_state": True})
    state, outs = args["initial_state"], []
    for t in range(args["q"].shape[1]):
        out, state = impl(args["q"][:, t], args["k"][:, t], args["v"][:, t], args["gamma"], state=state)
        outs.append(np.asarray(out))
    outs = np.stack(outs, axis=1) if outs else full[0]
    return (outs, full[1] if state is None else state), full


register_claim(Claim(
    key="retnet.retention.step",
    statement="T decoding steps (retention_step, one call each) equal one recurrent pass",
    subject="retnet.retention.step",
    default_impl=ref.retention_step,
    relation=_steps,
    inputs=lambda: RECURRENT_INPUTS(return_state=True),
    bound=retention_bound,
    rule=RULE,
    outputs=("out", "state"),
))


def _rational(args: dict) -> dict:
    """The exact claims' arguments as Fractions: q, k, v, S_0 over ``denominator``, gamma as given."""
    den = args["denominator"]
    state = args["initial_state"]
    return {"q": fractions(args["q"], den), "k": fractions(args["k"], den), "v": fractions(args["v"], den),
            "gamma": fractions(args["gamma_numerator"], args["gamma_denominator"]),
            "initial_state": None if state is None else fractions(state, den)}


def _exact(impl, args: dict) -> tuple:
    exact = _rational(args)
    want, want_state = ref.retention_recurrent(**exact, return_state=True)
    got, got_state = impl(**exact, chunk_size=args["chunk_size"], return_state=True)
    no_state = without(exact, ("initial_state",))
    parallel = ref.retention_parallel(**no_state)
    lhs = (exact_difference(got, want), exact_difference(parallel, ref.retention_recurrent(**no_state)),
           exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="retnet.retention.exact",
    statement="with rational q, k, v, S_0 and gamma (0 and 1 included), the chunked, parallel and recurrent forms "
              "are exactly equal (outputs and state, every chunk size)",
    subject="retnet.retention.chunked",
    default_impl=ref.retention_chunked,
    relation=_exact,
    inputs=rational_retention_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("chunked - recurrent", "parallel - recurrent", "state"),
))


def _as_ssd(impl, args: dict) -> tuple:
    """Retention against Mamba-2's SSD with the decays given: x = v, B = k, C = q, dt = 1, a_t = gamma,
    one group per head; SSD's state (B, H, P, N) is retention's transposed."""
    exact = _rational(args)
    out, state = impl(**exact, return_state=True)
    batch, T, H, _ = exact["q"].shape
    S0 = exact["initial_state"]
    ssd_out, ssd_state = ssd_recurrent(exact["v"], fractions(np.ones((batch, T, H))), None, exact["k"], exact["q"],
                                       decay=np.broadcast_to(exact["gamma"], (batch, T, H)),
                                       initial_state=None if S0 is None else np.swapaxes(S0, -1, -2),
                                       return_state=True)
    lhs = (exact_difference(out, ssd_out), exact_difference(state, np.swapaxes(ssd_state, -1, -2)))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="retnet.retention.ssd",
    statement="retention is Mamba-2's SSD with a constant decay per head (x = v, B = k, C = q, dt = 1, a_t = gamma): "
              "exactly equal on rationals, outputs and state",
    subject="retnet.retention.recurrent",
    default_impl=ref.retention_recurrent,
    relation=_as_ssd,
    inputs=lambda: rational_retention_inputs(chunk_size=1),
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("retention - SSD", "state"),
))


def _extreme_decays(impl, args: dict) -> tuple:
    """The chunked form at gamma in {0, 1e-3, 0.5, 1 - 1e-4, 1} and T up to 8192 (one chunk size of
    64 or 257), against the recurrence: finite where it is, within the bound."""
    return impl(**args), ref.retention_recurrent(**without(args, CHUNK_ARGS))


register_claim(Claim(
    key="retnet.retention.extreme_decays",
    statement="at gamma 0, 1e-3, 1 - 1e-4 and 1 and T up to 8192 the chunked form stays finite and equals the "
              "recurrence within the bound",
    subject="retnet.retention.chunked",
    default_impl=ref.retention_chunked,
    relation=_extreme_decays,
    inputs=lambda: retention_inputs(form="chunked", decay="extreme", batch=1, heads=st.integers(1, 3), key_dim=2,
                                    value_dim=2, seq_len=st.sampled_from([1, 2, 63, 64, 65, 1000, 8192]),
                                    chunk_size=st.sampled_from([64, 257]), return_state=True),
    bound=retention_bound,
    rule=RULE,
    outputs=("out", "state"),
))


# ----------------------------------------------------------------------------- multi-scale retention (torchscale)
#
# Each of torchscale's forms computes row n as c_n (x_n + d_n), x the retention output on the
# rotated, scaled q, k, c_n > 0 its normalisation, d_n its rounding: the retention bound times m_n
# plus 16u m_n for the normalising scales (each a few correctly rounded operations, applied to the
# inner and cross parts alike), and the per-head RMSNorm y = x / sqrt(mean(x^2) + eps) removes c_n
# when eps = 0. |N(x + d) - N(x)| <= 2 |d| / rms(x), so two correct forms differ by at most
# 2 (F m_n + 16u m_n) / rms(x_n) + 4u per element (the norm's own rounding; |y| <= sqrt(V)).

def _msr_core(args: dict) -> tuple:
    """(x, m): the retention output on the rotated, scaled q, k and its magnitudes, (B, T, H, V)."""
    q, k = np.asarray(args["q"], dtype=np.float64), np.asarray(args["k"], dtype=np.float64)
    positions, K = np.arange(q.shape[1]), q.shape[3]
    qr, kr = ref.msr_rotate(q, positions), ref.msr_rotate(k * K ** -0.5, positions)
    gamma = ref.msr_decays(q.shape[2])
    return (ref.retention_parallel(qr, kr, args["v"], gamma),
            ref.retention_recurrent(np.abs(qr), np.abs(kr), np.abs(args["v"]), gamma))


def msr_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct multi-scale retention forms (comment above)."""
    x, m = _msr_core(args)
    T, K, V = x.shape[1], np.shape(args["q"])[3], x.shape[3]
    gamma = ref.msr_decays(x.shape[2])
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + T * np.abs(np.log(gamma)).max()) + 16 * U64
    with np.errstate(divide="ignore", invalid="ignore"):
        per_row = 2 * factor * m.max(axis=-1) / np.sqrt(np.mean(x * x, axis=-1))
    per_row = np.where(np.isnan(per_row), np.inf, per_row)
    return ((per_row.max(axis=(0, 2), initial=0.0) if per_row.size else np.zeros(T)) + 4 * U64 * np.sqrt(V),)


MSR_RULE = ("derived float64 bound: 2 (4(T+K+4) eps (1 + T max|log gamma|) + 16u) m_n / rms(x_n) + 4u sqrt(V), "
            "x the retention output on the rotated, scaled q, k, m its magnitudes")
MSR_INPUTS = {form: for_form(msr_inputs, form, unused=() if form == "chunked" else CHUNK_ARGS)
              for form in ("recurrent", "parallel", "chunked")}

register_form(Form(
    key="retnet.msr.recurrent",
    fn=ref.msr_recurrent,
    inputs=MSR_INPUTS["recurrent"],
    bound=msr_bound,
    rule=MSR_RULE,
    statement="multi-scale retention as torchscale decodes it (recurrent_forward: the running scale, the rotation, "
              "k K^-1/2, the per-head RMSNorm)",
    data_args=DATA,
))



# The gradient. Backward, row n: dz = r (dy - y (dy . y)/V), dx = dz / sqrt(s_n), then retention's
# backward on the rotated qr, kr (``seqcheck.reference.retention.msr_vjp``). Two correct float64
# evaluations differ by (a) their own rounding, GLA's factor 4 (T+K+V+4) eps (1 + Lambda) + 16u
# times M, the VJP on magnitudes (|dz| <= r (|dy_j| + (1 + 3|y_j|) a), a = mean(|dy| (1 + |y|))),
# and (b) the forward's error in x reaching dz: x within rho rms(x) per element (rho = F m_n /
# rms(x_n), F the forward's factor) moves y by rho (1 + |y_j|) and r by rho r, so dz by at most
# r rho (|dy_j| + (1 + 3|y_j|) a) to first order (doubled, plus (V + 8) eps for the norm's own
# rounding), carried through the same VJP on magnitudes. Magnitudes of rotated vectors are taken
# per pair (|a_2i| + |a_2i+1| bounds either element of the pair turned by any angle), and the
# rotation back sums each pair's two bounds.

def _pair_sums(a: np.ndarray) -> np.ndarray:
    """|a_2i| + |a_2i+1| in both places of each pair (bounds either element after any rotation)."""
    pairs = np.abs(a[..., 0::2]) + np.abs(a[..., 1::2])
    return np.repeat(pairs, 2, axis=-1)


def msr_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of multi-scale retention's gradients
    (comment above)."""
    q, k, v = (np.asarray(args[n], dtype=np.float64) for n in DATA)
    dy, eps = np.asarray(args["cotangent"], dtype=np.float64), args.get("eps", 1e-6)
    B, T, H, K = q.shape
    positions, gamma = np.arange(T), ref.msr_decays(H)
    qr, kr = ref.msr_rotate(q, positions), ref.msr_rotate(k * K ** -0.5, positions)
    root = np.sqrt(ref.msr_scales(H, T))[None, :, :, None]
    x = ref.retention_recurrent(qr, kr, v, gamma)
    mq, mk, mv = _pair_sums(q), _pair_sums(k) * K ** -0.5, np.abs(v)
    m = ref.retention_recurrent(mq, mk, mv, gamma)
    V = v.shape[3]
    logs = T * np.abs(np.log(gamma)).max()
    forward = 4 * (T + K + 4) * 2 * U64 * (1 + logs) + 16 * U64
    own = 4 * (T + K + V + 4) * 2 * U64 * (1 + logs) + 16 * U64
    with np.errstate(divide="ignore", invalid="ignore"):
        rms_x = np.sqrt(np.mean(x * x, axis=-1, keepdims=True))
        rho = np.where(rms_x > 0, forward * m.max(axis=-1, keepdims=True) / rms_x, np.inf)
        z = x / root
        r = 1 / np.sqrt(np.mean(z * z, axis=-1, keepdims=True) + eps)
        y = np.nan_to_num(z * r)
    a = np.mean(np.abs(dy) * (1 + np.abs(y)), axis=-1, keepdims=True)
    size = r * (np.abs(dy) + (1 + 3 * np.abs(y)) * a)
    g = np.broadcast_to(np.log(gamma), (B, T, H))

    def through(cotangent):
        grads = gla_vjp(mq, mk, mv, g, cotangent=np.nan_to_num(cotangent / root, nan=np.inf), scale=1.0)
        return {"q": _pair_sums(grads["q"]), "k": _pair_sums(grads["k"]) * K ** -0.5, "v": grads["v"]}

    with np.errstate(over="ignore", invalid="ignore"):  # a NaN row (zeros, eps = 0): no bound
        rounding, carried = through(size), through((2 * rho + (V + 8) * 2 * U64) * size)
        return tuple(np.nan_to_num(per_position(own * rounding[n] + carried[n]), nan=np.inf) for n in DATA)


def msr_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``retnet.msr.recurrent``: ``msr_vjp`` on the form's arguments."""
    return ref.msr_vjp(**args)


register_gradient(Gradient(
    form="retnet.msr.recurrent",
    vjp=msr_recurrent_vjp,
    wrt=DATA,
    cotangents=("cotangent",),
    bound=msr_grad_bound,
    rule="derived float64 bound: (4(T+K+V+4) eps (1 + T max|log gamma|) + 16u) M + M', M the VJP on magnitudes "
         "with |dz| <= r (|dy| + (1 + 3|y|) mean(|dy| (1 + |y|))), M' the same for the forward's error in x "
         "reaching dz (2 rho + (V+8) eps, rho = F m_n / rms(x_n)), per position",
    axes=(("batch", "time", "head", "channel"),) * 3,
))

register_form(Form(
    key="retnet.msr.parallel",
    fn=ref.msr_parallel,
    inputs=MSR_INPUTS["parallel"],
    bound=msr_bound,
    rule=MSR_RULE,
    statement="torchscale's parallel retention (normalised decay mask and scores) equals its recurrent form after "
              "the RMSNorm with eps = 0 (torchscale #40, #47: not with eps > 0)",
    oracle="retnet.msr.recurrent",
    data_args=DATA,
))

register_form(Form(
    key="retnet.msr.chunked",
    fn=ref.msr_chunked,
    inputs=MSR_INPUTS["chunked"],
    bound=msr_bound,
    rule=MSR_RULE,
    statement="torchscale's chunkwise retention (inner and cross parts aligned to one scale) equals its recurrent "
              "form after the RMSNorm with eps = 0, every chunk size (torchscale #54, #77)",
    oracle="retnet.msr.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=DATA,
))



# ----------------------------------------------------------------------------- GPU implementations

from seqcheck.equiv.registry import Implementation, register_implementation  # noqa: E402


def _retention_numba_inputs(simulated: bool):
    """The GLA kernel with g = log gamma per head. Simulated: B=1, T <= 8, H = 1, K, V <= 4
    (tests/test_gpu_numba.py runs several heads with distinct decays); on a
    GPU: T <= 200, K, V <= 64, H <= 4. Every decay style (gamma = 0 is a reset at every step)."""
    tiny = dict(batch=1, seq_len=st.integers(1, 8), heads=1, key_dim=st.integers(1, 4), value_dim=st.integers(1, 4))
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 200), heads=st.integers(1, 4),
                    key_dim=st.integers(1, 64), value_dim=st.integers(1, 64))
    return CHUNKED_INPUTS(**(tiny if simulated else moderate))


register_implementation(Implementation(
    name="numba_cuda.retention_chunked",
    form="retnet.retention.chunked",
    target="gla_numba:retention_chunked",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_retention_numba_inputs,
))
