"""The delta rule and the gated delta rule: forms, derived float64 bounds, claims.

The float64 bound (u = 2**-53, eps = 2u). Per head, step t maps the state by
M_t = a_t (I - beta_t k_t k_t^T), whose 2-norm is g_t = a_t max(1, |1 - beta_t |k_t|^2|) (1 or
less for DeltaNet's normalised keys and beta in [0, 2]), and adds beta_t k_t v_t^T. A correct
form rounds each step's terms, of total size

    rho_t = (2 + beta_t |k_t|^2) a_t |S_{t-1}|_F + beta_t |k_t| |v_t|

within (T + K + 4) eps of exact (the products over K, the chunked form's forward substitution
over at most T earlier steps, and a gate product formed over at most T steps, within (1 +
Lambda) of exact relatively, Lambda = the running sum of |g|), and the transitions carry an
earlier error forward multiplied by at most g_t, so the state's error is within
(T + K + 4) eps (1 + Lambda) E_t, E_t = g_t E_{t-1} + rho_t (E_{-1} = 0), and two correct forms
differ in the state by twice that and in o_t by

    4 (T + K + 4) eps (1 + Lambda) |scale| |q_t| (E_t + |S_t|_F)

maximised over batch and heads (|.| the 2-norm, |.|_F Frobenius).

The registered forms are the references themselves (``seqcheck.reference.delta``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.bounds import cumulative_max, with_exponents, with_step_rounding
from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.registry import (Claim, Form, Gradient, Sweep, register_claim, register_form, register_gradient,
                                     without)
from seqcheck.equiv.relations import continuation, unstacked
from seqcheck.properties.arrays import for_form
from seqcheck.properties.delta import delta_inputs, rational_delta_inputs
from seqcheck.reference import delta as ref
from seqcheck.reference.arith import U64, exact_difference, fractions, rounding

CHUNK_ARGS = ("chunk_size",)
DATA = ("q", "k", "v")


# ----------------------------------------------------------------------------- bound

def _error_mass(args: dict) -> tuple:
    """(E_t + |S_t|_F times |scale q_t|, per position; E_T per head; the running exponent): the
    module docstring's recurrence, run along the reference's own states."""
    q, k, v, beta = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v", "beta"))
    B, T, H, K = q.shape
    g = args.get("g")
    gates = np.ones((B, T, H)) if g is None else np.exp(np.asarray(g, dtype=np.float64))
    S0 = args.get("initial_state")
    S = np.zeros((B, H, K, v.shape[3])) if S0 is None else np.asarray(S0, dtype=np.float64)
    scale = K ** -0.5 if args.get("scale") is None else abs(args["scale"])
    k_norm2 = np.sum(k * k, axis=-1)  # (B, T, H)
    E, per_position = np.zeros((B, H)), np.zeros(T)
    for t in range(T):
        a, b = gates[:, t], beta[:, t]
        previous = np.linalg.norm(S, axis=(-2, -1))
        rho = (2 + b * k_norm2[:, t]) * a * previous + b * np.sqrt(k_norm2[:, t]) * np.linalg.norm(v[:, t], axis=-1)
        E = a * np.maximum(1.0, np.abs(1 - b * k_norm2[:, t])) * E + rho
        S = a[..., None, None] * S
        u = b[..., None] * (v[:, t] - np.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        reach = scale * np.linalg.norm(q[:, t], axis=-1) * (E + np.linalg.norm(S, axis=(-2, -1)))
        per_position[t] = reach.max(initial=0.0)
    logs = np.zeros((B, T, H)) if g is None else np.where(np.isfinite(g), np.abs(g), 0.0)
    return per_position, E.max(axis=0) if E.size else np.zeros(H), cumulative_max(logs)


def delta_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct delta-rule forms (module docstring); the state per head."""
    T, K = np.shape(args["q"])[1], np.shape(args["q"])[3]
    out, state, exponents = _error_mass(args)
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + exponents.max(initial=0.0))
    return (factor * out, factor / 2 * state)[:len(expected)]


RULE = ("derived float64 bound: 4(T+K+4) eps (1 + max sum|g|) |scale q_t| (E_t + |S_t|_F), E_t = g_t E_{t-1} + rho_t "
        "the rounding mass carried by the transitions' norms; state: half the factor times E_T per head")


def delta_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: |scale q_t| (E_t + |S_t|_F) and E_T per head, each also
    times t + 1 plus the gate's running exponent (kernels form the gates and their products in
    float32: ``with_step_rounding``)."""
    out, state, exponents = _error_mass(args)
    return with_exponents(out, state, with_step_rounding(exponents))[:len(expected)]


def delta_plain(args: dict, dtype) -> tuple:
    """The recurrence with every input and step rounded to ``dtype``: scale q, exp(g), a S, the
    prediction k^T S (summed in float32), u = beta (v - k^T S), S + k u^T, q S (summed in float32)."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        q, k, v, beta = (r(args[name]) for name in ("q", "k", "v", "beta"))
        B, T, H, K = q.shape
        scale = K ** -0.5 if args.get("scale") is None else args["scale"]
        q = r(q * r(np.float64(scale)))
        g = args.get("g")
        gates = np.ones((B, T, H)) if g is None else r(np.exp(r(np.asarray(g, dtype=np.float64))))
        S0 = args.get("initial_state")
        S = np.zeros((B, H, K, v.shape[3])) if S0 is None else r(S0)
        outs = []
        for t in range(T):
            S = r(gates[:, t, :, None, None] * S)
            predicted = total(r(k[:, t, :, :, None] * S), -2)
            written = r(beta[:, t, :, None] * r(v[:, t] - predicted))
            S = r(S + r(k[:, t, :, :, None] * written[:, :, None, :]))
            outs.append(total(r(q[:, t, :, :, None] * S), -2))
    out = np.stack(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if args.get("return_state") else (out,)


# ----------------------------------------------------------------------------- gradient

GRADIENT_WRT = ("q", "k", "v", "beta")


def _grad_terms(args: dict) -> tuple:
    """(factor, 1 + Lambda, terms per gradient and position) of the bound on two correct float64
    evaluations of the delta rule's gradients. The
    forward's error mass E_t (module docstring) bounds the states' errors; the state's cotangent
    G_t (exact norm Gn_t) is carried backwards by the same transitions, so its error mass is
    EG_t = g_{t+1} EG_{t+1} + rhoG_t with rhoG_t = (2 + beta_{t+1} |k_{t+1}|^2) a_{t+1} Gn_{t+1} +
    |scale q_t| |dO_t| (EG_T from the state cotangent's own rounding, |dS|). With X_t = Gn_t + EG_t
    and Y_t = |S_{t-1}|_F + E_{t-1}, each gradient is within 4 (T + K + V + 4) eps (1 + Lambda) of

        dq: |scale| (|S_t|_F + E_t) |dO_t|          dv: beta |k| X_t
        dk: beta (X_t |v| + 2 a X_t |k| Y_t)        dbeta: |k| X_t |v| + a |k|^2 X_t Y_t

    maximised over batch and heads per time position (|.| 2-norms, |.|_F Frobenius)."""
    q, k, v, beta = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v", "beta"))
    B, T, H, K = q.shape
    V = v.shape[3]
    g = args.get("g")
    gates = np.ones((B, T, H)) if g is None else np.exp(np.asarray(g, dtype=np.float64))
    S0 = args.get("initial_state")
    S = np.zeros((B, H, K, V)) if S0 is None else np.asarray(S0, dtype=np.float64)
    scale = K ** -0.5 if args.get("scale") is None else abs(args["scale"])
    k_norm2 = np.sum(k * k, axis=-1)  # (B, T, H)
    norms, errors, E = [np.linalg.norm(S, axis=(-2, -1))], [np.zeros((B, H))], np.zeros((B, H))
    for t in range(T):  # the forward's states and error mass, as _error_mass
        a, b = gates[:, t], beta[:, t]
        rho = (2 + b * k_norm2[:, t]) * a * norms[-1] + b * np.sqrt(k_norm2[:, t]) * np.linalg.norm(v[:, t], axis=-1)
        E = a * np.maximum(1.0, np.abs(1 - b * k_norm2[:, t])) * E + rho
        S = a[..., None, None] * S
        S = S + k[:, t, :, :, None] * (b[..., None] * (v[:, t] - np.einsum("bhk,bhkv->bhv", k[:, t], S)))[:, :, None, :]
        norms.append(np.linalg.norm(S, axis=(-2, -1)))
        errors.append(E)
    do_norm = np.linalg.norm(np.asarray(args["cotangent"], dtype=np.float64), axis=-1)  # (B, T, H)
    dS = args.get("state_cotangent")
    G = np.zeros((B, H, K, V)) if dS is None else np.asarray(dS, dtype=np.float64)
    EG = np.linalg.norm(G, axis=(-2, -1))
    bounds = {name: np.zeros(T) for name in GRADIENT_WRT}
    for t in reversed(range(T)):
        G = G + scale * q[:, t, :, :, None] * np.asarray(args["cotangent"], dtype=np.float64)[:, t, :, None, :]
        EG = EG + scale * np.linalg.norm(q[:, t], axis=-1) * do_norm[:, t]
        a, b, kn = gates[:, t], beta[:, t], np.sqrt(k_norm2[:, t])
        X, Y = np.linalg.norm(G, axis=(-2, -1)) + EG, norms[t] + errors[t]
        vn = np.linalg.norm(v[:, t], axis=-1)
        parts = {"q": scale * (norms[t + 1] + errors[t + 1]) * do_norm[:, t], "v": b * kn * X,
                 "k": b * (X * vn + 2 * a * X * kn * Y), "beta": kn * X * vn + a * kn ** 2 * X * Y}
        for name, part in parts.items():
            bounds[name][t] = part.max(initial=0.0)
        G = a[..., None, None] * (G - b[..., None, None] * k[:, t, :, :, None]
                                  * np.einsum("bhk,bhkv->bhv", k[:, t], G)[:, :, None, :])
        EG = a * np.maximum(1.0, np.abs(1 - b * k_norm2[:, t])) * EG + (2 + b * k_norm2[:, t]) * a * X
    logs = np.zeros((B, T, H)) if g is None else np.where(np.isfinite(g), np.abs(g), 0.0)
    exponent = 1 + cumulative_max(logs).max(initial=0.0)
    return 4 * (T + K + V + 4) * 2 * U64 * exponent, exponent, tuple(bounds[name] for name in GRADIENT_WRT)


def delta_grad_bound(args: dict, expected: tuple) -> tuple:
    """``_grad_terms``' factor times its terms, per position."""
    factor, _, terms = _grad_terms(args)
    return tuple(factor * term for term in terms)


def delta_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: the bound's terms times 1 + the gate's running exponent."""
    _, exponent, terms = _grad_terms(args)
    return tuple(exponent * term for term in terms)


def delta_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype`` (``delta_rule_vjp_in_dtype``), in ``wrt``'s order."""
    grads = ref.delta_rule_vjp_in_dtype(**without(args, ("return_state",)), dtype=dtype)
    return tuple(grads[name] for name in GRADIENT_WRT)


GRADIENT_RULE = ("derived float64 bound: 4(T+K+V+4) eps (1 + max sum|g|) times each gradient's terms with the states' "
                 "error mass E_t and the cotangent's EG_t carried by the transitions' norms, per position")


def delta_rule_vjp(**args) -> dict:
    """The gradient oracle of ``delta.delta_rule.recurrent``: the form's arguments and the
    cotangents of its outputs (the state's when ``return_state``)."""
    return ref.delta_rule_vjp(**{name: value for name, value in args.items() if name != "return_state"})


# ----------------------------------------------------------------------------- sweeps

def _sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, K=V=64, L2-normalised keys, beta = sigmoid(N(0, 1)),
    Gated DeltaNet's gate log(sigmoid(x)) / 16."""
    batch, H, K = 1, 4, 64
    k = rng.standard_normal((batch, T, H, K))
    return {"q": rng.standard_normal((batch, T, H, K)), "k": k / np.linalg.norm(k, axis=-1, keepdims=True),
            "v": rng.standard_normal((batch, T, H, K)), "beta": 1 / (1 + np.exp(-rng.standard_normal((batch, T, H)))),
            "g": -np.logaddexp(0.0, -rng.standard_normal((batch, T, H))) / 16, "scale": None,
            "initial_state": None, "return_state": True, "chunk_size": chunk_size}


# ----------------------------------------------------------------------------- forms

RECURRENT_INPUTS = for_form(delta_inputs, "recurrent", unused=("chunk_size",))
CHUNKED_INPUTS = for_form(delta_inputs, "chunked")

register_form(Form(
    key="delta.delta_rule.recurrent",
    fn=ref.delta_rule_recurrent,
    inputs=RECURRENT_INPUTS,
    bound=delta_bound,
    rule=RULE,
    statement="the (gated) delta rule, the definition: S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T, "
              "o_t = scale q_t S_t",
    plain=delta_plain,
    magnitude=delta_magnitude,
    magnitude_rule="each position's |scale q_t| (E_t + |S_t|_F), the rounding mass the transitions carry, plus "
                   "float32's ulp at (t + 1 + the gate's running exponent) times it (state: E_T per head)",
    data_args=DATA,
    outputs=("out", "state"),
))

register_gradient(Gradient(
    form="delta.delta_rule.recurrent",
    vjp=delta_rule_vjp,
    wrt=GRADIENT_WRT,
    cotangents=("cotangent", "state_cotangent"),
    bound=delta_grad_bound,
    rule=GRADIENT_RULE,
    axes=(("batch", "time", "head", "channel"), ("batch", "time", "head", "channel"),
          ("batch", "time", "head", "channel"), ("batch", "time", "head")),
    plain=delta_grad_plain,
    magnitude=delta_grad_magnitude,
))

register_form(Form(
    key="delta.delta_rule.chunked",
    fn=ref.delta_rule_chunked,
    inputs=CHUNKED_INPUTS,
    bound=delta_bound,
    rule=RULE,
    statement="the chunked (UT / WY) delta rule equals its recurrence, every chunk size, gated or not, through "
              "resets",
    oracle="delta.delta_rule.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (chunks of 64, H=4, K=V=64, gated)", (16, 64, 256, 1024),
                  lambda T, rng: _sweep_args(T, rng)),
            Sweep("chunk_size", "chunk size (T=256, H=4, K=V=64, gated)", (1, 4, 16, 64, 256),
                  lambda c, rng: _sweep_args(256, rng, chunk_size=c))),
))


# ----------------------------------------------------------------------------- claims

def _timed(args: dict) -> tuple:
    return DATA + ("beta",) + (() if args.get("g") is None else ("g",))


register_claim(Claim(
    key="delta.delta_rule.continuation",
    statement="the delta rule continues from its returned state: a full sequence equals two chunks carried through "
              "the state, at every split point (fla #285)",
    subject="delta.delta_rule.chunked",
    default_impl=ref.delta_rule_chunked,
    relation=lambda impl, args: continuation(impl, args, _timed(args)),
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(delta_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _steps(impl, args: dict) -> tuple:
    """T calls of delta_rule_step against one recurrent pass."""
    full = ref.delta_rule_recurrent(**{**args, "return_state": True})
    state, outs, g = args["initial_state"], [], args["g"]
    for t in range(args["q"].shape[1]):
        out, state = impl(args["q"][:, t], args["k"][:, t], args["v"][:, t], args["beta"][:, t], state=state,
                          g_t=None if g is None else g[:, t], scale=args["scale"])
        outs.append(np.asarray(out))
    outs = np.stack(outs, axis=1) if outs else full[0]
    return (outs, full[1] if state is None else state), full


register_claim(Claim(
    key="delta.delta_rule.step",
    statement="T decoding steps (delta_rule_step, one call each) equal one recurrent pass",
    subject="delta.delta_rule.step",
    default_impl=ref.delta_rule_step,
    relation=_steps,
    inputs=lambda: RECURRENT_INPUTS(return_state=True),
    bound=delta_bound,
    rule=RULE,
    outputs=("out", "state"),
))


def _exact(impl, args: dict) -> tuple:
    den, state, decay = args["denominator"], args["initial_state"], args["decay_numerator"]
    exact = {"q": fractions(args["q"], den), "k": fractions(args["k"], den), "v": fractions(args["v"], den),
             "beta": fractions(args["beta_numerator"], 4), "scale": 1,
             "decay": None if decay is None else fractions(decay, args["decay_denominator"]),
             "initial_state": None if state is None else fractions(state, den)}
    want, want_state = ref.delta_rule_recurrent(**exact, return_state=True)
    got, got_state = impl(**exact, chunk_size=args["chunk_size"], return_state=True)
    lhs = (exact_difference(got, want), exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="delta.delta_rule.exact",
    statement="with rational q, k, v, beta, gates and S_0, the chunked form (its triangular system solved by "
              "substitution) exactly equals the recurrence, outputs and state, every chunk size",
    subject="delta.delta_rule.chunked",
    default_impl=ref.delta_rule_chunked,
    relation=_exact,
    inputs=rational_delta_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("chunked - recurrent", "state"),
))
