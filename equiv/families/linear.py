"""Causal linear attention (Katharopoulos et al. 2020): forms, derived float64 bounds, claims, sweeps.

The float64 bound (u = 2**-53, eps = 2u). Every form computes out_i = num_i * 1 / (den_i + eps_)
with num_i = sum_j (phi(q_i) . phi(k_j)) v_j (+ phi(q_i)^T S_0) and den_i = sum_j phi(q_i) .
phi(k_j) (+ phi(q_i) . z_0): sums over at most T keys (by steps, by chunks, or at once) of dot
products over D features. Each sum is within (T + D + 4) u of the sum of its terms' magnitudes,
the feature map within 2u of phi (torch's elu + 1 rounds twice), so two correct forms differ by

    4 (T + D + 4) eps (|num|_i / |den_i + eps_| + |out_i| |den|_i / |den_i + eps_|)

where |num|_i and |den|_i are the same sums of |phi(q)|, |phi(k)|, |v|, |S_0|, |z_0| (for positive
features |den|_i = den_i and this is the tests' bound, tests/reference/test_linear_attention_reference.py).
The state (S, z) gets 4 (T + 4) eps times the magnitudes' state |S_0| + sum_j |phi(k_j)| [|v_j|, 1].

Adapter (the layout rule of DESIGN.md: adapters live in equiv): the registered forms are the
references with the state pair (S (B, H, D, M), z (B, H, D)) as one float64 array (B, H, D, M + 1),
[S | z] (the state of v augmented by a column of ones), for ``initial_state`` and the returned
state alike, because the engine's outputs are arrays.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.relations import continuation, unstacked
from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.registry import (Claim, Form, Gradient, Sweep, mapped, register_claim, register_form,
                                     register_gradient, without)
from seqcheck.properties.arrays import for_form
from seqcheck.properties.linear import linear_inputs, rational_linear_inputs
from seqcheck.reference import linear_attention as ref
from seqcheck.reference.gla import gla_vjp, gla_vjp_in_dtype
from seqcheck.reference._checks import as_real, check_ndim
from seqcheck.reference.arith import U64, exact_difference, fractions, rounding

CHUNK_ARGS = ("chunk_size",)
FEATURE_MAPS = {"elu": ref.elu_feature_map, "identity": ref.identity_feature_map}


# ----------------------------------------------------------------------------- adapters

def augmented_state(S: np.ndarray, z: np.ndarray) -> np.ndarray:
    """The pair (S (B, H, D, M), z (B, H, D)) as one array (B, H, D, M + 1): [S | z]."""
    return np.concatenate([np.asarray(S), np.asarray(z)[..., None]], axis=-1)


def state_pair(state: np.ndarray) -> tuple:
    """The inverse of ``augmented_state``: (S, z)."""
    state = np.asarray(state)
    return state[..., :-1], state[..., -1]


def _augmented_inputs(args: dict) -> dict:
    """Drawn arguments with the initial state pair (S, z) as the forms take it, [S | z]."""
    state = args.get("initial_state")
    return args if state is None else {**args, "initial_state": augmented_state(*state)}


def _pair(state):
    """The augmented initial state [S | z] as the reference's pair (S, z), checked by name."""
    if state is None:
        return None
    state = as_real("initial_state", state, exact_ok=True)
    check_ndim("initial_state", state, 4, "(B, H, D, M + 1), the state [S | z]")
    return state_pair(state)


def _augmented(result, return_state):
    if not return_state:
        return result
    out, (S, z) = result
    return out, augmented_state(S, z)


def linear_attention_recurrent(q, k, v, *, feature_map="elu", eps=1e-6, initial_state=None, return_state=False):
    """``reference.linear_attention.linear_attention_recurrent``, state as [S | z] (B, H, D, M + 1)."""
    return _augmented(ref.linear_attention_recurrent(q, k, v, feature_map=feature_map, eps=eps,
                                                     initial_state=_pair(initial_state), return_state=return_state),
                      return_state)


def linear_attention_chunked(q, k, v, *, chunk_size, feature_map="elu", eps=1e-6, initial_state=None,
                             return_state=False):
    """``reference.linear_attention.linear_attention_chunked``, state as [S | z] (B, H, D, M + 1)."""
    return _augmented(ref.linear_attention_chunked(q, k, v, chunk_size=chunk_size, feature_map=feature_map, eps=eps,
                                                   initial_state=_pair(initial_state), return_state=return_state),
                      return_state)


# ----------------------------------------------------------------------------- bound

def _magnitudes(args: dict, expected: tuple, feature_error: float = 0.0) -> tuple:
    """(|num|_i + |out_i| |den|_i) / |den_i + eps| per position, the size of the sums each output
    divides (module docstring); the state: the magnitudes' state |S_0| + sum_j |phi(k_j)| [|v_j|, 1]
    per head. ``feature_error`` is added to every |phi| (an absolute error of the feature map, in
    units of the roundoff)."""
    feature_map = args.get("feature_map", "elu")
    phi = FEATURE_MAPS[feature_map] if isinstance(feature_map, str) else feature_map
    Q, K = (np.asarray(phi(np.asarray(args[name], dtype=np.float64)), dtype=np.float64) for name in ("q", "k"))
    Q_abs, K_abs = np.abs(Q) + feature_error, np.abs(K) + feature_error
    v = np.asarray(args["v"], dtype=np.float64)
    eps = float(args.get("eps", 1e-6))
    T = Q.shape[1]
    visible = np.tril(np.ones((T, T), bool))
    scores = np.where(visible, np.einsum("bihd,bjhd->bhij", Q, K), 0.0)
    magnitudes = np.where(visible, np.einsum("bihd,bjhd->bhij", Q_abs, K_abs), 0.0)
    den = np.moveaxis(scores.sum(-1), 1, 2)  # (B, T, H)
    den_abs = np.moveaxis(magnitudes.sum(-1), 1, 2)
    num_abs = np.einsum("bhij,bjhm->bihm", magnitudes, np.abs(v))
    state0 = args.get("initial_state")
    if state0 is not None:
        S0, z0 = state_pair(np.abs(state0))
        num_abs = num_abs + np.einsum("bihd,bhdm->bihm", Q_abs, S0)
        den_abs = den_abs + np.einsum("bihd,bhd->bih", Q_abs, z0)
        den = den + np.einsum("bihd,bhd->bih", Q, state_pair(state0)[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = np.abs(den + eps)[..., None]
        out = np.abs(np.where(np.isfinite(expected[0]), expected[0], 0.0))
        per_element = (num_abs + out * den_abs[..., None]) / denominator
    magnitudes = (np.where(np.isnan(per_element), np.inf, per_element).max(axis=(0, 2, 3)),)
    if len(expected) > 1:
        state = np.einsum("bjhd,bjhm->bhdm", K_abs, np.concatenate([np.abs(v), np.ones(v.shape[:3] + (1,))], -1))
        if state0 is not None:
            state = state + np.abs(state0)
        magnitudes += (state.max(axis=(0, 2, 3)),)
    return magnitudes


def linear_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct causal forms (module docstring); the state per head."""
    T, D = np.shape(args["q"])[1], np.shape(args["q"])[3]
    factors = (4 * (T + D + 4) * 2 * U64, 4 * (T + 4) * 2 * U64)
    return tuple(factor * magnitude for factor, magnitude in zip(factors, _magnitudes(args, expected)))


def linear_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: the bound's magnitudes with |phi| + 1 for elu + 1
    features, whose "+ 1" leaves an absolute error of about u (so a feature near 0, q < -16,
    carries no correct digit in float32, as in every kernel that computes elu(x) + 1), times
    sqrt(t + 1 + D) at position t (sqrt(T) for the state): the random walk of the roundings of
    t + 1 terms of D-term dot products, in whatever order a kernel sums them."""
    T, D = np.shape(args["q"])[1], np.shape(args["q"])[3]
    magnitudes = _magnitudes(args, expected, 1.0 if args.get("feature_map", "elu") == "elu" else 0.0)
    walks = (np.sqrt(np.arange(1, T + 1) + D), np.sqrt(max(T, 1)))
    return tuple(walk * magnitude for walk, magnitude in zip(walks, magnitudes))


RULE = ("derived float64 bound: 4(T+D+4) eps (|num|_i + |out_i| |den|_i) / |den_i + eps|, |.| the sums of "
        "magnitudes; state: 4(T+4) eps times the magnitudes' state per head")


# ----------------------------------------------------------------------------- gradient

GRADIENT_WRT = ("q", "k", "v", "initial_state")


def linear_recurrent_vjp(*, initial_state=None, state_cotangent=None, return_state=False, **args) -> dict:
    """The gradient oracle of ``linear.attention.recurrent``: ``linear_attention_vjp`` with the
    state, its cotangent and its gradient as [S | z]."""
    grads = ref.linear_attention_vjp(**args, initial_state=_pair(initial_state),
                                     state_cotangent=None if state_cotangent is None else state_pair(state_cotangent))
    return {**grads, "initial_state": augmented_state(*grads["initial_state"])}


def _grad_magnitudes(args: dict) -> dict:
    """``linear_attention_vjp`` on magnitudes: GLA's VJP (no decay) on |phi(q)|, |phi(k)|,
    [|v| | 1], |[S_0 | z_0]| with the augmented output's cotangents replaced by their sizes:
    |dO| rho / |den| for the numerator and 2 (|dO| . m) rho / |den| for the denominator, where
    m = (|num| + |out| |den|) / |den_t| is the size of the terms out sums (the forward's bound)
    and rho = (|den| + |eps|) / |den_t| the denominator's conditioning (1 for positive features)."""
    feature_map = args.get("feature_map", "elu")
    phi = FEATURE_MAPS[feature_map]
    q, k, v = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v"))
    Q, K = phi(q), phi(k)
    batch, T, H, D = Q.shape
    M = v.shape[3]
    eps = float(args.get("eps", 1e-6))
    state0 = args.get("initial_state")
    S0, z0 = (np.zeros((batch, H, D, M)), np.zeros((batch, H, D))) if state0 is None else state_pair(state0)
    den = np.einsum("bthd,bthd->bth", Q, z0[:, None] + np.cumsum(K, axis=1)) + eps
    den_abs = np.einsum("bthd,bthd->bth", np.abs(Q), np.abs(z0)[:, None] + np.cumsum(np.abs(K), axis=1))
    state_abs = np.abs(S0)[:, None] + np.cumsum(np.einsum("bthd,bthm->bthdm", np.abs(K), np.abs(v)), axis=1)
    num_abs = np.einsum("bthd,bthdm->bthm", np.abs(Q), state_abs)
    out = np.abs(ref.linear_attention_recurrent(q, k, v, feature_map=feature_map, eps=eps, initial_state=(S0, z0)))
    size = np.abs(den)
    rho = (den_abs + abs(eps)) / size
    m = (num_abs + out * den_abs[..., None]) / size[..., None]
    dout = np.abs(args["cotangent"])
    cotangent = np.concatenate([dout * (rho / size)[..., None], (2 * (dout * m).sum(-1) * rho / size)[..., None]], -1)
    dstate = args.get("state_cotangent")
    grads = gla_vjp(np.abs(Q), np.abs(K), np.concatenate([np.abs(v), np.ones((batch, T, H, 1))], -1),
                    np.zeros((batch, T, H)), cotangent=cotangent, scale=1.0,
                    state_cotangent=None if dstate is None else np.abs(dstate),
                    initial_state=np.abs(augmented_state(S0, z0)))
    derivative = (lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))) if feature_map == "elu" else np.ones_like
    return {"q": grads["q"] * derivative(q), "k": grads["k"] * derivative(k), "v": grads["v"][..., :M],
            "initial_state": grads["initial_state"]}


def linear_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of linear attention's gradients:
    GLA's sums (at most T steps of D- or (M+1)-term products) after one division by den_t, so
    4 (T + D + M + 4) eps M, M the VJP on magnitudes (``_grad_magnitudes``); per time position
    for q, k, v, one value for the initial state."""
    magnitudes = _grad_magnitudes(args)
    T, D, M = np.shape(args["q"])[1], np.shape(args["q"])[3], np.shape(args["v"])[3]
    factor = 4 * (T + D + M + 4) * 2 * U64
    return tuple(factor * (per_position(magnitudes[name]) if name in DATA else magnitudes[name].max())
                 for name in GRADIENT_WRT)


GRADIENT_RULE = ("derived float64 bound: 4(T+D+M+4) eps M, M the VJP on magnitudes (GLA's on |phi(q)|, |phi(k)|, "
                 "[|v| | 1] with the cotangents |dO| rho / |den| and 2 (|dO| . m) rho / |den|, m the forward's term "
                 "sizes, rho the denominator's conditioning), per position (one value for the initial state)")


# ----------------------------------------------------------------------------- plain definition in a dtype

def _feature_map_in_dtype(name: str, x, r):
    """phi evaluated as its original computes it, each step rounded by ``r``: fast-transformers'
    elu(x) + 1 is two roundings, so in float32 it is exactly 0 where exp(x) < 2^-25 (x < -17.3),
    a loss any kernel written like the original shares (the float64 reference evaluates exp(x))."""
    if name == "elu":
        x = np.asarray(x, dtype=np.float64)
        return r(r(np.where(x > 0, x, np.expm1(np.minimum(x, 0)))) + 1)
    return r(x)


def linear_plain(args: dict, dtype) -> tuple:
    """The recurrence with every input and step rounded to ``dtype``: phi(q), phi(k) (as
    ``_feature_map_in_dtype``), z + phi(k), S + phi(k) v^T, phi(q)^T S and phi(q) . z (summed in
    float32), + eps, the reciprocal, the product."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        name = args.get("feature_map", "elu")
        Q, K, v = (_feature_map_in_dtype(name, r(args["q"]), r), _feature_map_in_dtype(name, r(args["k"]), r),
                   r(args["v"]))
        eps = r(np.float64(args.get("eps", 1e-6)))
        batch, T, H, D = Q.shape
        state0 = args.get("initial_state")
        S, z = (np.zeros((batch, H, D, v.shape[3])), np.zeros((batch, H, D))) if state0 is None \
            else state_pair(r(state0))
        outs = []
        for t in range(T):
            z = r(z + K[:, t])
            S = r(S + r(K[:, t, :, :, None] * v[:, t, :, None, :]))
            num = total(r(Q[:, t, :, :, None] * S), -2)
            den = total(r(Q[:, t] * z), -1)
            outs.append(r(num * r(1 / r(den + eps))[..., None]))
    out = np.stack(outs, axis=1)
    return (out, augmented_state(S, z)) if args.get("return_state") else (out,)


def linear_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype``: phi, the running z and the denominators as
    ``linear_plain`` rounds them, the augmented cotangent [dO / den | -(dO . out) / den] rounded,
    GLA's backward in dtype (``gla_vjp_in_dtype``, no decay) on [v | 1], and the feature map's
    derivative rounded; in ``wrt``'s order (the initial state's gradient as [dS_0 | dz_0])."""
    dtype = numpy_dtype(dtype)
    r, total = rounding(dtype)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        name = args.get("feature_map", "elu")
        q, k, v = (r(args[n]) for n in DATA)
        Q, K = _feature_map_in_dtype(name, q, r), _feature_map_in_dtype(name, k, r)
        eps = r(np.float64(args.get("eps", 1e-6)))
        batch, T, H, D = Q.shape
        M = v.shape[3]
        state0 = args.get("initial_state")
        S0, z0 = (np.zeros((batch, H, D, M)), np.zeros((batch, H, D))) if state0 is None else state_pair(r(state0))
        z, dens = z0, []
        for t in range(T):
            z = r(z + K[:, t])
            dens.append(r(total(r(Q[:, t] * z), -1) + eps))
        den = np.stack(dens, axis=1) if dens else np.zeros((batch, 0, H))
        out = linear_plain({**args, "return_state": False}, dtype)[0]
        dO = r(args["cotangent"])
        dden = r(-r(total(r(dO * out), -1) / den))
        cotangent = np.concatenate([r(dO / den[..., None]), dden[..., None]], axis=-1)
        dstate = args.get("state_cotangent")
        grads = gla_vjp_in_dtype(Q, K, np.concatenate([v, np.ones((batch, T, H, 1))], -1), np.zeros((batch, T, H)),
                                 cotangent=cotangent, state_cotangent=None if dstate is None else r(dstate), scale=1.0,
                                 initial_state=augmented_state(S0, z0), dtype=dtype)
        if name == "elu":
            def derivative(x):
                return r(np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))))
        else:
            derivative = np.ones_like
        grads = {n: g.astype(np.float64) for n, g in grads.items()}
        return (r(grads["q"] * derivative(q)), r(grads["k"] * derivative(k)), grads["v"][..., :M],
                grads["initial_state"])


def linear_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: the bound's M (``_grad_magnitudes``) per position."""
    magnitudes = _grad_magnitudes(args)
    return tuple(per_position(magnitudes[name]) if name in DATA else magnitudes[name].max() for name in GRADIENT_WRT)


# ----------------------------------------------------------------------------- sweeps

def _sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, D=M=64, elu + 1 features, eps 1e-6."""
    batch, H, D = 1, 4, 64
    return {"q": rng.standard_normal((batch, T, H, D)), "k": rng.standard_normal((batch, T, H, D)),
            "v": rng.standard_normal((batch, T, H, D)), "feature_map": "elu", "eps": 1e-6,
            "initial_state": None, "return_state": True, "chunk_size": chunk_size}


SWEEP_T = (16, 64, 256, 1024)

# ----------------------------------------------------------------------------- forms

DATA = ("q", "k", "v")
RECURRENT_INPUTS = mapped(for_form(linear_inputs, "recurrent", unused=("chunk_size",)), _augmented_inputs)
CHUNKED_INPUTS = mapped(for_form(linear_inputs, "chunked"), _augmented_inputs)

register_form(Form(
    key="linear.attention.recurrent",
    fn=linear_attention_recurrent,
    inputs=RECURRENT_INPUTS,
    bound=linear_bound,
    rule=RULE,
    statement="causal linear attention, the definition: S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t), "
              "out_t = phi(q_t)^T S_t / (phi(q_t) . z_t + eps)",
    plain=linear_plain,
    magnitude=linear_magnitude,
    magnitude_rule="each position's sqrt(t + 1 + D) (|num|_i + |out_i| |den|_i) / |den_i + eps| with |phi| + 1 "
                   "for elu features (state: sqrt(T) times the magnitudes' state)",
    data_args=DATA,
    outputs=("out", "state"),
))

register_gradient(Gradient(
    form="linear.attention.recurrent",
    vjp=linear_recurrent_vjp,
    wrt=GRADIENT_WRT,
    cotangents=("cotangent", "state_cotangent"),
    bound=linear_grad_bound,
    rule=GRADIENT_RULE,
    plain=linear_grad_plain,
    magnitude=linear_grad_magnitude,
    axes=(("batch", "time", "head", "feature"),) * 2 + (("batch", "time", "head", "value"), ("batch", "head", "feature", "value")),
))

register_form(Form(
    key="linear.attention.parallel",
    fn=ref.linear_attention_parallel,
    inputs=for_form(linear_inputs, "parallel", unused=("chunk_size", "initial_state", "return_state")),
    bound=linear_bound,
    rule=RULE,
    statement="causal linear attention as a masked quadratic form equals its recurrence",
    oracle="linear.attention.recurrent",
    data_args=DATA,
    sweeps=(Sweep("T", "sequence length T (H=4, D=M=64)", SWEEP_T,
                  lambda T, rng: without(_sweep_args(T, rng), CHUNK_ARGS + ("initial_state", "return_state"))),),
))

register_form(Form(
    key="linear.attention.chunked",
    fn=linear_attention_chunked,
    inputs=CHUNKED_INPUTS,
    bound=linear_bound,
    rule=RULE,
    statement="chunked causal linear attention (intra-chunk quadratic, inter-chunk state) equals its recurrence",
    oracle="linear.attention.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (chunks of 64, H=4, D=M=64)", SWEEP_T, lambda T, rng: _sweep_args(T, rng)),
            Sweep("chunk_size", "chunk size (T=256, H=4, D=M=64)", (1, 4, 16, 64, 256),
                  lambda c, rng: _sweep_args(256, rng, chunk_size=c))),
))


# ----------------------------------------------------------------------------- claims

register_claim(Claim(
    key="linear.attention.continuation",
    statement="linear attention continues from its returned state: [x1; x2] equals x1 then x2 from x1's state, "
              "at every split point",
    subject="linear.attention.chunked",
    default_impl=linear_attention_chunked,
    relation=lambda impl, args: continuation(impl, args, ("q", "k", "v")),
    inputs=lambda: CHUNKED_INPUTS(seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(linear_bound),
    rule=RULE,
    outputs=("out", "state"),
))


def _steps(impl, args: dict) -> tuple:
    """T calls of linear_attention_step (state the pair (S, z)) against one recurrent pass."""
    full = linear_attention_recurrent(**{**args, "return_state": True})
    state, outs = _pair(args["initial_state"]), []
    for t in range(args["q"].shape[1]):
        out, state = impl(args["q"][:, t], args["k"][:, t], args["v"][:, t], state=state,
                          feature_map=args["feature_map"], eps=args["eps"])
        outs.append(np.asarray(out))
    return (np.stack(outs, axis=1), augmented_state(*state)), full


register_claim(Claim(
    key="linear.attention.step",
    statement="T decoding steps (RecurrentLinearAttention, one call each) equal one recurrent pass",
    subject="linear.attention.step",
    default_impl=ref.linear_attention_step,
    relation=_steps,
    inputs=lambda: RECURRENT_INPUTS(return_state=True),
    bound=linear_bound,
    rule=RULE,
    outputs=("out", "state"),
))


def _exact(impl, args: dict) -> tuple:
    den = args["denominator"]
    q, k, v = (fractions(args[name], den) for name in ("q", "k", "v"))
    state0 = args["initial_state"] and augmented_state(*(fractions(part, den) for part in args["initial_state"]))
    options = {"feature_map": "identity", "eps": args["eps"]}
    want, want_state = linear_attention_recurrent(q, k, v, **options, initial_state=state0, return_state=True)
    got, got_state = impl(q, k, v, chunk_size=args["chunk_size"], **options, initial_state=state0, return_state=True)
    parallel = ref.linear_attention_parallel(q, k, v, **options)
    lhs = (exact_difference(got, want), exact_difference(parallel, linear_attention_recurrent(q, k, v, **options)),
           exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="linear.attention.exact",
    statement="with the identity feature map, the chunked, parallel and recurrent forms are exactly equal on "
              "rationals (outputs and state, every chunk size, signed features)",
    subject="linear.attention.chunked",
    default_impl=linear_attention_chunked,
    relation=_exact,
    inputs=rational_linear_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness="exact (rational)",
    outputs=("chunked - recurrent", "parallel - recurrent", "state"),
))
