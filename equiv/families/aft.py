"""The Attention Free Transformer: forms, derived float64 bounds, claims.

The float64 bound (u = 2**-53, eps = 2u). AFT-full, its naive sums, AFT-local and AFT-simple
compute Y_t = g_t m_t, g_t = sigmoid(Q_t) (or 1) and m_t a weighted mean of the V_t' with weights
e^{x - m}, x = K_t' + w_{t,t'} and m some constant of the row. Each exponent is formed within
3 u M_t of exact (an addition and a subtraction of terms of size at most M_t = max_t' (|K_t'| +
|w_{t,t'}|) over the row's terms), so each weight within eps (1 + X_t) relatively, X_t = 2 M_t;
a ratio of two sums of positive terms moves by the weights' relative errors times the spread
D_t = max_t' V_t' - min_t' V_t' of the values (the mean lies between them), and the T-term
sums, the division and the gate (|g| <= 1, within 5u) add (T + 4) eps max |v|. Two correct forms
are within twice that, less than

    4 (T + 4) eps ((1 + X_t) D_t + max |v|)

per position t, maximised over batch and channels (``aft_bound``). The (T + 4) factor covers the
recurrences too (causal AFT-simple's running maximum, RWKV-4's WKV), whose exponents are formed in
up to T rescalings, within (T + 2) u X_t. AFT-conv (``conv_bound``)
sums, besides, the kernel's excess e^{w} - 1 over the weight 1 of every key: the T + s terms of
its numerator and denominator are each within (T + s + 4) eps (1 + X) of exact (X = 2 max |K|),
relative to the sums of their magnitudes S = sum_t' e^{K_t'} (1 + |e^{w_{t,t'}} - 1|), not to
the denominator D = sum_t' e^{K_t' + w_{t,t'}}: its error is within 4 (T + s + 4) eps (1 + X)
kappa_t max |v|, kappa_t = S / D (>= 1; large where the kernel's weights e^{w} are small and
cover every key, then the paper's subtraction cancels).

The registered forms are the references themselves (``seqcheck.reference.aft``).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from scipy.special import expit

from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.registry import Claim, Form, Gradient, register_claim, register_form, register_gradient
from seqcheck.equiv.relations import shifted
from seqcheck.properties.arrays import for_form
from seqcheck.properties.aft import aft_inputs
from seqcheck.reference import aft as ref
from seqcheck.reference.aft.grad import aft_weights, conv_biases, kernel_sums
from seqcheck.reference.arith import U64
from seqcheck.reference.rwkv import wkv4_recurrent

DATA = ("q", "k", "v", "w")


def _rows(T: int, causal: bool) -> np.ndarray:
    """(T, T') the terms t' of row t."""
    return np.tri(T, dtype=bool) if causal else np.ones((T, T), dtype=bool)


def aft_bound(args: dict, expected: tuple = ()) -> tuple:
    """Per-position bound on two correct AFT-full forms (module docstring); w None is w = 0."""
    k, v = np.asarray(args["k"], dtype=np.float64), np.asarray(args["v"], dtype=np.float64)
    B, T, D = k.shape
    w = np.zeros((T, T)) if args.get("w") is None else np.asarray(args["w"], dtype=np.float64)
    w = w if w.ndim == 3 else w[..., None]
    rows = _rows(T, bool(args.get("causal", False)))[None, :, :, None]  # (1, T, T', 1)
    X = 2 * np.where(rows, np.abs(k)[:, None] + np.abs(w)[None], 0.0).max(axis=2, initial=0.0)  # (B, T, D)
    spread = (np.where(rows, v[:, None], -np.inf).max(axis=2, initial=-np.inf)
              - np.where(rows, v[:, None], np.inf).min(axis=2, initial=np.inf))
    bound = 4 * (T + 4) * 2 * U64 * ((1 + X) * spread + np.abs(v).max(initial=0.0))
    return (bound.max(axis=(0, 2), initial=0.0),)


RULE = "derived float64 bound: 4(T+4) eps ((1 + X_t) D_t + max|v|), X_t = 2 max(|k_t'| + |w_tt'|), D_t = spread of v"


def _conv_as_full(q, k, v, w):
    """AFT-conv's arguments (B, T, H, D) and (H, s) run as AFT-full on H * D channels."""
    B, T, H, D = k.shape
    flat = [a.reshape(B, T, H * D) for a in (q, k, v)]
    return ref.aft_full(*flat, conv_biases(np.asarray(w), T, D)).reshape(B, T, H, D)


def conv_bound(args: dict, expected: tuple = ()) -> tuple:
    """Per-position bound on AFT-conv against AFT-full with its biases (module docstring)."""
    k, v, w = (np.asarray(args[name], dtype=np.float64) for name in ("k", "v", "w"))
    B, T, H, D = k.shape
    s = w.shape[1]
    flat_k, flat_v = k.reshape(B, T, H * D), v.reshape(B, T, H * D)
    biases = conv_biases(w, T, D)  # (T, T', H D)
    a = np.exp(flat_k - flat_k.max(axis=1, keepdims=True, initial=-np.inf))[:, None]  # (B, 1, T', H D)
    kappa = (a * (1 + np.abs(np.expm1(biases)))).sum(axis=2) / (a * np.exp(biases)).sum(axis=2)  # (B, T, H D)
    X = 2 * np.abs(k).max(initial=0.0)
    own = 4 * (T + s + 4) * 2 * U64 * (1 + X) * kappa * np.abs(v).max(initial=0.0)
    full = aft_bound({"k": flat_k, "v": flat_v, "w": biases})[0]
    return (own.max(axis=(0, 2), initial=0.0) + full,)


register_form(Form(
    key="aft.full.parallel",
    fn=ref.aft_full,
    inputs=for_form(aft_inputs, "full", unused=("heads", "window", "kernel_size")),
    bound=aft_bound,
    rule=RULE,
    statement="AFT-full: every row's exponents k_t' + w_tt' with their largest subtracted, k up to about 1e3",
    data_args=DATA,
))

register_form(Form(
    key="aft.full.naive",
    fn=ref.aft_full_naive,
    inputs=for_form(aft_inputs, "naive", unused=("heads", "window", "kernel_size", "k_scale", "k_offset")),
    bound=aft_bound,
    rule=RULE,
    statement="AFT-full's sums as written equal the stable form where they do not overflow",
    oracle="aft.full.parallel",
    data_args=DATA,
))

register_form(Form(
    key="aft.local.parallel",
    fn=ref.aft_local,
    inputs=for_form(aft_inputs, "local", unused=("heads", "kernel_size")),
    bound=aft_bound,
    rule=RULE,
    statement="AFT-local: AFT-full with w kept where |t - t'| < window and 0 elsewhere",
    data_args=DATA,
))

register_form(Form(
    key="aft.simple.parallel",
    fn=ref.aft_simple,
    inputs=for_form(aft_inputs, "simple", unused=("heads", "window", "kernel_size", "w_scale", "w_per_channel")),
    bound=aft_bound,
    rule=RULE,
    statement="AFT-simple: sigmoid(Q) times the softmax over time of K applied to V (causal: over t' <= t)",
    data_args=("q", "k", "v"),
))

CONV_RULE = ("derived float64 bound: 4(T+s+4) eps (1 + X) kappa_t max|v| + the AFT-full bound, X = 2 max|k|, "
             "kappa_t = sum e^k (1 + |e^w - 1|) / sum e^(k + w)")

register_form(Form(
    key="aft.conv.parallel",
    fn=ref.aft_conv,
    inputs=for_form(aft_inputs, "conv", unused=("window", "causal", "w_per_channel")),
    bound=conv_bound,
    rule=CONV_RULE,
    statement="AFT-conv: per head, a centred kernel's excess e^w - 1 convolved over time plus every key with weight 1",
    data_args=DATA,
))


# ----------------------------------------------------------------------------- gradients

def _grad_sizes(q, k, v, W, causal, cotangent, kappa=1.0) -> dict:
    """The sizes of the terms each gradient of Y = sigmoid(q) m sums (reference/aft/grad.py):
    with the weights P within eps (1 + X_t) relatively (the forward's bound) and dm = |dY|
    sigmoid(q), dS_tt' = P_tt' dm_t ((1 + X_t)(|v_t' - m_t| + D_t) + max|v|) kappa_t; dv sums
    P dm (1 + X) kappa, dk and dW (over the batch) sum dS, dq is |dY| sigmoid'(q) times the
    forward's term ((1 + X_t) D_t + max|v|) kappa_t. kappa: AFT-conv's cancellation (module docstring)."""
    T = k.shape[1]
    P = aft_weights(k, W, causal)
    visible = _rows(T, causal)[None, :, :, None]
    mean = (P * v[:, None]).sum(axis=2)
    X = 2 * np.where(visible, np.abs(k)[:, None] + np.abs(W)[None], 0.0).max(axis=2, initial=0.0)[:, :, None]
    spread = (np.where(visible, v[:, None], -np.inf).max(axis=2, initial=-np.inf)
              - np.where(visible, v[:, None], np.inf).min(axis=2, initial=np.inf))[:, :, None]
    vmax = np.abs(v).max(initial=0.0)
    kappa = np.broadcast_to(kappa, k.shape)[:, :, None]
    dY = np.abs(cotangent)
    dm = (dY if q is None else dY * expit(q))[:, :, None]
    dS = P * dm * ((1 + X) * (np.abs(v[:, None] - mean[:, :, None]) + spread) + vmax) * kappa
    sizes = {"k": dS.sum(axis=1), "v": (P * dm * (1 + X) * kappa).sum(axis=1), "W": dS.sum(axis=0)}
    if q is not None:
        gate = expit(q)
        sizes["q"] = dY * gate * (1 - gate) * ((1 + X) * spread + vmax)[:, :, 0] * kappa[:, :, 0]
    return sizes


def _grad_bound(sizes: dict, dw, factor: float, wrt: tuple, args: dict) -> tuple:
    """factor times each size, per time position for q, k, v, one value for w; plus what
    underflow leaves: a weight below float64's smallest normal number carries an absolute error
    of up to that number (a subnormal kept or flushed), times the values and cotangents it
    multiplies, in each of the T + 4 terms of up to T + 1 rows."""
    T = np.shape(args["k"])[1]
    underflow = (T + 4) * np.finfo(np.float64).tiny * (1 + np.abs(args["v"]).max(initial=0.0)) * (
        1 + np.abs(args["cotangent"]).max(initial=0.0)) * (T + 1)
    return tuple(0.0 if name not in sizes and name != "w" else
                 factor * (np.abs(dw).max(initial=0.0) if name == "w" else per_position(sizes[name])) + underflow
                 for name in wrt)


def _flat(args: dict, names=("q", "k", "v", "cotangent")) -> list:
    return [None if args.get(n) is None else np.asarray(args[n], dtype=np.float64) for n in names]


def full_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of AFT-full's gradients:
    4 (T + 4) eps times the terms' sizes (``_grad_sizes``)."""
    q, k, v, dY = _flat(args)
    w = np.asarray(args["w"], dtype=np.float64)
    sizes = _grad_sizes(q, k, v, w if w.ndim == 3 else w[..., None], bool(args.get("causal", False)), dY)
    dw = sizes["W"] if w.ndim == 3 else sizes["W"].sum(axis=-1)
    return _grad_bound(sizes, dw, 4 * (k.shape[1] + 4) * 2 * U64, GRADIENT_WRT, args)


def local_grad_bound(args: dict, expected: tuple) -> tuple:
    """AFT-local's: AFT-full's with its biases w' (w inside the window, 0 outside)."""
    q, k, v, dY = _flat(args)
    w = np.asarray(args["w"], dtype=np.float64)
    biases = _local_biases(args)
    sizes = _grad_sizes(q, k, v, biases if biases.ndim == 3 else biases[..., None], bool(args.get("causal", False)), dY)
    t = np.arange(k.shape[1])
    inside = (np.abs(t[:, None] - t[None, :]) < args["window"])[..., None]
    dw = np.where(inside, sizes["W"], 0.0)
    return _grad_bound(sizes, dw if w.ndim == 3 else dw.sum(axis=-1), 4 * (k.shape[1] + 4) * 2 * U64, GRADIENT_WRT, args)


def simple_grad_bound(args: dict, expected: tuple) -> tuple:
    """AFT-simple's: AFT-full's with w = 0."""
    q, k, v, dY = _flat(args)
    T = k.shape[1]
    sizes = _grad_sizes(q, k, v, np.zeros((T, T, 1)), bool(args.get("causal", False)), dY)
    return _grad_bound(sizes, 0.0, 4 * (T + 4) * 2 * U64, GRADIENT_WRT[:3], args)


def conv_grad_bound(args: dict, expected: tuple) -> tuple:
    """AFT-conv's: AFT-full's on H * D channels with the kernel's biases and the forward's
    cancellation kappa_t, 4 (T + s + 4) eps; w's gradient sums the biases' along the diagonals."""
    q, k, v, dY = _flat(args)
    w = np.asarray(args["w"], dtype=np.float64)
    B, T, H, D = k.shape
    q, k, v, dY = (None if a is None else a.reshape(B, T, H * D) for a in (q, k, v, dY))
    biases = conv_biases(w, T, D)
    a = np.exp(k - k.max(axis=1, keepdims=True, initial=-np.inf))[:, None]
    kappa = (a * (1 + np.abs(np.expm1(biases)))).sum(axis=2) / (a * np.exp(biases)).sum(axis=2)
    sizes = _grad_sizes(q, k, v, biases, False, dY, kappa)
    sizes = {n: (s if n == "W" else s.reshape(B, T, H, D)) for n, s in sizes.items()}
    return _grad_bound(sizes, kernel_sums(sizes["W"].reshape(T, T, H, D), w.shape[1]), 4 * (T + w.shape[1] + 4) * 2 * U64, GRADIENT_WRT, args)


GRADIENT_WRT = ("q", "k", "v", "w")
GRADIENT_RULE = ("derived float64 bound: 4(T+4) eps times the sizes of the terms each gradient sums, dS_tt' = P_tt' "
                 "|dY_t| sigmoid(q_t) ((1 + X_t)(|v_t' - m_t| + D_t) + max|v|) (dv: P |dY| sigmoid (1 + X)), per "
                 "position (one value for w); AFT-conv: (T+s+4) and the forward's kappa_t")

for key, vjp, bound, wrt in (("aft.full.parallel", ref.aft_full_vjp, full_grad_bound, GRADIENT_WRT),
                             ("aft.local.parallel", ref.aft_local_vjp, local_grad_bound, GRADIENT_WRT),
                             ("aft.simple.parallel", ref.aft_simple_vjp, simple_grad_bound, GRADIENT_WRT[:3]),
                             ("aft.conv.parallel", ref.aft_conv_vjp, conv_grad_bound, GRADIENT_WRT)):
    register_gradient(Gradient(form=key, vjp=vjp, wrt=wrt, cotangents=("cotangent",), bound=bound, rule=GRADIENT_RULE,
                               axes=(("batch", "time", "channel"),) * 3 if key != "aft.conv.parallel"
                               else (("batch", "time", "head", "channel"),) * 3 + (("head", "tap"),)))


# ----------------------------------------------------------------------------- the variants are AFT-full


def _local_biases(args: dict) -> np.ndarray:
    """AFT-local's w': w where |t - t'| < window, 0 elsewhere."""
    w = np.asarray(args["w"])
    T = w.shape[0]
    inside = np.abs(np.arange(T)[:, None] - np.arange(T)[None, :]) < args["window"]
    return np.where(inside if w.ndim == 2 else inside[..., None], w, 0.0)


def _local_as_full(impl, args: dict) -> tuple:
    full = {name: value for name, value in args.items() if name != "window"}
    return (np.asarray(impl(**args)),), (ref.aft_full(**{**full, "w": _local_biases(args)}),)


def _without_window(args: dict) -> dict:
    return {name: value for name, value in args.items() if name != "window"}


register_claim(Claim(
    key="aft.local.as_full",
    statement="AFT-local equals AFT-full with w zeroed (not masked) outside the window |t - t'| < window",
    subject="aft.local.parallel",
    default_impl=ref.aft_local,
    relation=_local_as_full,
    inputs=lambda: aft_inputs(form="local"),
    bound=lambda args, expected: aft_bound({**args, "w": _local_biases(args)}),
    rule=RULE,
))


def _wide_window(impl, args: dict) -> tuple:
    """The window T - 1 + the drawn one (>= T): every pair inside."""
    wide = {**args, "window": args["window"] + args["k"].shape[1] - 1}
    return (np.asarray(impl(**wide)),), (ref.aft_full(**_without_window(args)),)


register_claim(Claim(
    key="aft.local.full_window",
    statement="AFT-local with a window >= T (T, T + 1, ...) equals AFT-full with the same w",
    subject="aft.local.parallel",
    default_impl=ref.aft_local,
    relation=_wide_window,
    inputs=lambda: aft_inputs(form="local", window=st.integers(1, 3)),
    bound=aft_bound,
    rule=RULE,
))


def _simple_as_full(impl, args: dict) -> tuple:
    T = args["k"].shape[1]
    return (np.asarray(impl(**args)),), (ref.aft_full(**args, w=np.zeros((T, T))),)


register_claim(Claim(
    key="aft.simple.as_full",
    statement="AFT-simple equals AFT-full with w = 0, causal and not",
    subject="aft.simple.parallel",
    default_impl=ref.aft_simple,
    relation=_simple_as_full,
    inputs=lambda: aft_inputs(form="simple"),
    bound=aft_bound,
    rule=RULE,
))


register_claim(Claim(
    key="aft.conv.as_full",
    statement="AFT-conv equals AFT-full with w_tt' = w^h_(t'-t+s//2) within the kernel and 0 outside, per head",
    subject="aft.conv.parallel",
    default_impl=ref.aft_conv,
    relation=lambda impl, args: ((np.asarray(impl(**args)),), (_conv_as_full(**args),)),
    inputs=lambda: aft_inputs(form="conv"),
    bound=conv_bound,
    rule=CONV_RULE,
))


# ----------------------------------------------------------------------------- invariances

register_claim(Claim(
    key="aft.full.key_shift",
    statement="AFT-full (causal and not) is unchanged by a constant added to every k, and stays finite at k near "
              "1.5e3 where the naive sums overflow",
    subject="aft.full.parallel",
    default_impl=ref.aft_full,
    relation=shifted("k", 500.0),
    inputs=lambda: aft_inputs(form="full"),
    bound=lambda args, expected: aft_bound({**args, "k": np.abs(args["k"]) + 500.0}),
    rule="the AFT-full bound at |k| + 500 (each of the two evaluations within half of it)",
))


register_claim(Claim(
    key="aft.full.bias_shift",
    statement="AFT-full (causal and not) is unchanged by a constant added to every position bias w (800: e^w alone "
              "overflows)",
    subject="aft.full.parallel",
    default_impl=ref.aft_full,
    relation=shifted("w", 800.0),
    inputs=lambda: aft_inputs(form="full"),
    bound=lambda args, expected: aft_bound({**args, "w": np.abs(args["w"]) + 800.0}),
    rule="the AFT-full bound at |w| + 800 (each of the two evaluations within half of it)",
))


# ----------------------------------------------------------------------------- RWKV-4's WKV is causal AFT


def wkv4_biases(w: np.ndarray, u: np.ndarray, T: int) -> np.ndarray:
    """RWKV-4's decays w (C,) > 0 and bonuses u (C,) as AFT's per-channel biases (T, T, C):
    w_{t,i} = -(t - 1 - i) w_c for i < t, u_c on the diagonal, 0 above it (causal: unused)."""
    t, i = np.arange(T)[:, None], np.arange(T)[None, :]
    biases = np.where((i < t)[..., None], -(t - 1 - i)[..., None] * np.asarray(w), 0.0)
    biases[np.arange(T), np.arange(T)] = u
    return biases


def _wkv4_as_aft(impl, args: dict) -> tuple:
    k, v, w, u = (args[name] for name in ("k", "v", "w", "u"))
    aft = impl(None, k, v, wkv4_biases(w, u, k.shape[1]), causal=True)
    return (np.asarray(aft),), (wkv4_recurrent(k, v, w, u),)


def _wkv4_bound(args: dict, expected: tuple) -> tuple:
    """The AFT-full bound with |u| added to every |k|: X_t = 2 max(|k_i| + (t-1-i) w + |u|), RWKV-4's
    X_t, covering the recurrence's running exponents (rwkv's bound has the same form)."""
    k, w, u = (np.asarray(args[name], dtype=np.float64) for name in ("k", "w", "u"))
    return aft_bound({"k": np.abs(k) + np.abs(u), "v": args["v"], "w": wkv4_biases(w, u, k.shape[1]),
                      "causal": True})


register_claim(Claim(
    key="aft.full.wkv4",
    statement="RWKV-4's WKV (the CUDA kernel's recurrence) is ungated causal AFT-full with per-channel biases "
              "w_ti = -(t-1-i) w_c below the diagonal and u_c on it",
    subject="aft.full.parallel",
    default_impl=ref.aft_full,
    relation=_wkv4_as_aft,
    inputs=lambda: aft_inputs(form="wkv4"),
    bound=_wkv4_bound,
    rule="the AFT-full bound at |k| + |u| with the WKV biases: 4(T+4) eps ((1 + X_t) D_t + max|v|), RWKV-4's X_t",
))
