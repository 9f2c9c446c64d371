"""Gated linear attention (Yang et al. 2024): forms, derived float64 bounds, claims, sweeps.

The float64 bound (u = 2**-53, eps = 2u), as for retention and the SSD: every form computes o_t
as a sum over m <= t of terms scale (q_t o P_tm) . k_m v_m (and the initial state's), P_tm the
product of the decays between m and t, per key channel; sums over K and over at most T steps.
A decay product over n steps, formed by products or as exp of a sum of n log-decays, is within
n u (1 + Lambda) of exact relatively, Lambda = max over batch, heads and channels of sum_t |g_t|
(a reset, g = -inf, makes every term across it exactly 0 and adds nothing), so two correct
forms differ at t by at most

    4 (T + K + 4) eps (1 + Lambda) m_t

where m_t is the recurrence run on |q|, |k|, |v|, |S_0| with the same decays, maximised over
batch, heads and values. The state gets the same factor times the magnitudes' state per head.

The registered forms are the references themselves (``seqcheck.reference.gla``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.bounds import cumulative_max, per_axis_max, per_position, with_exponents, with_step_rounding
from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.registry import (Claim, Form, Gradient, Sweep, register_claim, register_form, register_gradient,
                                     without)
from seqcheck.equiv.relations import continuation, gradient_continuation, unstacked
from seqcheck.properties.arrays import for_form, generators
from seqcheck.properties.gla import gla_inputs, rational_gla_inputs
from seqcheck.reference import gla as ref
from seqcheck.reference.arith import U64, exact_difference, fractions, rounding
from seqcheck.reference.mamba import ssd_recurrent
from seqcheck.reference.retention import retention_recurrent

CHUNK_ARGS = ("chunk_size",)
DATA = ("q", "k", "v")


# ----------------------------------------------------------------------------- bound

def _finite_logs(g) -> np.ndarray:
    """|g| with resets (-inf) counted as 0, as (B, T, H, .)."""
    g = np.asarray(g, dtype=np.float64)
    return np.where(np.isfinite(g), np.abs(g), 0.0)


def _magnitude(args: dict) -> tuple:
    """(factor, m_t per position, state magnitude per head, running exponent per position)."""
    S0 = args.get("initial_state")
    out, state = ref.gla_recurrent(np.abs(args["q"]), np.abs(args["k"]), np.abs(args["v"]), args["g"],
                                   scale=None if args.get("scale") is None else abs(args["scale"]),
                                   initial_state=None if S0 is None else np.abs(S0), return_state=True)
    T, K = np.shape(args["q"])[1], np.shape(args["q"])[3]
    exponents = cumulative_max(_finite_logs(args["g"]))
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + exponents.max(initial=0.0))
    return factor, out.max(axis=(0, 2, 3)) if out.size else np.zeros(T), per_axis_max(np.abs(state)), exponents


def gla_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct GLA forms (module docstring); the state per head."""
    factor, out, state, _ = _magnitude(args)
    return (factor * out, factor * state)[:len(expected)]


def gla_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: m_t, and m_t times t + 1 plus the decays' running
    exponent (kernels form each step's decay and the products from cumulative sums of g in
    float32: ``with_step_rounding``)."""
    _, out, state, exponents = _magnitude(args)
    return with_exponents(out, state, with_step_rounding(exponents))[:len(expected)]


RULE = ("derived float64 bound: 4(T+K+4) eps (1 + max sum_t |g_t|) m_t, m_t the recurrence on magnitudes; "
        "state: the same factor times the magnitudes' state per head")


def gla_plain(args: dict, dtype) -> tuple:
    """The recurrence with every input and step rounded to ``dtype``: scale q, exp(g), a S, k v^T,
    their sum, q S (summed in float32)."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        q, k, v = (r(args[name]) for name in ("q", "k", "v"))
        K = q.shape[3]
        scale = K ** -0.5 if args.get("scale") is None else args["scale"]
        q = r(q * r(np.float64(scale)))
        g = r(np.asarray(args["g"], dtype=np.float64))
        a = r(np.exp(np.broadcast_to(g[..., None], q.shape) if g.ndim == 3 else g))
        S0 = args.get("initial_state")
        S = np.zeros(q.shape[:1] + q.shape[2:] + v.shape[3:]) if S0 is None else r(S0)
        outs = []
        for t in range(q.shape[1]):
            S = r(r(a[:, t, :, :, None] * S) + r(k[:, t, :, :, None] * v[:, t, :, None, :]))
            outs.append(total(r(q[:, t, :, :, None] * S), -2))
    out = np.stack(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if args.get("return_state") else (out,)


# ----------------------------------------------------------------------------- gradient

GRADIENT_WRT = ("q", "k", "v", "g")


def gla_grad_bound(args: dict, expected: tuple, wrt_extra: tuple = ()) -> tuple:
    """Per-position bound on two correct float64 evaluations of GLA's gradients: each gradient is
    a sum over at most T steps of products of K or V terms, with the decay products within
    T u (1 + Lambda) of exact as in the forward's bound, so they differ by at most

        4 (T + K + V + 4) eps (1 + Lambda) M

    where M is ``gla_vjp`` run on the magnitudes |q|, |k|, |v|, |S_0| and the cotangents'
    magnitudes with the same decays (every term positive: an upper bound on each term's size),
    maximised per time position over batch, heads and channels."""
    S0, state_cotangent = args.get("initial_state"), args.get("state_cotangent")
    magnitudes = ref.gla_vjp(np.abs(args["q"]), np.abs(args["k"]), np.abs(args["v"]), args["g"],
                             cotangent=np.abs(args["cotangent"]),
                             state_cotangent=None if state_cotangent is None else np.abs(state_cotangent),
                             scale=None if args.get("scale") is None else abs(args["scale"]),
                             initial_state=None if S0 is None else np.abs(S0))
    T, K, V = np.shape(args["q"])[1], np.shape(args["q"])[3], np.shape(args["v"])[3]
    factor = 4 * (T + K + V + 4) * 2 * U64 * (1 + cumulative_max(_finite_logs(args["g"])).max(initial=0.0))

    return tuple(factor * per_position(magnitudes[name]) for name in GRADIENT_WRT + wrt_extra)


def gla_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype`` (``gla_vjp_in_dtype``), in ``wrt``'s order."""
    grads = ref.gla_vjp_in_dtype(**without(args, ("return_state",)), dtype=dtype)
    return tuple(grads[name] for name in GRADIENT_WRT + ("initial_state",))


def gla_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale per position: the terms' sizes (``gla_vjp`` on magnitudes,
    as the bound's M), times 1 + the decays' running exponent (a kernel forms the decay
    products as exp of float32 sums of log-decays)."""
    S0, dS = args.get("initial_state"), args.get("state_cotangent")
    magnitudes = ref.gla_vjp(np.abs(args["q"]), np.abs(args["k"]), np.abs(args["v"]), args["g"],
                             cotangent=np.abs(args["cotangent"]), state_cotangent=None if dS is None else np.abs(dS),
                             scale=None if args.get("scale") is None else abs(args["scale"]),
                             initial_state=None if S0 is None else np.abs(S0))
    exponent = 1 + cumulative_max(_finite_logs(args["g"])).max(initial=0.0)
    return tuple(exponent * per_position(magnitudes[name]) for name in GRADIENT_WRT + ("initial_state",))


def gla_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``gla.gla.recurrent``: the form's arguments and the cotangents of
    its outputs (the state's when ``return_state``)."""
    return ref.gla_vjp(**{name: value for name, value in args.items() if name != "return_state"})


GRADIENT_RULE = ("derived float64 bound: 4(T+K+V+4) eps (1 + max sum_t |g_t|) M, M the VJP on magnitudes "
                 "(|q|, |k|, |v|, |S_0|, |dO|, |dS|), per position")

@st.composite
def _gradient_continuation_inputs(draw):
    """GLA's arguments with an initial state, T 2..8, and the cotangents of the output and the
    final state."""
    args = draw(RECURRENT_INPUTS(seq_len=st.integers(2, 8), initial_state=True, return_state=True))
    rng = draw(generators())
    B, T, H, K = args["q"].shape
    V = args["v"].shape[3]
    return {**without(args, ("return_state",)), "cotangent": rng.standard_normal((B, T, H, V)),
            "state_cotangent": rng.standard_normal((B, H, K, V))}


register_claim(Claim(
    key="gla.gla.gradient_continuation",
    statement="GLA's gradients continue through the state: a backward through x2 from x1's state, whose "
              "initial-state gradient is x1's state cotangent, then through x1, equals one backward through "
              "[x1; x2], at every split (the initial-state gradient included)",
    subject="gla.gla.vjp",
    default_impl=ref.gla_vjp,
    relation=lambda vjp, args: gradient_continuation(vjp, ref.gla_recurrent, args, ("q", "k", "v", "g", "cotangent"),
                                                     GRADIENT_WRT + ("initial_state",)),
    inputs=_gradient_continuation_inputs,
    bound=unstacked(lambda args, expected: gla_grad_bound(args, expected, ("initial_state",))),
    rule=GRADIENT_RULE + "; dS_0 the same per head",
    outputs=("dq", "dk", "dv", "dg", "dS0"),
))


@st.composite
def _chunked_backward_inputs(draw):
    """The chunked form's arguments (any chunk size, resets, an initial state or not) with the
    cotangents of the output and the final state."""
    args = draw(CHUNKED_INPUTS(return_state=True))
    rng = draw(generators())
    B, T, H, K = args["q"].shape
    V = args["v"].shape[3]
    return {**without(args, ("return_state",)), "cotangent": rng.standard_normal((B, T, H, V)),
            "state_cotangent": rng.standard_normal((B, H, K, V))}


register_claim(Claim(
    key="gla.gla.chunked_backward",
    statement="GLA's chunked backward (the chunks visited last to first, the state's cotangent passed to the "
              "chunk before through the chunk's decay) equals the gradient of the recurrence, initial state "
              "included, for every chunk size",
    subject="gla.gla.chunked_vjp",
    default_impl=ref.gla_chunked_vjp,
    relation=lambda vjp, args: (tuple(vjp(**args)[n] for n in GRADIENT_WRT + ("initial_state",)),
                                tuple(ref.gla_vjp(**without(args, CHUNK_ARGS))[n]
                                      for n in GRADIENT_WRT + ("initial_state",))),
    inputs=_chunked_backward_inputs,
    bound=lambda args, expected: gla_grad_bound(args, expected, ("initial_state",)),
    rule=GRADIENT_RULE + "; dS_0 the same per head",
    outputs=("dq", "dk", "dv", "dg", "dS0"),
))


# ----------------------------------------------------------------------------- sweeps

def _sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, K=V=64, GLA's gate log(sigmoid(x)) / 16 per key channel."""
    batch, H, K = 1, 4, 64
    g = -np.logaddexp(0.0, -rng.standard_normal((batch, T, H, K))) / 16
    return {"q": rng.standard_normal((batch, T, H, K)), "k": rng.standard_normal((batch, T, H, K)),
            "v": rng.standard_normal((batch, T, H, K)), "g": g, "scale": None,
            "initial_state": None, "return_state": True, "chunk_size": chunk_size}


# ----------------------------------------------------------------------------- forms

RECURRENT_INPUTS = for_form(gla_inputs, "recurrent", unused=("chunk_size",))
CHUNKED_INPUTS = for_form(gla_inputs, "chunked")

register_form(Form(
    key="gla.gla.recurrent",
    fn=ref.gla_recurrent,
    inputs=RECURRENT_INPUTS,
    bound=gla_bound,
    rule=RULE,
    statement="gated linear attention, the definition: S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t",
    plain=gla_plain,
    magnitude=gla_magnitude,
    magnitude_rule="each position's m_t, the recurrence on magnitudes, plus float32's ulp at (t + 1 + max sum_{s<=t} |g_s|) "
                   "m_t (the decays' exponents; state: the same with the magnitudes' state)",
    data_args=DATA,
    outputs=("out", "state"),
))

def _with_initial_state_bound(args: dict, expected: tuple) -> tuple:
    """GLA's gradient bound with the initial state's gradient (per head), when one was drawn."""
    if args.get("initial_state") is None:
        return gla_grad_bound(args, expected) + (0.0,)
    return gla_grad_bound(args, expected, ("initial_state",))


register_gradient(Gradient(
    form="gla.gla.recurrent",
    vjp=gla_recurrent_vjp,
    wrt=GRADIENT_WRT + ("initial_state",),
    cotangents=("cotangent", "state_cotangent"),
    bound=_with_initial_state_bound,
    rule=GRADIENT_RULE + "; dS_0 the same per head",
    axes=(("batch", "time", "head", "channel"),) * 4 + (("batch", "head", "key", "value"),),
    plain=gla_grad_plain,
    magnitude=gla_grad_magnitude,
))

register_form(Form(
    key="gla.gla.parallel",
    fn=ref.gla_parallel,
    inputs=for_form(gla_inputs, "parallel", unused=("chunk_size", "initial_state", "return_state")),
    bound=gla_bound,
    rule=RULE,
    statement="GLA's parallel form (stable segment products over the whole sequence) equals its recurrence",
    oracle="gla.gla.recurrent",
    data_args=DATA,
    sweeps=(Sweep("T", "sequence length T (H=4, K=V=64)", (16, 64, 256),
                  lambda T, rng: without(_sweep_args(T, rng), CHUNK_ARGS + ("initial_state", "return_state"))),),
))

register_form(Form(
    key="gla.gla.chunked",
    fn=ref.gla_chunked,
    inputs=CHUNKED_INPUTS,
    bound=gla_bound,
    rule=RULE,
    statement="chunked GLA (quadratic within a chunk, the state across chunks) equals its recurrence, every chunk "
              "size, per key channel or per head, through resets",
    oracle="gla.gla.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (chunks of 64, H=4, K=V=64)", (16, 64, 256, 1024),
                  lambda T, rng: _sweep_args(T, rng)),
            Sweep("chunk_size", "chunk size (T=256, H=4, K=V=64)", (1, 4, 16, 64, 256),
                  lambda c, rng: _sweep_args(256, rng, chunk_size=c))),
))


# ----------------------------------------------------------------------------- claims

register_claim(Claim(
    key="gla.gla.continuation",
    statement="GLA continues from its returned state: [x1; x2] equals x1 then x2 from x1's state, at every split "
              "point (fla #285's bug class)",
    subject="gla.gla.chunked",
    default_impl=ref.gla_chunked,
    relation=lambda impl, args: continuation(impl, args, DATA + ("g",)),
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(gla_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _steps(impl, args: dict) -> tuple:
    """T calls of gla_step against one recurrent pass."""
    full = ref.gla_recurrent(**{**args, "return_state": True})
    state, outs = args["initial_state"], []
    for t in range(args["q"].shape[1]):
        out, state = impl(args["q"][:, t], args["k"][:, t], args["v"][:, t], args["g"][:, t], state=state,
                          scale=args["scale"])
        outs.append(np.asarray(out))
    outs = np.stack(outs, axis=1) if outs else full[0]
    return (outs, full[1] if state is None else state), full


register_claim(Claim(
    key="gla.gla.step",
    statement="T decoding steps (gla_step, one call each) equal one recurrent pass",
    subject="gla.gla.step",
    default_impl=ref.gla_step,
    relation=_steps,
    inputs=lambda: RECURRENT_INPUTS(return_state=True),
    bound=gla_bound,
    rule=RULE,
    outputs=("out", "state"),
))


def _rational(args: dict) -> dict:
    """The exact claims' arguments as Fractions: q, k, v, S_0 over ``denominator``, the decays as given, scale 1."""
    den, state = args["denominator"], args["initial_state"]
    return {"q": fractions(args["q"], den), "k": fractions(args["k"], den), "v": fractions(args["v"], den),
            "decay": fractions(args["decay_numerator"], args["decay_denominator"]), "scale": 1,
            "initial_state": None if state is None else fractions(state, den)}


def _exact(impl, args: dict) -> tuple:
    exact = _rational(args)
    want, want_state = ref.gla_recurrent(**exact, return_state=True)
    got, got_state = impl(**exact, chunk_size=args["chunk_size"], return_state=True)
    no_state = without(exact, ("initial_state",))
    lhs = (exact_difference(got, want), exact_difference(ref.gla_parallel(**no_state), ref.gla_recurrent(**no_state)),
           exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="gla.gla.exact",
    statement="with rational q, k, v, S_0 and decays (resets and no decay included), the chunked, parallel and "
              "recurrent forms are exactly equal (outputs and state, every chunk size)",
    subject="gla.gla.chunked",
    default_impl=ref.gla_chunked,
    relation=_exact,
    inputs=rational_gla_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("chunked - recurrent", "parallel - recurrent", "state"),
))


def _as_retention(impl, args: dict) -> tuple:
    """GLA with one constant decay per head, gamma_h (the drawn decays of the first step, for every
    step), against retention."""
    numerators = args["decay_numerator"]  # (B, T, H): per_head
    exact = _rational({**args, "decay_numerator": np.broadcast_to(numerators[:1, :1], numerators.shape)})
    out, state = impl(**exact, return_state=True)
    want, want_state = retention_recurrent(exact["q"], exact["k"], exact["v"], exact["decay"][0, 0],
                                           initial_state=exact["initial_state"], return_state=True)
    lhs = (exact_difference(out, want), exact_difference(state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="gla.gla.retention",
    statement="retention is GLA with a constant decay per head (g = log gamma, scale 1): exactly equal on "
              "rationals, outputs and state",
    subject="gla.gla.recurrent",
    default_impl=ref.gla_recurrent,
    relation=_as_retention,
    inputs=lambda: rational_gla_inputs(per_head=True, chunk_size=1),
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("GLA - retention", "state"),
))


def _as_ssd(impl, args: dict) -> tuple:
    """Mamba-2's SSD (x = v, B = k, C = q, dt = 1, a_t given) against scalar GLA (one decay per head)."""
    exact = _rational(args)
    out, state = impl(**exact, return_state=True)
    batch, T, H, _ = exact["q"].shape
    S0 = exact["initial_state"]
    ssd_out, ssd_state = ssd_recurrent(exact["v"], fractions(np.ones((batch, T, H))), None, exact["k"], exact["q"],
                                       decay=exact["decay"], initial_state=None if S0 is None else np.swapaxes(S0, -1, -2),
                                       return_state=True)
    lhs = (exact_difference(out, ssd_out), exact_difference(state, np.swapaxes(ssd_state, -1, -2)))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="gla.gla.ssd",
    statement="Mamba-2's SSD is scalar GLA (one decay per head and step; x = v, B = k, C = q, dt = 1): exactly "
              "equal on rationals, outputs and state",
    subject="gla.gla.recurrent",
    default_impl=ref.gla_recurrent,
    relation=_as_ssd,
    inputs=lambda: rational_gla_inputs(per_head=True, chunk_size=1),
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("GLA - SSD", "state"),
))


def _resets(impl, args: dict) -> tuple:
    return impl(**args), ref.gla_recurrent(**without(args, CHUNK_ARGS))


register_claim(Claim(
    key="gla.gla.resets",
    statement="through resets (g = -inf between packed sequences, fla #20) and log-decays down to -1e4, T up to "
              "4096, the chunked form stays finite and equals the recurrence within the bound",
    subject="gla.gla.chunked",
    default_impl=ref.gla_chunked,
    relation=_resets,
    inputs=lambda: gla_inputs(form="chunked", gate=st.sampled_from(["resets", "extreme"]), batch=1, heads=1,
                              key_dim=2, value_dim=2, seq_len=st.sampled_from([1, 2, 17, 64, 65, 1000, 4096]),
                              chunk_size=st.sampled_from([16, 64]), return_state=True),
    bound=gla_bound,
    rule=RULE,
    outputs=("out", "state"),
))


# ----------------------------------------------------------------------------- GPU implementations

from seqcheck.equiv.registry import Implementation, register_implementation  # noqa: E402


def _gla_numba_inputs(simulated: bool):
    """Simulated: B=1, T <= 8, H = 1, K, V <= 4 (chunks of at most 4, value tiles of 2, so the
    short sequences span several chunks and tiles); on a GPU: T <= 200, K, V <= 64, H <= 4. Every
    gate style, per key channel or per head; the form's chunk sizes (the kernel's chunk is
    min(chunk_size, its tile))."""
    tiny = dict(batch=1, seq_len=st.integers(1, 8), heads=1, key_dim=st.integers(1, 4), value_dim=st.integers(1, 4))
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 200), heads=st.integers(1, 4),
                    key_dim=st.integers(1, 64), value_dim=st.integers(1, 64))
    return CHUNKED_INPUTS(**(tiny if simulated else moderate))


register_implementation(Implementation(
    name="numba_cuda.gla_chunked",
    form="gla.gla.chunked",
    target="gla_numba:gla_chunked",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_gla_numba_inputs,
))
