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

from seqcheck.equiv.bounds import cumulative_max
from seqcheck.equiv.registry import Claim, Form, Sweep, register_claim, register_form
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


def _error_mass(args: dict) -> tuple:
    """(|scale r_t| (E_t + 2 G_t + |S_t|_F) per position; E_T + 2 G_T per head; the running
    exponent): the module docstring's recurrences, run along the reference's own states."""
    r, k, v, a, b = (np.asarray(args[name], dtype=np.float64) for name in ("r", "k", "v", "a", "b"))
    B, T, H, K = r.shape
    logs = _log_decays(args)
    decays = np.exp(logs)
    S0 = args.get("initial_state")
    S = np.zeros((B, H, K, v.shape[3])) if S0 is None else np.asarray(S0, dtype=np.float64)
    scale = abs(args.get("scale", 1.0))
    E, G, per_position = np.zeros((B, H)), np.zeros((B, H)), np.zeros(T)
    for t in range(T):
        d, at, bt = decays[:, t], a[:, t], b[:, t]
        M = d[..., :, None] * np.eye(K) + bt[..., :, None] * at[..., None, :]
        g = np.maximum(np.linalg.norm(M, ord=2, axis=(-2, -1)), d.max(axis=-1))
        ab = np.linalg.norm(at, axis=-1) * np.linalg.norm(bt, axis=-1)
        rho = (d.max(axis=-1) + 2 * ab) * np.linalg.norm(S, axis=(-2, -1)) \
            + np.linalg.norm(k[:, t], axis=-1) * np.linalg.norm(v[:, t], axis=-1)
        G = g * (G + E)
        E = g * E + rho
        S = d[..., None] * S + bt[..., None] * np.einsum("bhk,bhkv->bhv", at, S)[:, :, None, :] \
            + k[:, t, :, :, None] * v[:, t, :, None, :]
        reach = scale * np.linalg.norm(r[:, t], axis=-1) * (E + 2 * G + np.linalg.norm(S, axis=(-2, -1)))
        per_position[t] = reach.max(initial=0.0)
    mass = (E + 2 * G).max(axis=0) if E.size else np.zeros(H)
    return per_position, mass, cumulative_max(np.where(np.isfinite(logs), np.abs(logs), 0.0))


def wkv7_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct wkv7 forms (module docstring); the state per head."""
    T, K = np.shape(args["r"])[1], np.shape(args["r"])[3]
    out, state, exponents = _error_mass(args)
    factor = 4 * (T + K + 4) * 2 * U64 * (1 + exponents.max(initial=0.0))
    return (factor * out, factor / 2 * state)[:len(expected)]


RULE = ("derived float64 bound: 4(T+K+4) eps (1 + max sum|log d|) |scale r_t| (E_t + 2 G_t + |S_t|_F), "
        "E_t = g_t E_{t-1} + rho_t the rounding mass carried by the transitions' norms, G_t = g_t (G_{t-1} + E_{t-1}) "
        "the chunked reads'; state: half the factor times E_T + 2 G_T per head")

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
