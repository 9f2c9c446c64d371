"""Mamba's selective scan and Mamba-2's SSD: forms, derived float64 bounds, claims, sweeps.

The float64 bound (u = 2**-53, eps = 2u). Every form computes each state and output as sums of
terms ``(prod of decays) * input``: the recurrence accumulates T of them one step at a time, the
readout sums N, the chunked and quadratic forms sum a chunk's terms (a matrix product over N,
then one over the chunk, never one fused sum) and the parallel scan combines them in a tree of
depth at most T. Every term's decay is exp of a sum of at most T logarithms dt_r A, each carrying
an absolute error of u |dt_r A| (and, with exp(segsum), the error of that sum), so its relative
error is at most T u (1 + Lambda), Lambda = max over channels of sum_t |dt_t A| (complex |.|).
Two correct forms therefore differ at position t by at most

    4 (T + N + 4) eps (1 + Lambda) m_t                   (x 2 with a complex A: 2 Re, 2 parts)

where m_t is the same computation on magnitudes: the recurrent form run on |u|, |B|, |C|, |D|,
|initial state| with decays exp(dt Re A) (|exp(dt A)|), times |silu(z)|, maximised over the
other axes. The states get the same factor times the magnitudes' state, per channel (head for
SSD). SSD is the same with N its state size and m_t from ``ssd_recurrent`` on |x|, |B|, |C|.
The tests of the references (tests/reference/test_mamba_reference.py) use this rule.

The registered forms are the references themselves: with a complex A the states are complex128
(B, D, N) and errors are moduli of differences; the parallel form's ``rng`` is an int seed (a
reproducer writes it out).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from scipy.special import expit

from seqcheck.equiv.bounds import cumulative_max, per_axis_max, per_position, with_exponents
from seqcheck.equiv.convert import numpy_dtype
from seqcheck.equiv.registry import (Claim, Form, Gradient, Implementation, Sweep, register_claim, register_form,
                                     register_gradient, register_implementation, without)
from seqcheck.equiv.relations import continuation, gradient_continuation, unstacked
from seqcheck.gpu.backend import where
from seqcheck.properties.arrays import for_form, generators
from seqcheck.properties.mamba import rational_ssd_inputs, scan_element_inputs, selective_scan_inputs, ssd_inputs
from seqcheck.reference import mamba as ref
from seqcheck.reference.gla import gla_vjp
from seqcheck.reference.mamba.grad import selective_scan_vjp, ssd_chunked_vjp, ssd_vjp
from seqcheck.reference.arith import U64, exact_difference, fractions, rounding

EXACT = "exact (rational)"
CHUNK_ARGS = ("chunk_size",)
TREE_ARGS = ("tree", "rng")


# ----------------------------------------------------------------------------- bounds

def _dt(args: dict) -> np.ndarray:
    """dt as the references compute it: delta (+ delta_bias), then torch's softplus if asked."""
    dt = np.asarray(args["delta"], dtype=np.float64)
    if args.get("delta_bias") is not None:
        dt = dt + args["delta_bias"]
    if args.get("delta_softplus"):
        dt = np.where(dt <= 20, np.log1p(np.exp(np.minimum(dt, 20))), dt)
    return dt


def _scan_magnitude(args: dict) -> tuple:
    """(factor, m_t per position, state magnitude per channel): the selective scan run on
    magnitudes, the size of the terms each output sums (module docstring)."""
    A = np.asarray(args["A"])
    is_complex = np.iscomplexobj(A)
    h0 = args.get("initial_state")
    D = args.get("D")
    out, state = ref.selective_scan_recurrent(
        np.abs(args["u"]), args["delta"], A.real, np.abs(args["B"]), np.abs(args["C"]),
        None if D is None else np.abs(D), delta_bias=args.get("delta_bias"),
        delta_softplus=args.get("delta_softplus", False), initial_state=None if h0 is None else np.abs(h0),
        return_state=True)
    if args.get("z") is not None:
        out = out * np.abs(args["z"] * expit(args["z"]))
    T, N = out.shape[1], A.shape[1]
    exponents = cumulative_max(np.abs(_dt(args))[..., None] * np.abs(A))  # (T,): max sum_{s<=t} |dt_s A|
    Lambda = exponents.max(initial=0.0)
    if is_complex:  # |2 Re(C . x)| <= 2 sum |C| |x|; complex products round each part
        out = 2 * out
    factor = 4 * (T + N + 4) * 2 * U64 * (1 + Lambda) * (2 if is_complex else 1)
    return factor, out.max(axis=(0, 2)), per_axis_max(np.abs(state)), (2 if is_complex else 1), exponents


def scan_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct selective-scan forms (module docstring); states per channel."""
    factor, out, state, _, _ = _scan_magnitude(args)
    return (factor * out, factor * state)[:len(expected)]


def scan_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale (``with_exponents``): m_t, and m_t times
    max sum_{s<=t} |dt_s A| for the decays computed from a rounded exponent (a cumulative sum,
    as chunked kernels compute it); x2 for complex A."""
    _, out, state, multiple, exponents = _scan_magnitude(args)
    return with_exponents(multiple * out, multiple * state, exponents)[:len(expected)]


SCAN_RULE = ("derived float64 bound: 4(T+N+4) eps (1 + max sum_t |dt_t A|) m_t, m_t the scan of magnitudes "
             "(x2 for complex A); states: the same factor times the magnitudes' state per channel")


def _ssd_magnitude(args: dict) -> tuple:
    """(factor, m_t per position, state magnitude per head): the SSD run on magnitudes."""
    h0, A, decay = args.get("initial_state"), args.get("A"), args.get("decay")
    if A is None:  # decays given: |log a_t| plays |dt_t A|
        decay = np.abs(np.asarray(decay, dtype=np.float64))
        with np.errstate(divide="ignore"):
            logs = np.where(decay > 0, np.abs(np.log(np.where(decay > 0, decay, 1.0))), 0.0)
    else:
        logs = np.abs(args["dt"]) * np.abs(A)
    out, state = ref.ssd_recurrent(np.abs(args["x"]), np.abs(args["dt"]), A, np.abs(args["B"]), np.abs(args["C"]),
                                   decay=decay, initial_state=None if h0 is None else np.abs(h0), return_state=True)
    T, N = out.shape[1], args["B"].shape[-1]
    exponents = cumulative_max(logs)
    Lambda = exponents.max(initial=0.0)
    factor = 4 * (T + N + 4) * 2 * U64 * (1 + Lambda)
    return factor, out.max(axis=(0, 2, 3)), per_axis_max(np.abs(state)), exponents


def ssd_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct SSD forms (module docstring); states per head."""
    factor, out, state, _ = _ssd_magnitude(args)
    return (factor * out, factor * state)[:len(expected)]


def ssd_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: m_t, and m_t times the decays' running exponent, as
    ``scan_magnitude``."""
    _, out, state, exponents = _ssd_magnitude(args)
    return with_exponents(out, state, exponents)[:len(expected)]


SSD_RULE = ("derived float64 bound: 4(T+N+4) eps (1 + max sum_t |dt_t A|) m_t, m_t the SSD of magnitudes "
            "(|log a_t| for dt A with decay=); states: the same factor times the magnitudes' state per head")


# ----------------------------------------------------------------------------- plain definitions in a dtype

def _channel_coefficient(M, batch: int, T: int, D: int) -> np.ndarray:
    """B or C of the selective scan as (B, T, D, N) for any of its three layouts."""
    M = np.asarray(M)
    if M.ndim == 2:
        return np.broadcast_to(M, (batch, T) + M.shape)
    if M.ndim == 3:
        return np.broadcast_to(M[:, :, None, :], (batch, T, D, M.shape[-1]))
    return np.repeat(M, D // M.shape[2], axis=2)


def selective_scan_plain(args: dict, dtype) -> tuple:
    """The recurrence with every input, constant and step rounded to ``dtype``: dt (+ bias,
    softplus), dt A, exp, dt u, dt B u, the state update's product and sum, C x (summed in
    float32), 2 Re, D u, silu(z) and the products. Returns float64 holding ``dtype`` values."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        u, A = r(args["u"]), r(args["A"])
        batch, T, D = u.shape
        dt = r(args["delta"])
        if args.get("delta_bias") is not None:
            dt = r(dt + r(args["delta_bias"]))
        if args.get("delta_softplus"):
            dt = np.where(dt <= 20, r(np.log1p(np.exp(np.minimum(dt, 20)))), dt)
        dA = r(np.exp(r(dt[..., None] * A)))
        dBu = r(r(dt * u)[..., None] * r(_channel_coefficient(args["B"], batch, T, D)))
        C = r(_channel_coefficient(args["C"], batch, T, D))
        h0 = args.get("initial_state")
        x = np.zeros((batch, D, A.shape[1]), dtype=A.dtype) if h0 is None else r(h0)
        ys = []
        for t in range(T):
            x = r(r(dA[:, t] * x) + dBu[:, t])
            y = total(r(x * C[:, t]), -1)
            ys.append(r(2 * y.real) if np.iscomplexobj(y) else y)
        out = np.stack(ys, axis=1)
        if args.get("D") is not None:
            out = r(out + r(r(args["D"]) * u))
        if args.get("z") is not None:
            z = r(args["z"])
            out = r(out * r(z * expit(z)))
    return (out, x) if args.get("return_state") else (out,)


def ssd_plain(args: dict, dtype) -> tuple:
    """SSD's recurrence with every input and step rounded to ``dtype``: dt A, exp, dt x, the
    outer product with B, the state update's product and sum, h C (summed in float32)."""
    r, total = rounding(numpy_dtype(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        x, dt, A = r(args["x"]), r(args["dt"]), r(args["A"])
        H = x.shape[2]
        B, C = (np.repeat(r(args[name]), H // args[name].shape[2], axis=2) for name in ("B", "C"))
        a, xdt = r(np.exp(r(dt * A))), r(x * dt[..., None])
        h0 = args.get("initial_state")
        h = np.zeros(x.shape[:1] + x.shape[2:] + B.shape[-1:]) if h0 is None else r(h0)
        ys = []
        for t in range(x.shape[1]):
            h = r(r(a[:, t, :, None, None] * h) + r(xdt[:, t, :, :, None] * B[:, t, :, None, :]))
            ys.append(total(r(h * C[:, t, :, None, :]), -1))
    out = np.stack(ys, axis=1)
    return (out, h) if args.get("return_state") else (out,)


# ----------------------------------------------------------------------------- sweeps

def _scan_sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's selective-scan sweeps: B=1, D=16 channels, N=16, shared B and C, softplus dt."""
    batch, D, N = 1, 16, 16
    return {"u": rng.standard_normal((batch, T, D)), "delta": rng.uniform(-4.0, 0.0, (batch, T, D)),
            "A": -np.exp(rng.uniform(0.0, 1.0, (D, N))), "B": rng.standard_normal((batch, T, N)),
            "C": rng.standard_normal((batch, T, N)), "D": rng.standard_normal(D), "z": None,
            "delta_bias": None, "delta_softplus": True, "initial_state": None, "return_state": True,
            "chunk_size": chunk_size}


def _ssd_sweep_args(T: int, rng, *, chunk_size: int = 64) -> dict:
    """The report's SSD sweeps: B=1, H=4, P=64, N=16, one group, dt log-uniform in [1e-3, 1e-1]."""
    batch, H, P, N = 1, 4, 64, 16
    return {"x": rng.standard_normal((batch, T, H, P)), "dt": np.exp(rng.uniform(np.log(1e-3), np.log(0.1), (batch, T, H))),
            "A": -rng.uniform(1.0, 16.0, H), "B": rng.standard_normal((batch, T, 1, N)),
            "C": rng.standard_normal((batch, T, 1, N)), "initial_state": None, "return_state": True,
            "chunk_size": chunk_size}


SWEEP_T = (16, 64, 256, 1024)
SWEEP_CHUNK = (1, 4, 16, 64, 256)

# ----------------------------------------------------------------------------- forms

# ----------------------------------------------------------------------------- gradient

SCAN_GRADIENT_WRT = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias", "initial_state")


def _per_channel(M, shape):
    """|B| or |C| in any layout, broadcast per channel to (B, T, D, N)."""
    M = np.abs(np.asarray(M))
    if M.ndim == 3:  # (B, T, N)
        M = M[:, :, None, :]
    elif M.ndim == 4:  # (B, T, G, N)
        M = np.repeat(M, shape[2] // M.shape[2], axis=2)
    return np.broadcast_to(M, shape)


def _into_layout(magnitude, given):
    """A per-channel magnitude (B, T, D, N) summed into B's or C's layout."""
    given = np.asarray(given)
    if given.ndim == 2:
        return magnitude.sum(axis=(0, 1))
    if given.ndim == 3:
        return magnitude.sum(axis=2)
    batch, T, D, N = magnitude.shape
    return magnitude.reshape(batch, T, given.shape[2], D // given.shape[2], N).sum(axis=3)


def _scan_grad_magnitudes(args: dict) -> dict:
    """``selective_scan_vjp`` on magnitudes (reference/mamba/grad.py): every term of each gradient
    replaced by its size (|u|, |B|, |C|, |D|, |x_0|, the cotangents' sizes, decays exp(dt Re A),
    |silu(z)| <= |z|, |silu'(z)| <= 1.1, sigmoid <= 1), so each is an upper bound on the terms its
    gradient sums."""
    A = np.asarray(args["A"])
    two = 2 if np.iscomplexobj(A) else 1
    u, dt = np.abs(args["u"]), _dt(args)
    batch, T, dim = u.shape
    shape = (batch, T, dim, A.shape[1])
    B, C = _per_channel(args["B"], shape), _per_channel(args["C"], shape)
    a = np.exp(dt[..., None] * A.real)
    h0 = args.get("initial_state")
    x = np.zeros(shape[:1] + shape[2:]) if h0 is None else np.abs(h0)
    states = np.empty(shape)
    for t in range(T):
        x = a[:, t] * x + (dt * u)[:, t, :, None] * B[:, t]
        states[:, t] = x
    before = np.concatenate([(np.zeros_like(x) if h0 is None else np.abs(h0))[:, None], states[:, :-1]], axis=1)
    D, z, dout = args.get("D"), args.get("z"), np.abs(args["cotangent"])
    pre_gate = two * (states * C).sum(axis=-1) + (0 if D is None else np.abs(D) * u)
    dy = dout if z is None else dout * np.abs(z)
    G = np.zeros(x.shape) if args.get("state_cotangent") is None else np.abs(args["state_cotangent"])
    total = np.empty(shape)
    for t in reversed(range(T)):
        G = two * dy[:, t, :, None] * C[:, t] + G
        total[:, t] = G
        G = a[:, t] * G
    decayed = total * before * a
    through_input = (total * B).sum(axis=-1)
    ddelta = u * through_input + (decayed * np.abs(A)).sum(axis=-1)
    return {"u": dt * through_input + (0 if D is None else np.abs(D) * dy), "delta": ddelta,
            "A": (dt[..., None] * decayed).sum(axis=(0, 1)), "B": _into_layout((dt * u)[..., None] * total, args["B"]),
            "C": _into_layout(two * dy[..., None] * states, args["C"]),
            "D": None if D is None else (dy * u).sum(axis=(0, 1)),
            "z": None if z is None else 1.1 * dout * pre_gate,
            "delta_bias": None if args.get("delta_bias") is None else ddelta.sum(axis=(0, 1)), "initial_state": G}


def scan_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of the selective scan's gradients:
    sums over at most T steps of products of N terms, the decays within T u (1 + Lambda) of exact
    as in the forward's bound, so they differ by at most 4 (T + N + 8) eps (1 + Lambda) M, M the
    VJP on magnitudes (``_scan_grad_magnitudes``), x2 for complex A; per time position for the
    gradients with a time axis (u, delta, z, time-varying B and C), one value for the others."""
    magnitudes = _scan_grad_magnitudes(args)
    factor, *_ = _scan_magnitude(args)
    T, N = np.shape(args["u"])[1], np.shape(args["A"])[1]
    factor = factor * (T + N + 8) / (T + N + 4)
    timed = {"u", "delta", "z"} | {name for name in ("B", "C") if np.ndim(args[name]) > 2}
    return tuple(0.0 if magnitudes[name] is None else
                 factor * (per_position(magnitudes[name]) if name in timed else np.abs(magnitudes[name]).max())
                 for name in SCAN_GRADIENT_WRT)


SCAN_GRADIENT_RULE = ("derived float64 bound: 4(T+N+8) eps (1 + max sum_t |dt_t A|) M, M the VJP on magnitudes "
                      "(x2 for complex A), per position (one value for A, D, delta_bias, the initial state and "
                      "time-invariant B, C)")


def scan_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype`` (``selective_scan_vjp_in_dtype``), in ``wrt``'s order."""
    grads = ref.selective_scan_vjp_in_dtype(**without(args, ("return_state",)), dtype=dtype)
    return tuple(grads.get(name, np.zeros(0)) for name in SCAN_GRADIENT_WRT)


def scan_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: the bound's M per position (one value for the others) times
    1 + max sum_t |dt_t A| (the decays' exponents, formed in float32)."""
    magnitudes = _scan_grad_magnitudes(args)
    exponent = 1 + cumulative_max(np.abs(_dt(args))[..., None] * np.abs(np.asarray(args["A"]))).max(initial=0.0)
    timed = {"u", "delta", "z"} | {name for name in ("B", "C") if np.ndim(args[name]) > 2}
    return tuple(None if magnitudes[name] is None else
                 exponent * (per_position(magnitudes[name]) if name in timed else np.abs(magnitudes[name]).max())
                 for name in SCAN_GRADIENT_WRT)


def selective_scan_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``mamba.selective_scan.recurrent``: the form's arguments and the
    cotangents of its outputs (the last state's when ``return_state``)."""
    return selective_scan_vjp(**without(args, ("return_state",)))


SCAN_DATA = ("u", "delta", "B", "C", "z")
SCAN_RECURRENT_INPUTS = for_form(selective_scan_inputs, "recurrent", unused=("chunk_size", "tree"))
SSD_CHUNKED_INPUTS = for_form(ssd_inputs, "chunked")

register_form(Form(
    key="mamba.selective_scan.recurrent",
    fn=ref.selective_scan_recurrent,
    inputs=SCAN_RECURRENT_INPUTS,
    bound=scan_bound,
    rule=SCAN_RULE,
    statement="Mamba's selective scan, the definition: x_t = exp(dt_t A) x_{t-1} + dt_t B_t u_t, y_t = C_t x_t",
    plain=selective_scan_plain,
    magnitude=scan_magnitude,
    magnitude_rule="each position's m_t, the scan run on magnitudes (x2 for complex A), plus float32's ulp at "
                   "max sum_{s<=t} |dt_s A| m_t (the decays' exponents; states: the same with the magnitudes' state)",
    data_args=SCAN_DATA,
    outputs=("out", "state"),
))

register_gradient(Gradient(
    form="mamba.selective_scan.recurrent",
    vjp=selective_scan_recurrent_vjp,
    wrt=SCAN_GRADIENT_WRT,
    cotangents=("cotangent", "state_cotangent"),
    bound=scan_grad_bound,
    rule=SCAN_GRADIENT_RULE,
    axes=(("batch", "time", "channel"), ("batch", "time", "channel"), ("channel", "state"), ("batch", "time", "state"),
          ("batch", "time", "state"), ("channel",), ("batch", "time", "channel"), ("channel",),
          ("batch", "channel", "state")),
    plain=scan_grad_plain,
    magnitude=scan_grad_magnitude,
))

register_form(Form(
    key="mamba.selective_scan.parallel",
    fn=ref.selective_scan_parallel,
    inputs=for_form(selective_scan_inputs, "parallel", unused=("chunk_size",)),
    bound=scan_bound,
    rule=SCAN_RULE,
    statement="the parallel (associative) scan equals the selective scan's recurrence, for every tree",
    oracle="mamba.selective_scan.recurrent",
    oracle_drop=TREE_ARGS,
    data_args=SCAN_DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (balanced tree, D=16, N=16)", SWEEP_T,
                  lambda T, rng: {**without(_scan_sweep_args(T, rng), CHUNK_ARGS), "tree": "balanced"}),),
))

register_form(Form(
    key="mamba.selective_scan.chunked",
    fn=ref.selective_scan_chunked,
    inputs=for_form(selective_scan_inputs, "chunked", unused=("tree",)),
    bound=scan_bound,
    rule=SCAN_RULE,
    statement="the chunked selective scan (closed form per chunk, state passed on) equals the recurrence",
    oracle="mamba.selective_scan.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=SCAN_DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (chunks of 64, D=16, N=16)", SWEEP_T, lambda T, rng: _scan_sweep_args(T, rng)),
            Sweep("chunk_size", "chunk size (T=256, D=16, N=16)", SWEEP_CHUNK,
                  lambda c, rng: _scan_sweep_args(256, rng, chunk_size=c))),
))



def _with_scan_cotangents(draw, args: dict) -> dict:
    """``args`` (drawn with the final state returned) with the cotangents of the output and the
    final state, complex with a complex A."""
    rng = draw(generators())
    u, A = args["u"], np.asarray(args["A"])
    state = u.shape[:1] + u.shape[2:] + A.shape[1:]
    dS = rng.standard_normal(state) + (1j * rng.standard_normal(state) if np.iscomplexobj(A) else 0)
    return {**without(args, ("return_state", "tree")), "cotangent": rng.standard_normal(u.shape),
            "state_cotangent": dS}


@st.composite
def _scan_chunked_backward_inputs(draw):
    """The chunked form's arguments (any chunk size, every option) with the cotangents of the
    output and the final state."""
    return _with_scan_cotangents(draw, draw(for_form(selective_scan_inputs, "chunked", unused=("tree",))(
        return_state=True)))


def _scan_gradients(grads: dict) -> tuple:
    return tuple(np.asarray(grads[n]) if n in grads else np.zeros(0) for n in SCAN_GRADIENT_WRT)


register_claim(Claim(
    key="mamba.selective_scan.chunked_backward",
    statement="the selective scan's chunked backward (states recomputed from each chunk's starting state, the "
              "chunks visited last to first, the state's cotangent handed to the chunk before through "
              "exp(dt A)) equals the gradient of the recurrence, initial state included, for every chunk size",
    subject="mamba.selective_scan.chunked_vjp",
    default_impl=ref.selective_scan_chunked_vjp,
    relation=lambda vjp, args: (_scan_gradients(vjp(**args)),
                                _scan_gradients(selective_scan_vjp(**without(args, CHUNK_ARGS)))),
    inputs=_scan_chunked_backward_inputs,
    bound=scan_grad_bound,
    rule=SCAN_GRADIENT_RULE,
    outputs=tuple(f"d{n}" for n in SCAN_GRADIENT_WRT),
))


@st.composite
def _scan_gradient_continuation_inputs(draw):
    """The recurrence's arguments with an initial state, T 2..8, and both cotangents."""
    return _with_scan_cotangents(draw, draw(SCAN_RECURRENT_INPUTS(seq_len=st.integers(2, 8), initial_state=True,
                                                                  return_state=True)))


def _scan_gradient_continuation(vjp, args: dict) -> tuple:
    timed = ("u", "delta", "z", "cotangent") + tuple(n for n in ("B", "C") if np.ndim(args[n]) > 2)
    return gradient_continuation(vjp, ref.selective_scan_recurrent, args, timed, SCAN_GRADIENT_WRT)


register_claim(Claim(
    key="mamba.selective_scan.gradient_continuation",
    statement="the selective scan's gradients continue through the state: a backward through u2 from u1's final "
              "state, whose initial-state gradient is u1's state cotangent, then through u1, equals one backward "
              "through [u1; u2], at every split (shared parameters' gradients summed over the two parts)",
    subject="mamba.selective_scan.vjp",
    default_impl=selective_scan_vjp,
    relation=_scan_gradient_continuation,
    inputs=_scan_gradient_continuation_inputs,
    bound=unstacked(scan_grad_bound),
    rule=SCAN_GRADIENT_RULE,
    outputs=tuple(f"d{n}" for n in SCAN_GRADIENT_WRT),
))

SSD_DATA = ("x", "dt", "B", "C")

register_form(Form(
    key="mamba.ssd.recurrent",
    fn=ref.ssd_recurrent,
    inputs=for_form(ssd_inputs, "recurrent", unused=("chunk_size",)),
    bound=ssd_bound,
    rule=SSD_RULE,
    statement="Mamba-2's SSD, the definition: h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T, y_t = h_t C_t",
    plain=ssd_plain,
    magnitude=ssd_magnitude,
    magnitude_rule="each position's m_t, the SSD run on magnitudes, plus float32's ulp at max sum_{s<=t} |dt_s A| "
                   "m_t (the decays' exponents; state: the same with the magnitudes' state)",
    data_args=SSD_DATA,
    outputs=("out", "state"),
))

SSD_GRADIENT_WRT = ("x", "dt", "A", "B", "C", "initial_state")


def _ssd_grad_magnitudes(args: dict) -> dict:
    """``ssd_vjp`` on magnitudes: GLA's VJP (q = |C|, k = |B|, v = |dt x|, the same decays) on
    the cotangents' and the initial state's sizes, then the chain rule with |x|, |dt|, |A|; every
    term positive, so each is an upper bound on the terms its gradient sums."""
    x, dt, A = np.abs(args["x"]), np.abs(args["dt"]), np.asarray(args["A"], dtype=np.float64)
    batch, T, H, P = x.shape
    G = np.shape(args["B"])[2]
    r = H // G
    h0, dh = args.get("initial_state"), args.get("state_cotangent")
    grads = gla_vjp(np.repeat(np.abs(args["C"]), r, axis=2), np.repeat(np.abs(args["B"]), r, axis=2),
                    dt[..., None] * x, args["dt"] * A, cotangent=np.abs(args["cotangent"]),
                    state_cotangent=None if dh is None else np.swapaxes(np.abs(dh), -1, -2), scale=1.0,
                    initial_state=None if h0 is None else np.swapaxes(np.abs(h0), -1, -2))
    dv, dg = grads["v"], grads["g"]
    return {"x": dt[..., None] * dv, "dt": (x * dv).sum(axis=-1) + np.abs(A) * dg, "A": (dt * dg).sum(axis=(0, 1)),
            "B": grads["k"].reshape(batch, T, G, r, -1).sum(axis=3), "C": grads["q"].reshape(batch, T, G, r, -1).sum(axis=3),
            "initial_state": np.swapaxes(grads["initial_state"], -1, -2)}


def ssd_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of SSD's gradients: GLA's (sums over
    at most T steps of products of N or P terms, decays within T u (1 + Lambda) of exact) with the
    chain rule's products and sums after it, 4 (T + N + P + 8) eps (1 + Lambda) M, M the VJP on
    magnitudes (``_ssd_grad_magnitudes``); per time position for x, dt, B and C, one value for A
    and the initial state."""
    magnitudes = _ssd_grad_magnitudes(args)
    T, P, N = np.shape(args["x"])[1], np.shape(args["x"])[3], np.shape(args["B"])[3]
    Lambda = cumulative_max(np.abs(args["dt"]) * np.abs(args["A"])).max(initial=0.0)
    factor = 4 * (T + N + P + 8) * 2 * U64 * (1 + Lambda)
    return tuple(factor * (per_position(magnitudes[name]) if name in SSD_DATA else magnitudes[name].max())
                 for name in SSD_GRADIENT_WRT)


SSD_GRADIENT_RULE = ("derived float64 bound: 4(T+N+P+8) eps (1 + max sum_t |dt_t A|) M, M the VJP on magnitudes "
                     "(GLA's on |C|, |B|, |dt x| and the cotangents' sizes, then the chain rule on |x|, |dt|, |A|), "
                     "per position (one value for A and the initial state)")


def ssd_grad_plain(args: dict, dtype) -> tuple:
    """The definition's backward in ``dtype`` (``ssd_vjp_in_dtype``), in ``wrt``'s order."""
    grads = ref.ssd_vjp_in_dtype(**without(args, ("return_state",)), dtype=dtype)
    return tuple(grads[name] for name in SSD_GRADIENT_WRT)


def ssd_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale: the bound's M per position (one value for A and the initial
    state) times 1 + max sum_t |dt_t A| (the decays' exponents, formed in float32)."""
    magnitudes = _ssd_grad_magnitudes(args)
    exponent = 1 + cumulative_max(np.abs(args["dt"]) * np.abs(args["A"])).max(initial=0.0)
    return tuple(exponent * (per_position(magnitudes[name]) if name in SSD_DATA else magnitudes[name].max())
                 for name in SSD_GRADIENT_WRT)


def ssd_recurrent_vjp(**args) -> dict:
    """The gradient oracle of ``mamba.ssd.recurrent``: the form's arguments and the cotangents of
    its outputs (the last state's when ``return_state``)."""
    return ssd_vjp(**without(args, ("return_state",)))


register_gradient(Gradient(
    form="mamba.ssd.recurrent",
    vjp=ssd_recurrent_vjp,
    wrt=SSD_GRADIENT_WRT,
    cotangents=("cotangent", "state_cotangent"),
    bound=ssd_grad_bound,
    rule=SSD_GRADIENT_RULE,
    axes=(("batch", "time", "head", "channel"), ("batch", "time", "head"), ("head",), ("batch", "time", "group", "state"),
          ("batch", "time", "group", "state"), ("batch", "head", "channel", "state")),
    plain=ssd_grad_plain,
    magnitude=ssd_grad_magnitude,
))

@st.composite
def _ssd_chunked_backward_inputs(draw):
    """The chunked form's arguments (any chunk size, an initial state or not) with the cotangents
    of the output and the final state."""
    args = draw(SSD_CHUNKED_INPUTS(return_state=True))
    rng = draw(generators())
    return {**without(args, ("return_state",)), "cotangent": rng.standard_normal(args["x"].shape),
            "state_cotangent": rng.standard_normal(args["x"].shape[:1] + args["x"].shape[2:] + args["B"].shape[3:])}


register_claim(Claim(
    key="mamba.ssd.chunked_backward",
    statement="SSD's chunked backward (the chunks visited last to first, the state's cotangent handed to the chunk "
              "before through exp(sum dt A)) equals the gradient of the recurrence, initial state included, for "
              "every chunk size",
    subject="mamba.ssd.chunked_vjp",
    default_impl=ssd_chunked_vjp,
    relation=lambda vjp, args: (tuple(vjp(**args)[n] for n in SSD_GRADIENT_WRT),
                                tuple(ssd_vjp(**without(args, CHUNK_ARGS))[n] for n in SSD_GRADIENT_WRT)),
    inputs=_ssd_chunked_backward_inputs,
    bound=ssd_grad_bound,
    rule=SSD_GRADIENT_RULE,
    outputs=tuple(f"d{n}" for n in SSD_GRADIENT_WRT),
))

register_form(Form(
    key="mamba.ssd.quadratic",
    fn=ref.ssd_quadratic,
    inputs=for_form(ssd_inputs, "quadratic", unused=("chunk_size", "initial_state", "return_state")),
    bound=ssd_bound,
    rule=SSD_RULE,
    statement="SSD's quadratic (masked attention) form (L o C B^T)(dt X) equals its recurrence",
    oracle="mamba.ssd.recurrent",
    data_args=SSD_DATA,
    sweeps=(Sweep("T", "sequence length T (H=4, P=64, N=16)", SWEEP_T,
                  lambda T, rng: without(_ssd_sweep_args(T, rng), ("chunk_size", "initial_state", "return_state"))),),
))

register_form(Form(
    key="mamba.ssd.chunked",
    fn=ref.ssd_chunked,
    inputs=SSD_CHUNKED_INPUTS,
    bound=ssd_bound,
    rule=SSD_RULE,
    statement="SSD's chunked algorithm (ssd_minimal_discrete's four steps) equals its recurrence, every chunk size",
    oracle="mamba.ssd.recurrent",
    oracle_drop=CHUNK_ARGS,
    data_args=SSD_DATA,
    outputs=("out", "state"),
    sweeps=(Sweep("T", "sequence length T (chunks of 64, H=4, P=64, N=16)", SWEEP_T, lambda T, rng: _ssd_sweep_args(T, rng)),
            Sweep("chunk_size", "chunk size (T=256, H=4, P=64, N=16)", SWEEP_CHUNK,
                  lambda c, rng: _ssd_sweep_args(256, rng, chunk_size=c))),
))


# ----------------------------------------------------------------------------- claims: state continuation

def _scan_timed(args: dict) -> tuple:
    return ("u", "delta", "z") + tuple(name for name in ("B", "C") if np.ndim(args[name]) > 2)


register_claim(Claim(
    key="mamba.selective_scan.continuation",
    statement="the selective scan continues from its returned state: [x1; x2] equals x1 then x2 from x1's state, "
              "at every split point",
    subject="mamba.selective_scan.chunked",
    default_impl=ref.selective_scan_chunked,
    relation=lambda impl, args: continuation(impl, args, _scan_timed(args)),
    inputs=lambda: selective_scan_inputs(form="chunked", seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(scan_bound),
    rule=SCAN_RULE,
    outputs=("out", "state"),
))

register_claim(Claim(
    key="mamba.ssd.continuation",
    statement="SSD continues from its returned state: [x1; x2] equals x1 then x2 from x1's state, at every split",
    subject="mamba.ssd.chunked",
    default_impl=ref.ssd_chunked,
    relation=lambda impl, args: continuation(impl, args, ("x", "dt", "B", "C")),
    inputs=lambda: ssd_inputs(form="chunked", seq_len=st.integers(2, 8), return_state=True),
    bound=unstacked(ssd_bound),
    rule=SSD_RULE,
    outputs=("out", "state"),
))


# ----------------------------------------------------------------------------- claims: decoding steps

def _scan_steps(impl, args: dict) -> tuple:
    """T calls of the step function (time-invariant B, C passed as G = D groups, as its
    docstring says) against one recurrent scan."""
    full = ref.selective_scan_recurrent(**{**without(args, ("return_state",)), "return_state": True})
    u = args["u"]
    batch, T, _ = u.shape

    def at(M, t):
        M = np.asarray(M)
        return np.broadcast_to(M, (batch,) + M.shape) if M.ndim == 2 else M[:, t]

    state, ys = args["initial_state"], []
    for t in range(T):
        y, state = impl(u[:, t], args["delta"][:, t], args["A"], at(args["B"], t), at(args["C"], t), args["D"],
                        None if args["z"] is None else args["z"][:, t], state=state,
                        delta_bias=args["delta_bias"], delta_softplus=args["delta_softplus"])
        ys.append(np.asarray(y))
    return (np.stack(ys, axis=1), state), full


register_claim(Claim(
    key="mamba.selective_scan.step",
    statement="T decoding steps (selective_scan_step, selective_state_update's reference) equal one scan",
    subject="mamba.selective_scan.step",
    default_impl=ref.selective_scan_step,
    relation=_scan_steps,
    inputs=lambda: selective_scan_inputs(form="recurrent", return_state=True),
    bound=scan_bound,
    rule=SCAN_RULE,
    outputs=("out", "state"),
))


# ----------------------------------------------------------------------------- claims: the scan operator

def _associativity(impl, args: dict) -> tuple:
    e1, e2, e3 = ((fractions(args[f"a{i}"], args["denominator"]), fractions(args[f"b{i}"], args["denominator"]))
                  for i in (1, 2, 3))
    left = impl(impl(e1, e2), e3)
    right = impl(e1, impl(e2, e3))
    (a1, b1), (a2, b2), (a3, b3) = e1, e2, e3
    composed = (a1 * a2 * a3, a3 * (a2 * b1 + b2) + b3)  # x -> a3 (a2 (a1 x + b1) + b2) + b3
    lhs = tuple(exact_difference(got, want) for got, want in zip(left + right, composed + composed))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="mamba.scan.associative",
    statement="scan_combine is associative, exactly: both bracketings of three steps equal the composed "
              "affine step x -> a3 (a2 (a1 x + b1) + b2) + b3",
    subject="mamba.scan_combine",
    default_impl=ref.scan_combine,
    relation=_associativity,
    inputs=scan_element_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness=EXACT,
    outputs=("(e1 e2) e3: a", "(e1 e2) e3: b", "e1 (e2 e3): a", "e1 (e2 e3): b"),
))


def _tree_shapes(impl, args: dict) -> tuple:
    return (impl(**{**args, "tree": "balanced"}), impl(**{**args, "tree": "random"}))


register_claim(Claim(
    key="mamba.scan.tree_shape",
    statement="the parallel selective scan gives the same result for a balanced and for random trees",
    subject="mamba.selective_scan.parallel",
    default_impl=ref.selective_scan_parallel,
    relation=_tree_shapes,
    inputs=lambda: selective_scan_inputs(form="parallel", seq_len=st.integers(3, 10)),
    bound=scan_bound,
    rule=SCAN_RULE,
    outputs=("out", "state"),
))


# ----------------------------------------------------------------------------- claims: SSD

def rational_ssd(args: dict) -> dict:
    """SSD keyword arguments in Fractions from ``rational_ssd_inputs``: decays given, A=None."""
    den = args["denominator"]
    h0 = args["initial_state"]
    return {"x": fractions(args["x"], den), "dt": fractions(args["dt"], den), "A": None,
            "B": fractions(args["B"], den), "C": fractions(args["C"], den),
            "decay": fractions(args["decay"], args["decay_denominator"]),
            "initial_state": None if h0 is None else fractions(h0, den)}


def _ssd_exact(impl, args: dict) -> tuple:
    kwargs = rational_ssd(args)
    want, want_state = ref.ssd_recurrent(**kwargs, return_state=True)
    got, got_state = impl(**kwargs, chunk_size=args["chunk_size"], return_state=True)
    from_zero = without(kwargs, ("initial_state",))
    lhs = (exact_difference(got, want), exact_difference(ref.ssd_quadratic(**from_zero), ref.ssd_recurrent(**from_zero)),
           exact_difference(got_state, want_state))
    return lhs, tuple(np.zeros(d.shape) for d in lhs)


register_claim(Claim(
    key="mamba.ssd.exact",
    statement="with rational decays, SSD's chunked, quadratic and recurrent forms are exactly equal "
              "(outputs and final state, every chunk size)",
    subject="mamba.ssd.chunked",
    default_impl=ref.ssd_chunked,
    relation=_ssd_exact,
    inputs=rational_ssd_inputs,
    bound=None,
    rule="exact equality on Fractions",
    exactness=EXACT,
    outputs=("chunked - recurrent", "quadratic - recurrent", "state"),
))


def _ssd_as_selective_scan(impl, args: dict) -> tuple:
    """SSD is the selective scan over D = H P channels (d = h P + p) with u = x, delta = dt and
    A[d, n] = A[h] repeated over P and N, B and C as G groups (channel d reads group
    d // (D / G) = h // (H / G), its head's); states (B, D, N) = (B, H, P, N)."""
    x, dt, A = args["x"], args["dt"], args["A"]
    batch, T, H, P = x.shape
    N = args["B"].shape[-1]
    h0 = args.get("initial_state")
    out, state = ref.selective_scan_recurrent(
        x.reshape(batch, T, H * P), np.repeat(dt, P, axis=2), np.repeat(A, P)[:, None] * np.ones(N),
        args["B"], args["C"], initial_state=None if h0 is None else h0.reshape(batch, H * P, N), return_state=True)
    rhs = (out.reshape(batch, T, H, P), state.reshape(batch, H, P, N))
    return impl(**args), rhs if args.get("return_state") else rhs[0]


register_claim(Claim(
    key="mamba.ssd.selective_scan",
    statement="SSD equals Mamba's selective scan with A repeated over the head's P channels and N states",
    subject="mamba.ssd.recurrent",
    default_impl=ref.ssd_recurrent,
    relation=_ssd_as_selective_scan,
    inputs=lambda: ssd_inputs(form="recurrent"),
    bound=ssd_bound,
    rule=SSD_RULE,
    outputs=("out", "state"),
))


def gated_linear_attention(q, k, v, log_decay):
    """Simple gated linear attention in its parallel form (Yang et al. 2023, "Gated Linear
    Attention"; scalar gate per head and step), q, k (B, T, H, N), v (B, T, H, P), log_decay (B, T, H):

        o_t = sum_{s <= t} exp(sum_{s < r <= t} log_decay_r) (q_t . k_s) v_s

    with the decays exp(G_t - G_s) from the prefix sums G of log_decay (masked before the exp)."""
    G = np.cumsum(log_decay, axis=1)  # (B, T, H)
    T = G.shape[1]
    visible = np.tril(np.ones((T, T), bool))[:, :, None]  # (t, s, 1)
    exponent = np.where(visible, G[:, :, None, :] - G[:, None, :, :], -np.inf)  # (B, t, s, H)
    return np.einsum("bthn,bshn,btsh,bshp->bthp", q, k, np.exp(exponent), v)


def _ssd_as_gla(impl, args: dict) -> tuple:
    H = args["x"].shape[2]
    per_head = lambda M: np.repeat(M, H // M.shape[2], axis=2)  # noqa: E731
    gla = gated_linear_attention(per_head(args["C"]), per_head(args["B"]), args["x"] * args["dt"][..., None],
                                 args["A"] * args["dt"])
    return (impl(**args),), (gla,)


register_claim(Claim(
    key="mamba.ssd.gated_linear_attention",
    statement="SSD equals simple gated linear attention with q = C, k = B, v = dt x and log-decay dt A",
    subject="mamba.ssd.quadratic",
    default_impl=ref.ssd_quadratic,
    relation=_ssd_as_gla,
    inputs=lambda: ssd_inputs(form="quadratic"),
    bound=ssd_bound,
    rule=SSD_RULE + " (the prefix-sum decays exp(G_t - G_s) are within it: their exponent's error is u max|G|)",
))


def _large_decays(impl, args: dict) -> tuple:
    want = ref.ssd_recurrent(**without(args, CHUNK_ARGS))
    with np.errstate(over="ignore", invalid="ignore"):
        chunked = impl(**args)
        quadratic = ref.ssd_quadratic(**without(args, CHUNK_ARGS + ("initial_state", "return_state")))
    return (chunked, quadratic), (want, want)


register_claim(Claim(
    key="mamba.ssd.large_decay_finite",
    statement="with |dt A| up to 1e4 per step every SSD form stays finite and equal (segment sums are masked "
              "before the exp; mamba issues #352, #558)",
    subject="mamba.ssd.chunked",
    default_impl=ref.ssd_chunked,
    relation=_large_decays,
    inputs=lambda: ssd_inputs(form="chunked", A_scale=st.sampled_from([1e3, 1e4]), initial_state=False,
                              return_state=False),
    bound=lambda args, expected: ssd_bound(args, expected[:1]) + ssd_bound(args, expected[:1]),
    rule=SSD_RULE,
    outputs=("chunked", "quadratic"),
))


# ----------------------------------------------------------------------------- GPU implementations

def _scan_numba_inputs(simulated: bool):
    """Real A only. Simulated: B=1, T <= 10 (chunks of 4), D <= 4, N <= 4; on a GPU: T <= 200,
    D <= 64, N <= 16 (chunks of 32, 64 channels per block)."""
    tiny = dict(batch=1, seq_len=st.integers(1, 10), channels=st.integers(1, 4), state_dim=st.integers(1, 4))
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 200), channels=st.integers(1, 64),
                    state_dim=st.integers(1, 16))
    return SCAN_RECURRENT_INPUTS(complex_A=False, **(tiny if simulated else moderate))


def _cupy_ssd_inputs(simulated: bool):
    """A given (no ``decay=``: the form's strategy never draws it). On NumPy the form's tiny
    sizes (T <= 10, every chunk size 1..T+1); on a GPU T <= 96, P <= 16, N <= 16, H <= 4."""
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 96), heads=st.integers(1, 4),
                    head_dim=st.integers(1, 16), state_dim=st.integers(1, 16))
    return SSD_CHUNKED_INPUTS(**(moderate if where("cupy") == "gpu" else {}))


register_implementation(Implementation(
    name="numba_cuda.selective_scan",
    form="mamba.selective_scan.recurrent",
    target="scan_numba:selective_scan",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_scan_numba_inputs,
))

register_implementation(Implementation(
    name="cupy.ssd_chunked",
    form="mamba.ssd.chunked",
    target="ssd_cupy:ssd_chunked",
    runtime="cupy",
    dtypes=("float32", "float16"),
    inputs=_cupy_ssd_inputs,
))
