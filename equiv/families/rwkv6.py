"""RWKV-5/6's matrix-state WKV (Peng et al. 2024): forms, derived float64 bounds, claims, sweeps.

The float64 bound (u = 2**-53, eps = 2u), as for GLA: every form computes o_t as a sum over
j < t of terms (r_t o P_tj) . k_j v_j, P_tj the product of the decays strictly between j and t
per key channel, plus the bonus (r_t o u) . k_t v_t and the initial state's term; sums over K
and over at most T steps. A decay product over n steps, formed by products or as exp of a sum of
n log-decays, is within n u (1 + Lambda) of exact relatively, Lambda = max over batch, heads and
channels of sum_t |g_t| (a reset, g = -inf, makes every term across it exactly 0), so two correct
forms differ at t by at most

    4 (T + K + 4) eps (1 + Lambda) m_t

where m_t is the recurrence run on |r|, |k|, |v|, |u|, |S_0| with the same decays, maximised
over batch, heads and values. The state gets the same factor times the magnitudes' state per head.

The registered forms are the references themselves (``seqcheck.reference.rwkv``); RWKV-5's
decays, constant in time ((H, K) or (H,)), are drawn for ``rwkv.wkv5.parallel``.
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
from seqcheck.properties.rwkv import rational_wkv6_inputs, wkv6_inputs
from seqcheck.reference import rwkv as ref
from seqcheck.reference.arith import U64, exact_difference, fractions, rounding
from seqcheck.reference.gla import gla_recurrent

CHUNK_ARGS = ("chunk_size",)
DATA = ("r", "k", "v")


# ----------------------------------------------------------------------------- bound

def _raw_logs(args: dict) -> np.ndarray:
    """g as (B, T, H, K), as given (resets -inf kept)."""
    B, T, H, K = np.shape(args["r"])
    g = np.asarray(args["g"], dtype=np.float64)
    g = g[..., None] if g.shape in ((B, T, H), (H,)) else g
    return np.broadcast_to(g, (B, T, H, K))


def _full_logs(args: dict) -> np.ndarray:
    """|g| as (B, T, H, K), resets (-inf) counted as 0."""
    g = _raw_logs(args)
    return np.where(np.isfinite(g), np.abs(g), 0.0)


def _magnitude(args: dict) -> tuple:
    """(factor, m_t per position, state magnitude per head, running exponent per position)."""
    S0 = args.get("initial_state")
    out, state = ref.wkv6_recurrent(np.abs(args["r"]), np.abs(args["k"]), np.abs(args["v"]), args["g"],
                                    u=np.abs(args["u"]), initial_state=None if S0 is None else np.abs(S0),
                                    return_state=True)
    T, K = np.shape(args["r"])[1], np.shape(args["r"])[3]
    exponents = cumulative_max(_full_logs(args))
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + exponents.max(initial=0.0))
    return factor, out.max(axis=(0, 2, 3)) if out.size else np.zeros(T), per_axis_max(np.abs(state)), exponents


def wkv6_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct RWKV-5/6 forms (module docstring); the state per head."""
    factor, out, state, _ = _magnitude(args)
    return (factor * out, factor * state)[:len(expected)]


def wkv6_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: m_t, and m_t times t + 1 plus the decays' running
    exponent (kernels form each step's decay and the products from cumulative sums of g in
    float32: ``with_step_rounding``)."""
    _, out, state, exponents = _magnitude(args)
    return with_exponents(out, state, with_step_rounding(exponents))[:len(expected)]


RULE = ("derived float64 bound: 4(T+K+4) eps (1 + max sum_t |g_t|) m_t, m_t the recurrence on magnitudes; "
        "state: the same factor times the magnitudes' state per head")


def wkv6_plain(args: dict, dtype) -> tuple:
    """The recurrence with every input and step rounded to ``dtype``: exp(g), u k v^T + S, r (.)
    (summed in float32), w S, k v^T, their sum."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        q, k, v = (r(args[name]) for name in DATA)
        B, T, H, K = q.shape
        a = r(np.exp(r(_raw_logs(args))))
        u = r(np.broadcast_to(np.asarray(args["u"], dtype=np.float64).reshape(H, -1), (H, K)))
        S0 = args.get("initial_state")
        S = np.zeros((B, H, K, v.shape[3])) if S0 is None else r(S0)
        outs = []
        for t in range(T):
            kv = r(k[:, t, :, :, None] * v[:, t, :, None, :])
            outs.append(total(r(q[:, t, :, :, None] * r(r(u[None, :, :, None] * kv) + S)), -2))
            S = r(r(a[:, t, :, :, None] * S) + kv)
    out = np.stack(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if args.get("return_state") else (out,)


# ----------------------------------------------------------------------------- sweeps

def _sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, K=V=64, RWKV-6's data-dependent decay exp(-exp(x)), x ~ N(-2, 1)."""
    batch, H, K = 1, 4, 64
    return {"r": rng.standard_normal((batch, T, H, K)), "k": rng.standard_normal((batch, T, H, K)) / 8,
            "v": rng.standard_normal((batch, T, H, K)), "g": -np.exp(rng.standard_normal((batch, T, H, K)) - 2),
            "u": rng.standard_normal((H, K)), "initial_state": None, "return_state": True, "chunk_size": chunk_size}


# ----------------------------------------------------------------------------- gradient

GRADIENT_WRT = ("r", "k", "v", "g", "u", "initial_state")


def _grad_terms(args: dict) -> tuple:
    """(1 + Lambda, the VJP on magnitudes per gradient: per time position for r, k, v and a
    time-varying g, one value for u, the initial state and RWKV-5's constant decays)."""
    S0, dS = args.get("initial_state"), args.get("state_cotangent")
    magnitudes = ref.wkv6_vjp(*(np.abs(args[n]) for n in DATA), args["g"], u=np.abs(args["u"]),
                              cotangent=np.abs(args["cotangent"]), state_cotangent=None if dS is None else np.abs(dS),
                              initial_state=None if S0 is None else np.abs(S0))
    timed = DATA + (("g",) if np.ndim(args["g"]) >= 3 else ())
    exponent = 1 + cumulative_max(_full_logs(args)).max(initial=0.0)
    return exponent, tuple(per_position(magnitudes[n]) if n in timed else np.abs(magnitudes[n]).max(initial=0.0)
                           for n in GRADIENT_WRT)


def wkv6_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of RWKV-5/6's gradients: GLA's
    (sums over at most T steps of K- or V-term products, decays within T u (1 + Lambda) of exact)
    plus the bonus's products, so 4 (T + K + V + 8) eps (1 + Lambda) M, M ``wkv6_vjp`` on the
    magnitudes |r|, |k|, |v|, |u|, |S_0| and the cotangents' sizes with the same decays (every
    term positive); per time position for r, k, v and a time-varying g, one value for u, the
    initial state and RWKV-5's constant decays."""
    T, K, V = np.shape(args["r"])[1], np.shape(args["r"])[3], np.shape(args["v"])[3]
    exponent, terms = _grad_terms(args)
    return tuple(4 * (T + K + V + 8) * 2 * U64 * exponent * term for term in terms)


def wkv6_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: the bound's M times 1 + the decays' running exponent."""
    exponent, terms = _grad_terms(args)
    return tuple(exponent * term for term in terms)


def wkv6_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype`` (``wkv6_vjp_in_dtype``), in ``wrt``'s order."""
    grads = ref.wkv6_vjp_in_dtype(**without(args, ("return_state",)), dtype=dtype)
    return tuple(grads[name] for name in GRADIENT_WRT)


def wkv6_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``rwkv.wkv6.recurrent``: the form's arguments and the cotangents of
    its outputs (the state's when ``return_state``)."""
    return ref.wkv6_vjp(**without(args, ("return_state",)))


GRADIENT_RULE = ("derived float64 bound: 4(T+K+V+8) eps (1 + max sum_t |g_t|) M, M the VJP on magnitudes (|r|, "
                 "|k|, |v|, |u|, |S_0|, |dO|, |dS|), per position (one value for u, S_0 and constant decays)")


# ----------------------------------------------------------------------------- forms

RECURRENT_INPUTS = for_form(wkv6_inputs, "recurrent", unused=("chunk_size",))
CHUNKED_INPUTS = for_form(wkv6_inputs, "chunked")

register_form(Form(
    key="rwkv.wkv6.recurrent",
    fn=ref.wkv6_recurrent,
    inputs=RECURRENT_INPUTS,
    bound=wkv6_bound,
    rule=RULE,
    statement="RWKV-5/6's WKV, the definition: o_t = r_t (diag(u) k_t^T v_t + S_{t-1}), S_t = diag(exp(g_t)) "
              "S_{t-1} + k_t^T v_t",
    plain=wkv6_plain,
    magnitude=wkv6_magnitude,
    magnitude_rule="each position's m_t, the recurrence on magnitudes, plus float32's ulp at (t + 1 + max sum_{s<=t} |g_s|) "
                   "m_t (the decays' exponents; state: the same with the magnitudes' state)",
    data_args=DATA,
    outputs=("out", "state"),
))

register_gradient(Gradient(
    form="rwkv.wkv6.recurrent",
    vjp=wkv6_recurrent_vjp,
    wrt=GRADIENT_WRT,
    cotangents=("cotangent", "state_cotangent"),
    bound=wkv6_grad_bound,
    rule=GRADIENT_RULE,
    plain=wkv6_grad_plain,
    magnitude=wkv6_grad_magnitude,
    axes=(("batch", "time", "head", "key"),) * 2 + (("batch", "time", "head", "value"), ("batch", "time", "head", "key"),
                                                    ("head", "key"), ("batch", "head", "key", "value")),
))

register_form(Form(
    key="rwkv.wkv6.parallel",
    fn=ref.wkv6_parallel,
    inputs=for_form(wkv6_inputs, "parallel", unused=("chunk_size", "initial_state", "return_state")),
    bound=wkv6_bound,
    rule=RULE,
    statement="RWKV-5/6's parallel form (stable segment products over earlier tokens, the bonus on the diagonal) "
              "equals its recurrence",
    oracle="rwkv.wkv6.recurrent",
    data_args=DATA,
))

register_form(Form(
    key="rwkv.wkv5.parallel",
    fn=ref.wkv6_parallel,
    inputs=for_form(wkv6_inputs, "rwkv5", unused=("chunk_size", "initial_state", "return_state")),
    bound=wkv6_bound,
    rule=RULE,
    statement="RWKV-5's parallel form, decays constant in time ((H, K) as v5.2, (H,) as v5.0: the rwkv package's "
              "w^(i-1-j) matrix), equals the recurrence",
    oracle="rwkv.wkv6.recurrent",
    data_args=DATA,
))

register_form(Form(
    key="rwkv.wkv6.chunked",
    fn=ref.wkv6_chunked,
    inputs=CHUNKED_INPUTS,
    bound=wkv6_bound,
    rule=RULE,
    statement="chunked RWKV-5/6 (quadratic over a chunk's earlier tokens plus the bonus, the state across "
              "chunks) equals its recurrence, every chunk size, every decay shape, through resets",
    oracle="rwkv.wkv6.recurrent",
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
    key="rwkv.wkv6.continuation",
    statement="RWKV-5/6 continues from its returned state: [x1; x2] equals x1 then x2 from x1's state, at every "
              "split point",
    subject="rwkv.wkv6.chunked",
    default_impl=ref.wkv6_chunked,
    relation=lambda impl, args: continuation(impl, args, DATA),
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), decays=st.sampled_from(["rwkv5", "rwkv5_per_head"]),
                                  return_state=True),
    bound=unstacked(wkv6_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _continuation_data_decays(impl, args: dict) -> tuple:
    return continuation(impl, args, DATA + ("g",))


register_claim(Claim(
    key="rwkv.wkv6.continuation_data",
    statement="with data-dependent decays (RWKV-6) the sequence splits the same way: [x1; x2] equals x1 then x2 "
              "from x1's state, the decays split with the tokens",
    subject="rwkv.wkv6.chunked",
    default_impl=ref.wkv6_chunked,
    relation=_continuation_data_decays,
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), decays=st.sampled_from(["data", "per_head"]),
                                  return_state=True),
    bound=unstacked(wkv6_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _steps(impl, args: dict) -> tuple:
    """T calls of wkv6_step against one recurrent pass (data-dependent decays)."""
    full = ref.wkv6_recurrent(**{**args, "return_state": True})
    state, outs = args["initial_state"], []
    for t in range(args["r"].shape[1]):
        out, state = impl(args["r"][:, t], args["k"][:, t], args["v"][:, t], args["g"][:, t], u=args["u"], state=state)
        outs.append(np.asarray(out))
    outs = np.stack(outs, axis=1) if outs else full[0]
    return (outs, full[1] if state is None else state), full


register_claim(Claim(
    key="rwkv.wkv6.step",
    statement="T decoding steps (wkv6_step, one call each) equal one recurrent pass",
    subject="rwkv.wkv6.step",
    default_impl=ref.wkv6_step,
    relation=_steps,
    inputs=lambda: RECURRENT_INPUTS(decays=st.sampled_from(["data", "per_head"]), return_state=True),
    bound=wkv6_bound,
    rule=RULE,
    outputs=("out", "state"),
))


def _rational(args: dict) -> dict:
    """The exact claims' arguments as Fractions: r, k, v, u, S_0 over ``denominator``, the decays as given."""
    den, state = args["denominator"], args["initial_state"]
    return {"r": fractions(args["r"], den), "k": fractions(args["k"], den), "v": fractions(args["v"], den),
            "u": fractions(args["u"], den), "decay": fractions(args["decay_numerator"], args["decay_denominator"]),
            "initial_state": None if state is None else fractions(state, den)}


def _exact(impl, args: dict) -> tuple:
    exact = _rational(args)
    want, want_state = ref.wkv6_recurrent(**exact, return_state=True)
    got, got_state = impl(**exact, chunk_size=args["chunk_size"], return_state=True)
    no_state = without(exact, ("initial_state",))
    lhs = (exact_difference(got, want),
           exact_difference(ref.wkv6_parallel(**no_state), ref.wkv6_recurrent(**no_state)),
           exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="rwkv.wkv6.exact",
    statement="with rational r, k, v, u, S_0 and decays (resets and no decay included), the chunked, parallel and "
              "recurrent forms are exactly equal (outputs and state, every chunk size)",
    subject="rwkv.wkv6.chunked",
    default_impl=ref.wkv6_chunked,
    relation=_exact,
    inputs=rational_wkv6_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("chunked - recurrent", "parallel - recurrent", "state"),
))


def _delayed(x):
    """x one step later along time, a zero step first."""
    return np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)


def _as_gla(impl, args: dict) -> tuple:
    """RWKV-6 against GLA (scale 1, q = r) on the keys, values and decays delayed one step (so GLA's
    S_t is RWKV's S_{t-1}), plus the bonus (r_t o u) . k_t v_t."""
    exact = _rational(args)
    out, state = impl(**exact, return_state=True)
    r, k, v, u = (exact[n] for n in ("r", "k", "v", "u"))
    one = fractions(np.ones(exact["decay"][:, :1].shape))
    gla = gla_recurrent(r, _delayed(k), _delayed(v), decay=np.concatenate([one, exact["decay"][:, :-1]], axis=1),
                        scale=1, initial_state=exact["initial_state"])
    bonus = np.einsum("bthk,hk,bthk->bth", r, u, k)[..., None] * v
    gla_state = gla_recurrent(r, k, v, decay=exact["decay"], scale=1, initial_state=exact["initial_state"],
                              return_state=True)[1]  # the same state recurrence, undelayed
    lhs = (exact_difference(out, gla + bonus), exact_difference(state, gla_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="rwkv.wkv6.gla",
    statement="RWKV-6 is GLA with the bonus: GLA (q = r, scale 1) on the keys, values and decays delayed one step, "
              "plus (r_t o u) . k_t v_t; the final states equal. Exactly, on rationals",
    subject="rwkv.wkv6.recurrent",
    default_impl=ref.wkv6_recurrent,
    relation=_as_gla,
    inputs=lambda: rational_wkv6_inputs(chunk_size=1),
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("RWKV-6 - (GLA + bonus)", "state"),
))


def _extreme(impl, args: dict) -> tuple:
    return impl(**args), ref.wkv6_recurrent(**without(args, CHUNK_ARGS))


register_claim(Claim(
    key="rwkv.wkv6.extreme_decays",
    statement="through resets (g = -inf) and log-decays down to -1e4, T up to 4096, the chunked form stays finite "
              "and equals the recurrence within the bound",
    subject="rwkv.wkv6.chunked",
    default_impl=ref.wkv6_chunked,
    relation=_extreme,
    inputs=lambda: wkv6_inputs(form="chunked", gate=st.sampled_from(["resets", "extreme"]), batch=1, heads=1,
                               key_dim=2, value_dim=2, seq_len=st.sampled_from([1, 2, 17, 64, 65, 1000, 4096]),
                               decays="data", chunk_size=st.sampled_from([16, 64]), return_state=True),
    bound=wkv6_bound,
    rule=RULE,
    outputs=("out", "state"),
))
