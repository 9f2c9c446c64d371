"""RWKV-4's WKV operator: forms, derived float64 bounds, claims.

The float64 bound (u = 2**-53, eps = 2u). Every form computes wkv_t as a weighted mean of the
v_i (and of the carried state's mean p/q), with weights e^{x_i - m} for exponents x_i =
-(t-1-i) w + k_i (u + k_t for the bonus) and some m: each exponent is formed within
(T + 2) u (|k_i| + (t-1-i) w + |u| + |m|) of exact (a product and sums, or t running
subtractions of w), so each weight within (T + 2) u (1 + X_t) relatively, X_t = 2 max_{i<=t}
(|k_i| + (t-1-i) w + |u|) per channel, and the mean of T + 1 terms within

    4 (T + 4) eps ((1 + X_t) D_t + max |v|),    D_t = max_{i<=t} |v_i - wkv_t|

of any other correct form (the ratio of two sums of positive terms moves its value by the
weights' relative errors times the spread of the values about it). Maximised over batch and
channels. The forms compare their outputs; the state (p, q, o) is checked through continuation.

The registered forms are the references themselves (``seqcheck.reference.rwkv``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.registry import Claim, Form, Gradient, register_claim, register_form, register_gradient
from seqcheck.equiv.relations import shifted, unstacked
from seqcheck.properties.arrays import for_form
from seqcheck.properties.rwkv import wkv4_inputs
from seqcheck.reference import rwkv as ref
from seqcheck.reference.arith import U64, rounding
from seqcheck.reference.rwkv.wkv4 import wkv4_logits

DATA = ("k", "v")


def wkv4_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct WKV forms (module docstring)."""
    k, v = np.asarray(args["k"], dtype=np.float64), np.asarray(args["v"], dtype=np.float64)
    w, u = np.asarray(args["w"], dtype=np.float64), np.abs(np.asarray(args["u"], dtype=np.float64))
    B, T, C = k.shape
    out = np.where(np.isfinite(expected[0]), expected[0], 0.0)
    bound = np.zeros(T)
    for t in range(T):
        gaps = np.maximum(t - 1 - np.arange(t + 1), 0)[:, None] * w  # (t+1, C)
        X = 2 * (np.abs(k[:, :t + 1]) + gaps + u).max(axis=1)  # (B, C)
        D = np.abs(v[:, :t + 1] - out[:, t:t + 1]).max(axis=1)
        bound[t] = (4 * (T + 4) * 2 * U64 * ((1 + X) * D + np.abs(v).max(initial=0.0))).max(initial=0.0)
    return (bound,)


RULE = ("derived float64 bound: 4(T+4) eps ((1 + X_t) D_t + max|v|), X_t = 2 max(|k_i| + (t-1-i) w + |u|), "
        "D_t = max |v_i - wkv_t|")


def wkv4_plain(args: dict, dtype) -> tuple:
    """The stable recurrence with every input and step rounded to ``dtype``: u + k, the maxima's
    differences, exp, the products and sums of p and q, the division, o - w. Returns float64
    holding ``dtype`` values (and the state [p, q, o] with ``return_state``)."""
    r, _ = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        k, v, w, u = (r(np.asarray(args[name], dtype=np.float64)) for name in ("k", "v", "w", "u"))
        B, T, C = k.shape
        S0 = args.get("initial_state")
        if S0 is None:
            p, q, o = np.zeros((B, C)), np.zeros((B, C)), np.full((B, C), -np.inf)
        else:
            p, q, o = (r(np.asarray(S0, dtype=np.float64)[..., i]) for i in range(3))
        outs = []
        for t in range(T):
            uk = r(u + k[:, t])
            top = np.maximum(o, uk)
            a, b = r(np.exp(r(o - top))), r(np.exp(r(uk - top)))
            outs.append(r(r(r(a * p) + r(b * v[:, t])) / r(r(a * q) + b)))
            ow = r(o - w)
            top = np.maximum(ow, k[:, t])
            a, b = r(np.exp(r(ow - top))), r(np.exp(r(k[:, t] - top)))
            p, q, o = r(r(a * p) + r(b * v[:, t])), r(r(a * q) + b), top
    out = np.stack(outs, axis=1) if outs else np.zeros_like(v)
    return (out, np.stack([p, q, o], axis=-1)) if args.get("return_state") else (out,)


def wkv4_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale per position: max |v_i| over i <= t in the dtype's roundoff,
    and X_t D_t (the exponents' size times the values' spread about wkv_t, the bound's terms) in
    float32's: kernels form the exponents in float32 whatever their inputs, and a rounded exponent
    moves its weight by that roundoff times the exponent."""
    k, v = np.asarray(args["k"], dtype=np.float64), np.asarray(args["v"], dtype=np.float64)
    w, u = np.asarray(args["w"], dtype=np.float64), np.abs(np.asarray(args["u"], dtype=np.float64))
    T = k.shape[1]
    out = np.where(np.isfinite(expected[0]), expected[0], 0.0)
    values, exponents = np.zeros(T), np.zeros(T)
    for t in range(T):
        gaps = np.maximum(t - 1 - np.arange(t + 1), 0)[:, None] * w
        X = 2 * (np.abs(k[:, :t + 1]) + gaps + u).max(axis=1)  # (B, C)
        D = np.abs(v[:, :t + 1] - out[:, t:t + 1]).max(axis=1)
        values[t] = np.abs(v[:, :t + 1]).max(initial=0.0)
        exponents[t] = (X * D).max(initial=0.0)
    return ((values, exponents),)


register_form(Form(
    key="rwkv.wkv4.recurrent",
    fn=ref.wkv4_recurrent,
    inputs=for_form(wkv4_inputs, "recurrent", unused=("chunk_size",)),
    bound=wkv4_bound,
    rule=RULE,
    statement="RWKV-4's WKV by the CUDA kernel's stable recurrence (state (p, q, o), running maximum exponent)",
    plain=wkv4_plain,
    magnitude=wkv4_magnitude,
    magnitude_rule="max_{i<=t} |v_i|, plus float32's ulp at X_t D_t (the exponents' size times the values' spread)",
    data_args=DATA,
))

def wkv4_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of WKV-4's gradients (``wkv4_vjp``):
    each weight P_ti is within (T + 2) u (1 + X_t) of exact relatively (the forward's bound), so
    with the terms' sizes dS_ti = P_ti |dO_t| ((1 + X_t)(|v_i - wkv_t| + D_t) + max|v|),

        dv_i: 4 (T + 4) eps sum_t P_ti |dO_t| (1 + X_t),    dk_i: 4 (T + 4) eps sum_t dS_ti,
        du: the same over the diagonal, dw: over (t-1-i) dS_ti   (one value each for w and u)."""
    k, v = np.asarray(args["k"], dtype=np.float64), np.asarray(args["v"], dtype=np.float64)
    w, u = np.asarray(args["w"], dtype=np.float64), np.asarray(args["u"], dtype=np.float64)
    B, T, C = k.shape
    if T == 0:
        return (np.zeros(0), np.zeros(0), 0.0, 0.0)
    logits = wkv4_logits(k, w, u)
    P = np.exp(logits - logits.max(axis=2, keepdims=True))
    P /= P.sum(axis=2, keepdims=True)
    out = (P * v[:, None]).sum(axis=2)
    visible = np.isfinite(logits)
    X = 2 * np.where(visible, np.abs(logits) + np.abs(u), 0.0).max(axis=2, keepdims=True)  # (B, T, 1, C)
    spread = np.where(visible, np.abs(v[:, None] - out[:, :, None]), 0.0)
    D = spread.max(axis=2, keepdims=True)
    dout = np.abs(args["cotangent"])[:, :, None]
    sizes = P * dout * ((1 + X) * (spread + D) + np.abs(v).max())
    gaps = np.maximum(np.arange(T)[:, None] - 1 - np.arange(T)[None, :], 0)[..., None]
    diagonal = np.arange(T)
    factor = 4 * (T + 4) * 2 * U64
    return (factor * per_position(sizes.sum(axis=1)), factor * per_position((P * dout * (1 + X)).sum(axis=1)),
            factor * (gaps * sizes).sum(axis=(0, 1, 2)).max(), factor * sizes[:, diagonal, diagonal].sum(axis=(0, 1)).max())


def wkv4_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``rwkv.wkv4.recurrent``."""
    return ref.wkv4_vjp(**args)


register_gradient(Gradient(
    form="rwkv.wkv4.recurrent",
    vjp=wkv4_recurrent_vjp,
    wrt=("k", "v", "w", "u"),
    cotangents=("cotangent",),
    bound=wkv4_grad_bound,
    rule="derived float64 bound: 4(T+4) eps times the terms' sizes P_ti |dO_t| ((1 + X_t)(|v_i - wkv_t| + D_t) + "
         "max|v|) summed as each gradient sums them (dv: P_ti |dO_t| (1 + X_t)), per position (one value for w, u)",
    axes=(("batch", "time", "channel"),) * 2 + (("channel",),) * 2,
))

register_form(Form(
    key="rwkv.wkv4.naive",
    fn=ref.wkv4_naive,
    inputs=for_form(wkv4_inputs, "naive", unused=("chunk_size", "k_scale", "k_offset")),
    bound=wkv4_bound,
    rule=RULE,
    statement="the WKV definition's sums as written equal the stable recurrence where they do not overflow",
    oracle="rwkv.wkv4.recurrent",
    data_args=DATA,
))

register_form(Form(
    key="rwkv.wkv4.parallel",
    fn=ref.wkv4_parallel,
    inputs=for_form(wkv4_inputs, "parallel", unused=("chunk_size",)),
    bound=wkv4_bound,
    rule=RULE,
    statement="the T x T parallel WKV (each row's largest exponent subtracted) equals the stable recurrence, k up "
              "to about 1e3",
    oracle="rwkv.wkv4.recurrent",
    data_args=DATA,
))

register_form(Form(
    key="rwkv.wkv4.chunked",
    fn=ref.wkv4_chunked,
    inputs=for_form(wkv4_inputs, "chunked"),
    bound=wkv4_bound,
    rule=RULE,
    statement="chunked WKV (the parallel form within a chunk, the state (p, q, o) across chunks) equals the stable "
              "recurrence, every chunk size",
    oracle="rwkv.wkv4.recurrent",
    oracle_drop=("chunk_size",),
    data_args=DATA,
))


def _continuation(impl, args: dict) -> tuple:
    """The chunked form run on [x1; x2] against x1 then x2 from x1's returned state, at every split."""
    T = args["k"].shape[1]
    full = np.asarray(impl(**args))
    split = []
    for s in range(1, T):
        first = {**args, "k": args["k"][:, :s], "v": args["v"][:, :s]}
        second = {**args, "k": args["k"][:, s:], "v": args["v"][:, s:]}
        out1, state = impl(**first, return_state=True)
        split.append(np.concatenate([np.asarray(out1), np.asarray(impl(**second, initial_state=state))], axis=1))
    stacked = np.stack(split, axis=-1)
    return (stacked,), (np.repeat(full[..., None], len(split), axis=-1),)


register_claim(Claim(
    key="rwkv.wkv4.continuation",
    statement="WKV continues from its returned state (p, q, o): [x1; x2] equals x1 then x2 from x1's state, at "
              "every split point",
    subject="rwkv.wkv4.chunked",
    default_impl=ref.wkv4_chunked,
    relation=_continuation,
    inputs=lambda: wkv4_inputs(form="chunked", seq_len=st.integers(2, 8)),
    bound=unstacked(wkv4_bound),
    rule=RULE,
))


register_claim(Claim(
    key="rwkv.wkv4.shift_invariance",
    statement="WKV is unchanged by a constant added to every k (the definition cancels it), and stays finite at k "
              "near 1e3 where the naive sums overflow",
    subject="rwkv.wkv4.recurrent",
    default_impl=ref.wkv4_recurrent,
    relation=shifted("k", 500.0),
    inputs=lambda: wkv4_inputs(form="recurrent"),
    bound=lambda args, expected: tuple(2 * b for b in wkv4_bound({**args, "k": np.abs(args["k"]) + 500.0}, expected)),
    rule="twice the WKV bound at |k| + 500",
))


# ----------------------------------------------------------------------------- GPU implementations

from seqcheck.equiv.registry import Implementation, register_implementation  # noqa: E402


def _wkv4_numba_inputs(simulated: bool):
    """Simulated: T <= 10 (chunks of 4), C <= 6 (blocks of 4 channels); on a GPU: T <= 300, C <= 128
    (chunks of 32, 64 channels per block). Every k scale and offset (k up to about 1e3)."""
    tiny = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 10), channels=st.integers(1, 6))
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 300), channels=st.integers(1, 128))
    return wkv4_inputs(form="recurrent", **(tiny if simulated else moderate))


register_implementation(Implementation(
    name="numba_cuda.wkv4",
    form="rwkv.wkv4.recurrent",
    target="wkv_numba:wkv4_recurrent",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_wkv4_numba_inputs,
))
