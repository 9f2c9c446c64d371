"""Strategies for Mamba's selective scan and Mamba-2's SSD arguments, and the scan operator's.

Every keyword takes a strategy or a fixed value (``fixed_or``), so a kernel that supports less
narrows the inputs: ``selective_scan_inputs(complex_A=False, B_layout="shared", z=False)``.
Sizes follow ``size`` (``arrays.SIZES``): "small" is tiny (T 1..10, a few channels, heads and
states), so shrinking finds the smallest failing shape and every split point and chunk size of a
short sequence gets its turn; "large" draws T 15..257 around multiples of 16, 32 or 64 channels
(scan) or head dims 32..128 (SSD) and chunks near 16/32/64 (scan) or 16..256 (SSD); "default"
draws each size axis large in about 30 draws of 100. The exact claims' strategies stay small.

``form`` picks the arguments a form takes beyond the recurrence's own: "recurrent" (none),
"parallel" (``tree`` and an int ``rng`` seed), "chunked" (``chunk_size``, 1 to T + 1 unless
given) and, for SSD, "quadratic" (no ``initial_state`` and no ``return_state``).

Conventions (seqcheck.equiv.families.mamba): with a complex A, the selective scan's B, C and
states (``initial_state`` and the returned one) are complex128 arrays, as the references take them.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import (TILE_BLOCKS, blocks, fixed_or, generators, head_dims, lengths,
                                        random_arrays, sized, tiers)

LAYOUTS = ("invariant", "shared", "grouped")
"""B and C of the selective scan: "invariant" (D, N), "shared" (B, T, N) by all channels,
"grouped" (B, T, G, N) with G dividing D (channel d reads group d // (D / G))."""

TREES = ("balanced", "sequential", "random")

SCAN_CHUNKS = tuple(b for b in TILE_BLOCKS if b <= 65)
"""Large-tier chunks of the selective scan (its chunked reference holds a (B, D, N, L, L) matrix)."""

SSD_CHUNKS = TILE_BLOCKS + (255, 256, 257)

FORMS = ("recurrent", "parallel", "chunked", "quadratic")


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _check_form(form: str, allowed: tuple) -> None:
    if form not in allowed:
        raise ValueError(f"form: expected one of {allowed}, got {form!r}")


def _complex_if(rng, real: np.ndarray, is_complex: bool) -> np.ndarray:
    return real + 1j * rng.standard_normal(real.shape) if is_complex else real


@st.composite
def selective_scan_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    channels=head_dims(4, large=(32, 64)),
    state_dim=st.integers(1, 4),
    complex_A=st.booleans(),
    B_layout=st.sampled_from(LAYOUTS),
    C_layout=st.sampled_from(LAYOUTS),
    D=st.booleans(),
    z=st.booleans(),
    delta_bias=st.booleans(),
    delta_softplus=st.booleans(),
    A_scale=st.sampled_from([1.0, 10.0]),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
    tree=st.sampled_from(TREES),
):
    """Keyword arguments of the selective scan: u, delta, z (B, T, D); A (D, N); B, C per layout.

    ``complex_A``: A = -U(0.1, 1) A_scale + i N(0, 3^2), with complex B, C and initial state
    (S4D-Lin-like modes); else A = -U(0.1, 2) A_scale (Mamba's -exp(A_log)). ``delta``: U(0.01, 1)
    (positive, as after softplus) with delta_bias U(0, 0.5); with ``delta_softplus`` it is
    U(-3, 3), any sign. ``D``, ``z``, ``delta_bias``, ``initial_state``: whether to draw one
    (else None). ``A_scale`` multiplies A's real part: |dt A| up to 2 A_scale per step.

    Options:
        size: size tier of T, the channels and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        channels: channels D.
        state_dim: state size N.
        complex_A: whether A (and B, C, the state) is complex (S4D-Lin-like modes).
        B_layout: layout of B: "invariant" (D, N), "shared" (B, T, N) or "grouped" (B, T, G, N).
        C_layout: layout of C, as B_layout.
        D: whether to draw the skip D (D,), else None.
        z: whether to draw the gate z (B, T, D), else None.
        delta_bias: whether to draw a delta bias (D,), else None.
        delta_softplus: whether delta goes through softplus (then drawn with any sign).
        A_scale: factor on A's real part (|dt A| up to 2 A_scale per step).
        initial_state: whether to draw an initial state (B, D, N), else None.
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..65 near tiles).
        tree: the parallel scan's tree: "balanced", "sequential" or "random".
    """
    _check_form(form, ("recurrent", "parallel", "chunked"))
    tier = draw(tiers(size))
    Bt, T, Dch, N = (draw(sized(s, tier)) for s in (batch, seq_len, channels, state_dim))
    is_complex, scale = draw(fixed_or(complex_A)), draw(fixed_or(A_scale))
    layouts = {}
    for name, layout in (("B", B_layout), ("C", C_layout)):
        layouts[name] = draw(fixed_or(layout))
        if layouts[name] not in LAYOUTS:
            raise ValueError(f"{name}_layout: expected one of {LAYOUTS}, got {layouts[name]!r}")
    shapes = {"invariant": (Dch, N), "shared": (Bt, T, N)}
    groups = {name: draw(st.sampled_from(divisors(Dch))) for name in ("B", "C") if layouts[name] == "grouped"}
    arrays = draw(random_arrays({
        "u": (Bt, T, Dch), "z": (Bt, T, Dch),
        "B": shapes.get(layouts["B"], (Bt, T, groups.get("B"), N)),
        "C": shapes.get(layouts["C"], (Bt, T, groups.get("C"), N)),
    }))
    rng = draw(generators())
    softplus = draw(fixed_or(delta_softplus))
    if is_complex:
        A = -rng.uniform(0.1, 1.0, (Dch, N)) * scale + 3j * rng.standard_normal((Dch, N))
    else:
        A = -rng.uniform(0.1, 2.0, (Dch, N)) * scale
    args = {
        "u": arrays["u"],
        "delta": rng.uniform(-3.0, 3.0, (Bt, T, Dch)) if softplus else rng.uniform(0.01, 1.0, (Bt, T, Dch)),
        "A": A,
        "B": _complex_if(rng, arrays["B"], is_complex),
        "C": _complex_if(rng, arrays["C"], is_complex),
        "D": rng.standard_normal(Dch) if draw(fixed_or(D)) else None,
        "z": arrays["z"] if draw(fixed_or(z)) else None,
        "delta_bias": rng.uniform(0.0, 0.5, Dch) if draw(fixed_or(delta_bias)) else None,
        "delta_softplus": softplus,
        "initial_state": None,
        "return_state": draw(fixed_or(return_state)),
    }
    if draw(fixed_or(initial_state)):
        args["initial_state"] = _complex_if(rng, rng.standard_normal((Bt, Dch, N)), is_complex)
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T, choices=SCAN_CHUNKS, whole=False) if chunk_size is None
                                           else chunk_size))
    if form == "parallel":
        args["tree"] = draw(fixed_or(tree))
        args["rng"] = draw(st.integers(0, 2**32 - 1))
    return args


@st.composite
def ssd_inputs(
    draw,
    *,
    form="recurrent",
    size="default",
    batch=st.integers(1, 2),
    seq_len=lengths(10),
    heads=st.integers(1, 4),
    head_dim=head_dims(3),
    state_dim=st.integers(1, 4),
    groups=None,
    A_scale=st.sampled_from([1.0, 10.0]),
    initial_state=st.booleans(),
    return_state=st.booleans(),
    chunk_size=None,
):
    """Keyword arguments of SSD: x (B, T, H, P), dt (B, T, H), A (H,), B and C (B, T, G, N).

    dt is log-uniform in [1e-3, 1] (Mamba-2 initialises dt log-uniformly), A = -U(0.1, 1) A_scale,
    so |dt A| ranges over three decades up to A_scale. ``groups`` G divides H (drawn among the
    divisors unless given). "quadratic" takes no ``initial_state`` or ``return_state``.

    Options:
        size: size tier of T, the head dim and the chunk size: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        heads: heads H.
        head_dim: head dimension P of x.
        state_dim: state size N of B and C.
        groups: B/C groups G, dividing H (None: drawn among the divisors).
        A_scale: factor on A (|dt A| up to A_scale).
        initial_state: whether to draw an initial state (B, H, P, N), else None.
        return_state: whether to return the final state as well.
        chunk_size: chunk length (None: 1..T+1 up to 32 steps; beyond, 15..257 near tiles or T+1).
    """
    _check_form(form, ("recurrent", "quadratic", "chunked"))
    tier = draw(tiers(size))
    Bt, T, H, P, N = (draw(sized(s, tier)) for s in (batch, seq_len, heads, head_dim, state_dim))
    G = draw(fixed_or(st.sampled_from(divisors(H)) if groups is None else groups))
    arrays = draw(random_arrays({"x": (Bt, T, H, P), "B": (Bt, T, G, N), "C": (Bt, T, G, N)}))
    rng = draw(generators())
    args = {"x": arrays["x"], "dt": np.exp(rng.uniform(np.log(1e-3), 0.0, (Bt, T, H))),
            "A": -rng.uniform(0.1, 1.0, H) * draw(fixed_or(A_scale)), "B": arrays["B"], "C": arrays["C"]}
    if form != "quadratic":
        args["initial_state"] = rng.standard_normal((Bt, H, P, N)) if draw(fixed_or(initial_state)) else None
        args["return_state"] = draw(fixed_or(return_state))
    if form == "chunked":
        args["chunk_size"] = draw(fixed_or(blocks(T, choices=SSD_CHUNKS) if chunk_size is None else chunk_size))
    return args


def _small_integers(rng, shape, bound=4) -> np.ndarray:
    return rng.integers(-bound, bound + 1, shape).astype(np.float64)


@st.composite
def rational_ssd_inputs(
    draw,
    *,
    batch=st.integers(1, 2),
    seq_len=st.integers(1, 6),
    heads=st.integers(1, 2),
    head_dim=st.integers(1, 2),
    state_dim=st.integers(1, 2),
    initial_state=st.booleans(),
    chunk_size=None,
):
    """SSD on rationals, for the exact claims: x, dt, B, C, initial_state hold small integers
    (as float64) to be divided by ``denominator`` (1, 3 or 7); the decays are
    ``decay / decay_denominator``, integers from 0 to the denominator (2, 3 or 5): a_t in [0, 1],
    full resets (0) and no decay (1) included. dt is 1..3 over ``denominator``."""
    Bt, T, H, P, N = (draw(fixed_or(s)) for s in (batch, seq_len, heads, head_dim, state_dim))
    G = draw(st.sampled_from(divisors(H)))
    rng = draw(generators())
    den, decay_den = draw(st.sampled_from([1, 3, 7])), draw(st.sampled_from([2, 3, 5]))
    args = {"x": _small_integers(rng, (Bt, T, H, P)), "dt": rng.integers(1, 4, (Bt, T, H)).astype(np.float64),
            "B": _small_integers(rng, (Bt, T, G, N)), "C": _small_integers(rng, (Bt, T, G, N)),
            "decay": rng.integers(0, decay_den + 1, (Bt, T, H)).astype(np.float64),
            "initial_state": _small_integers(rng, (Bt, H, P, N)) if draw(fixed_or(initial_state)) else None,
            "denominator": den, "decay_denominator": decay_den}
    args["chunk_size"] = draw(fixed_or(st.integers(1, T + 1) if chunk_size is None else chunk_size))
    return args


@st.composite
def scan_element_inputs(draw, *, batch=st.integers(1, 2), width=st.integers(1, 4)):
    """Three scan elements (a_i, b_i), i = 1..3, each (B, W): small integers (float64) over
    ``denominator`` (1, 3 or 7), for exact rational checks of the scan operator."""
    shape = (draw(fixed_or(batch)), draw(fixed_or(width)))
    rng = draw(generators())
    args = {f"{name}{i}": _small_integers(rng, shape, 6) for i in (1, 2, 3) for name in ("a", "b")}
    args["denominator"] = draw(st.sampled_from([1, 3, 7]))
    return args
