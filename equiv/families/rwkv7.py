"""RWKV-7's wkv7 (the generalised delta rule): forms, derived float64 bounds, claims.

The float64 bound (u = 2**-53, eps = 2u). Per head, step t maps the state by
M_t = diag(d_t) + b_t a_t^T and adds k_t v_t^T. Let g_t = max(|M_t|_2, max|d_t|) (the 2-norm
computed per step; the largest decay as well, because the chunked form carries terms by the
decays alone). A correct recurrence rounds each step's terms, of total size

    rho_t = (max|d_t| + 2 |a_t| |b_t|) |S_{t-1}|_F + |k_t| |v_t|

within (T + K + 4) eps of exact (the products over K, the chunked form's sums over at most T
earlier steps, and a decay product formed over at most T steps, within (1 + Lambda) of exact
relatively, Lambda = the running sum of |log d|); the transitions carry an earlier error forward
multiplied by at most g_t, so the state's error is within (T + K + 4) eps (1 + Lambda) E_t,
E_t = g_t E_{t-1} + rho_t (E_{-1} = 0). The chunked form also reads u_i = a_i^T S_{i-1} as a sum
over the chunk of terms whose size is bounded by E_{i-1}, not |S_{i-1}|_F (they may cancel);
that read enters the state multiplied by |b_i| and |a_i| |b_i| <= 2 g_i, so it adds the mass
G_t = g_t (G_{t-1} + E_{t-1}) (G_{-1} = 0) twice. Two correct forms differ in the state by twice
that and in o_t by

    4 (T + K + 4) eps (1 + Lambda) |scale| |r_t| (E_t + 2 G_t + |S_t|_F)

maximised over batch and heads (|.| the 2-norm, |.|_F Frobenius).

The registered forms are the references themselves (``seqcheck.reference.rwkv7``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.bounds import cumulative_max, per_position
from seqcheck.equiv.registry import (Claim, Form, Gradient, Sweep, register_claim, register_form, register_gradient,
                                     without)
from seqcheck.equiv.relations import continuation, unstacked
from seqcheck.properties.arrays import for_form
from seqcheck.properties.delta import delta_inputs
from seqcheck.properties.rwkv7 import rational_wkv7_inputs, wkv7_inputs
from seqcheck.reference import rwkv7 as ref
from seqcheck.reference.arith import U64, exact_difference, fractions
from seqcheck.reference.delta import delta_rule_recurrent

CHUNK_ARGS = ("chunk_size",)
DATA = ("r", "w", "k", "v", "a", "b")


# ----------------------------------------------------------------------------- bound

def _log_decays(args: dict) -> np.ndarray:
    w = np.asarray(args["w"], dtype=np.float64)
    kind = args.get("w_kind", "log")
    if kind == "decay":
        with np.errstate(divide="ignore"):
            return np.log(w)
    return -np.exp(w) if kind == "loglog" else w


def _norm(x: np.ndarray, axes=-1) -> np.ndarray:
    return np.linalg.norm(x, axis=axes)


def _forward_masses(args: dict) -> dict:
    """The module docstring's recurrences along the reference's own states, per (B, H): |S_t|_F and
    the error masses E_t, G_t for the states S_0 .. S_T ("S", "E", "G": (T + 1, B, H)); each step's
    transition bound g_t and its parts max|d_t|, |a_t| |b_t| ((T, B, H)); the running exponent."""
    r, k, v, a, b = (np.asarray(args[name], dtype=np.float64) for name in ("r", "k", "v", "a", "b"))
    B, T, H, K = r.shape
    logs = _log_decays(args)
    decays = np.exp(logs)
    S0 = args.get("initial_state")
    S = np.zeros((B, H, K, v.shape[3])) if S0 is None else np.asarray(S0, dtype=np.float64)
    E, G = np.zeros((B, H)), np.zeros((B, H))
    masses = {"S": [_norm(S, (-2, -1))], "E": [E], "G": [G], "g": [], "d": [], "ab": []}
    for t in range(T):
        d, at, bt = decays[:, t], a[:, t], b[:, t]
        M = d[..., :, None] * np.eye(K) + bt[..., :, None] * at[..., None, :]
        g = np.maximum(np.linalg.norm(M, ord=2, axis=(-2, -1)), d.max(axis=-1))
        ab = _norm(at) * _norm(bt)
        rho = (d.max(axis=-1) + 2 * ab) * _norm(S, (-2, -1)) + _norm(k[:, t]) * _norm(v[:, t])
        G = g * (G + E)
        E = g * E + rho
        S = d[..., None] * S + bt[..., None] * np.einsum("bhk,bhkv->bhv", at, S)[:, :, None, :] \
            + k[:, t, :, :, None] * v[:, t, :, None, :]
        for name, value in (("S", _norm(S, (-2, -1))), ("E", E), ("G", G), ("g", g), ("d", d.max(axis=-1)),
                            ("ab", ab)):
            masses[name].append(value)
    masses = {n: np.stack(x) if x else np.zeros((0, B, H)) for n, x in masses.items()}
    masses["exponents"] = cumulative_max(np.where(np.isfinite(logs), np.abs(logs), 0.0))
    return masses


def _error_mass(args: dict) -> tuple:
    """(|scale r_t| (E_t + 2 G_t + |S_t|_F) per position; E_T + 2 G_T per head; the running
    exponent)."""
    m = _forward_masses(args)
    r = np.asarray(args["r"], dtype=np.float64)
    reach = abs(args.get("scale", 1.0)) * np.moveaxis(_norm(r), 1, 0) * (m["E"][1:] + 2 * m["G"][1:] + m["S"][1:])
    per_position = reach.max(axis=(1, 2), initial=0.0)
    mass = (m["E"][-1] + 2 * m["G"][-1]).max(axis=0)
    return per_position, mass, m["exponents"]


def wkv7_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct wkv7 forms (module docstring); the state per head."""
    T, K = np.shape(args["r"])[1], np.shape(args["r"])[3]
    out, state, exponents = _error_mass(args)
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + exponents.max(initial=0.0))
    return (factor * out, factor / 2 * state)[:len(expected)]


RULE = ("derived float64 bound: 4(T+K+4) eps (1 + max sum|log d|) |scale r_t| (E_t + 2 G_t + |S_t|_F), "
        "E_t = g_t E_{t-1} + rho_t the rounding mass carried by the transitions' norms, G_t = g_t (G_{t-1} + E_{t-1}) "
        "the chunked reads'; state: half the factor times E_T + 2 G_T per head")

# ----------------------------------------------------------------------------- gradient
#
# The backward runs the transposed transitions, G_{t-1} = M_t^T G_t + scale r_{t-1} dO_{t-1}^T, so
# its rounding is the forward's with the roles of (k, v) and (scale r, dO) exchanged: per head,
# terms of size rho'_t = (max|d_{t+1}| + 2 |a_{t+1}| |b_{t+1}|) |G_{t+1}|_F + |scale r_t| |dO_t|,
# carried back by the same g's (F_t = g_{t+1} F_{t+1} + rho'_t, and a chunked backward's reads
# H_t = g_{t+1} (H_{t+1} + F_{t+1})). Each input gradient is a product of the cotangent G_t, the
# state S_{t-1} or S_t and inputs (dr_t = scale S_t dO_t, dk_t = G_t v_t, dv_t = G_t^T k_t,
# db_t = G_t (a_t^T S_{t-1}), da_t = S_{t-1} (G_t^T b_t), dd_t = rowsum(G_t o S_{t-1})), so two
# correct evaluations differ by at most the factor 4 (T + K + V + 4) eps (1 + Lambda) times the
# product of its factors' norms, the state's and cotangent's each counted with its error mass
# (|S_t|_F + E_t + 2 G_t, |G_t|_F + F_t + 2 H_t): first order in the rounding, cross terms
# included. dw = dd d'(w) adds the slope's rounding, (1 + |log d|) relatively.

GRADIENT_WRT = DATA + ("initial_state",)


def _backward_masses(args: dict, m: dict) -> dict:
    """|G_t|_F and its mass |G_t|_F + F_t + 2 H_t for the cotangents of S_1 .. S_T ((T, B, H)), and
    the initial state's error mass F_0 + 2 H_0 ((B, H))."""
    r, dO = np.asarray(args["r"], dtype=np.float64), np.asarray(args["cotangent"], dtype=np.float64)
    B, T, H, K = r.shape
    dS = args.get("state_cotangent")
    G = np.zeros((B, H, K, dO.shape[3])) if dS is None else np.asarray(dS, dtype=np.float64)
    a, b = (np.asarray(args[n], dtype=np.float64) for n in ("a", "b"))
    decays = np.exp(_log_decays(args))
    reads = abs(args.get("scale", 1.0)) * _norm(r) * _norm(dO)  # (B, T, H)
    norms, F, Hc = np.zeros((T, B, H)), _norm(G, (-2, -1)), np.zeros((B, H))
    masses = np.zeros((T, B, H))
    for t in reversed(range(T)):
        G = G + args.get("scale", 1.0) * r[:, t, :, :, None] * dO[:, t, :, None, :]
        F = F + reads[:, t]
        norms[t] = _norm(G, (-2, -1))
        masses[t] = norms[t] + F + 2 * Hc
        du = np.einsum("bhkv,bhk->bhv", G, b[:, t])
        Hc = m["g"][t] * (Hc + F)
        F = m["g"][t] * F + (m["d"][t] + 2 * m["ab"][t]) * norms[t]
        G = decays[:, t, :, :, None] * G + a[:, t, :, :, None] * du[:, :, None, :]
    return {"norms": norms, "masses": masses, "initial": F + 2 * Hc}


def _slopes(args: dict) -> np.ndarray:
    """|d'(w)| (1 + |log d|) per element: the decay's slope in w and its rounding."""
    logs = np.where(np.isfinite(_log_decays(args)), _log_decays(args), 0.0)
    d = np.exp(_log_decays(args))
    kind = args.get("w_kind", "log")
    if kind == "decay":
        return np.ones_like(d)
    return d * (1 if kind == "log" else np.abs(logs)) * (1 + np.abs(logs))


def wkv7_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of wkv7's gradients (comment above);
    one value for the initial state."""
    m = _forward_masses(args)
    back = _backward_masses(args, m)
    r, k, v, a, b, dO = (np.moveaxis(_norm(np.asarray(args[n], dtype=np.float64)), 1, 0)
                         for n in ("r", "k", "v", "a", "b", "cotangent"))  # (T, B, H)
    T, K, V = np.shape(args["r"])[1], np.shape(args["r"])[3], np.shape(args["v"])[3]
    factor = 4 * (T + K + V + 4) * 2 * U64 * (1 + m["exponents"].max(initial=0.0))
    state = m["S"] + m["E"] + 2 * m["G"]  # (T + 1, B, H)
    before, after, G = state[:-1], state[1:], back["masses"]
    masses = {"r": abs(args.get("scale", 1.0)) * after * dO, "k": G * v, "v": G * k, "b": G * a * before,
              "a": before * G * b, "d": G * before}

    def per_time(x):
        return x.max(axis=(1, 2), initial=0.0) if x.size else np.zeros(T)

    w = factor * (np.moveaxis(masses["d"], 0, 1)[..., None] * _slopes(args))
    return tuple(factor * back["initial"].max(initial=0.0) if n == "initial_state" else
                 per_position(w) if n == "w" else factor * per_time(masses[n]) for n in GRADIENT_WRT)


def wkv7_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``rwkv.wkv7.recurrent``: ``wkv7_vjp`` on the form's arguments and
    its outputs' cotangents (the state's when ``return_state``)."""
    return ref.wkv7_vjp(**without(args, ("return_state",)))


GRADIENT_RULE = ("derived float64 bound: 4(T+K+V+4) eps (1 + max sum|log d|) times each gradient's factors' norms, "
                 "the state counted as |S_t|_F + E_t + 2 G_t and its cotangent as |G_t|_F + F_t + 2 H_t (the "
                 "backward's rounding masses carried by the same transitions); dw times |d'(w)| (1 + |log d|)")


# ----------------------------------------------------------------------------- sweeps

def _sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, K=V=64, RWKV-LM's a = -kk, b = kk * a_gate (kk normalised,
    a_gate U(0, 1)), log-decays log(sigmoid(x)) / 16 as w_kind="log"."""
    batch, H, K = 1, 4, 64
    kk = rng.standard_normal((batch, T, H, K))
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    return {"r": rng.standard_normal((batch, T, H, K)),
            "w": -np.logaddexp(0.0, -rng.standard_normal((batch, T, H, K))) / 16,
            "k": rng.standard_normal((batch, T, H, K)), "v": rng.standard_normal((batch, T, H, K)),
            "a": -kk, "b": kk * rng.uniform(0.0, 1.0, (batch, T, H, K)), "w_kind": "log", "scale": 1.0,
            "initial_state": None, "return_state": True, "chunk_size": chunk_size}


# ----------------------------------------------------------------------------- forms

RECURRENT_INPUTS = for_form(wkv7_inputs, "recurrent", unused=("chunk_size",))
CHUNKED_INPUTS = for_form(wkv7_inputs, "chunked")

register_form(Form(
    key="rwkv.wkv7.recurrent",
    fn=ref.wkv7_recurrent,
    inputs=RECURRENT_INPUTS,
    bound=wkv7_bound,
    rule=RULE,
    statement="RWKV-7's wkv7, the definition: S_t = (diag(d_t) + b_t a_t^T) S_{t-1} + k_t v_t^T, o_t = scale S_t^T r_t",
    data_args=DATA,
    outputs=("out", "state"),
))

register_gradient(Gradient(
    form="rwkv.wkv7.recurrent",
    vjp=wkv7_recurrent_vjp,
    wrt=GRADIENT_WRT,
    cotangents=("cotangent", "state_cotangent"),
    bound=wkv7_grad_bound,
    rule=GRADIENT_RULE,
    axes=(("batch", "time", "head", "key"),) * 3 + (("batch", "time", "head", "value"),)
    + (("batch", "time", "head", "key"),) * 2 + (("batch", "head", "key", "value"),),
))

register_form(Form(
    key="rwkv.wkv7.chunked",
    fn=ref.wkv7_chunked,
    inputs=CHUNKED_INPUTS,
    bound=wkv7_bound,
    rule=RULE,
    statement="the chunked (UT / WY) wkv7 equals its recurrence, every chunk size, every form of w, through resets",
    oracle="rwkv.wkv7.recurrent",
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
    key="rwkv.wkv7.continuation",
    statement="wkv7 continues from its returned state: a full sequence equals two chunks carried through the state, "
              "at every split point",
    subject="rwkv.wkv7.chunked",
    default_impl=ref.wkv7_chunked,
    relation=lambda impl, args: continuation(impl, args, DATA),
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(wkv7_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _steps(impl, args: dict) -> tuple:
    """T calls of wkv7_step against one recurrent pass."""
    full = ref.wkv7_recurrent(**{**args, "return_state": True})
    state, outs = args["initial_state"], []
    for t in range(args["r"].shape[1]):
        out, state = impl(*(args[name][:, t] for name in DATA), state=state, w_kind=args["w_kind"],
                          scale=args["scale"])
        outs.append(np.asarray(out))
    outs = np.stack(outs, axis=1) if outs else full[0]
    return (outs, full[1] if state is None else state), full


register_claim(Claim(
    key="rwkv.wkv7.step",
    statement="T decoding steps (wkv7_step, one call each) equal one recurrent pass",
    subject="rwkv.wkv7.step",
    default_impl=ref.wkv7_step,
    relation=_steps,
    inputs=lambda: RECURRENT_INPUTS(return_state=True),
    bound=wkv7_bound,
    rule=RULE,
    outputs=("out", "state"),
))


def _exact(impl, args: dict) -> tuple:
    den, state = args["denominator"], args["initial_state"]
    exact = {name: fractions(args[name], den) for name in ("r", "k", "v", "a", "b")}
    exact.update(w=fractions(args["decay_numerator"], args["decay_denominator"]), w_kind="decay",
                 initial_state=None if state is None else fractions(state, den))
    want, want_state = ref.wkv7_recurrent(**exact, return_state=True)
    got, got_state = impl(**exact, chunk_size=args["chunk_size"], return_state=True)
    lhs = (exact_difference(got, want), exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="rwkv.wkv7.exact",
    statement="with rational r, k, v, a, b, decays and S_0, the chunked form (its triangular system solved by "
              "substitution) exactly equals the recurrence, outputs and state, every chunk size",
    subject="rwkv.wkv7.chunked",
    default_impl=ref.wkv7_chunked,
    relation=_exact,
    inputs=rational_wkv7_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("chunked - recurrent", "state"),
))


def as_delta_rule(args: dict) -> dict:
    """wkv7 arguments that compute the (gated) delta rule of ``args`` (reference.delta): per head
    d = exp(g) on every key channel, b = k, a = -exp(g) beta k (the rank-one term reads the state
    before it decays, so the gate goes into a), the value beta v, r = q."""
    q, k, v, beta, g = (args[name] for name in ("q", "k", "v", "beta", "g"))
    logs = np.zeros(beta.shape) if g is None else np.asarray(g, dtype=np.float64)
    K = q.shape[3]
    return {"r": q, "w": np.repeat(logs[..., None], K, axis=-1), "k": k, "v": beta[..., None] * v,
            "a": -(np.exp(logs) * beta)[..., None] * k, "b": k, "w_kind": "log",
            "scale": K ** -0.5 if args["scale"] is None else args["scale"],
            "initial_state": args["initial_state"], "return_state": True}


def _delta_rule(impl, args: dict) -> tuple:
    want = delta_rule_recurrent(**{**args, "return_state": True})
    return tuple(np.asarray(x) for x in impl(**as_delta_rule(args))), want


register_claim(Claim(
    key="rwkv.wkv7.delta_rule",
    statement="wkv7 with d = exp(g), b = k, a = -exp(g) beta k and the value beta v is the (gated) delta rule "
              "(reference.delta.delta_rule_recurrent), outputs and state",
    subject="rwkv.wkv7.recurrent",
    default_impl=ref.wkv7_recurrent,
    relation=_delta_rule,
    inputs=lambda: delta_inputs(form="recurrent"),
    bound=lambda args, expected: tuple(2 * x for x in wkv7_bound(as_delta_rule(args), expected)),
    rule="twice the wkv7 bound of the mapped arguments (the delta rule's rounding mass per step is at most twice "
         "wkv7's)",
    outputs=("out", "state"),
))
