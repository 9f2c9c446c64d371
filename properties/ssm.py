"""Strategies for time-invariant state space models: LTI systems, convolutions, S4 and S4D kernels.

Sizes are tiny (T <= 12, Dch <= 3, N <= 6) so an example runs in milliseconds, but for the
``size`` option (``arrays.SIZES``) of the forms' strategies: "large" draws lengths 15..257 around
multiples of 16 (channels and states stay small), "default" a large length in about 30 draws of
100; the exact claim's ``rational_lti_inputs`` stays small. Every system is
stable: a discrete ``Abar`` has spectral radius < 1, a continuous ``A`` has eigenvalues with
negative real part. As in :mod:`seqcheck.properties.arrays`, values come from a NumPy Generator
seeded by a drawn integer, and Hypothesis shrinks the seed, the kind of system and every size.
Every keyword takes a strategy or a fixed value, e.g. ``lti_inputs(state_size=4, skip=False)``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import fixed_or, generators, lengths, random_arrays, sized, tiers
from seqcheck.reference.ssm import discretize, dplr_from_legs, hippo_legs, s4d_init_inv, s4d_init_lin

SYSTEM_KINDS = ("radius", "diagonal", "zoh", "hippo")
"""radius: Gaussian Abar scaled to spectral radius 0.5, 0.9 or 0.99 (non-normal, transient growth);
diagonal: diag(U(-0.99, 0.99)); zoh: a random stable continuous system discretised by ZOH;
hippo: HiPPO-LegS discretised by the bilinear transform (S4's system before diagonalisation)."""

DPLR_KINDS = ("random", "hippo", "s4d_lin", "s4d_inv")
"""random: Re Lambda in [-1, -0.1], Im Lambda in [0, pi n), P and Q independent (Q != P);
hippo: ``dplr_from_legs(2n)`` with Q = P (S4's LegS initialisation); s4d_lin / s4d_inv: S4D's
diagonal initialisations with a small random rank-1 term, Q = P."""

S4D_INITS = ("lin", "inv", "random")


def stable_continuous(rng: np.random.Generator, n: int) -> np.ndarray:
    """A (n, n) whose eigenvalues have real part in [-1, -0.1]: Gaussian / sqrt(n), shifted."""
    G = rng.standard_normal((n, n)) / np.sqrt(n)
    abscissa = np.linalg.eigvals(G).real.max()
    return G - (abscissa + rng.uniform(0.1, 1.0)) * np.eye(n)


def stable_discrete(rng: np.random.Generator, kind: str, channels: int, n: int) -> tuple:
    """(Abar (channels, n, n), Bbar (channels, n)) of ``kind`` (see SYSTEM_KINDS)."""
    Abar, Bbar = np.empty((channels, n, n)), rng.standard_normal((channels, n))
    for d in range(channels):
        if kind == "radius":
            G = rng.standard_normal((n, n))
            Abar[d] = G * rng.choice([0.5, 0.9, 0.99]) / np.abs(np.linalg.eigvals(G)).max()
        elif kind == "diagonal":
            Abar[d] = np.diag(rng.uniform(-0.99, 0.99, n))
        elif kind == "zoh":
            Abar[d], Bbar[d] = discretize(stable_continuous(rng, n), Bbar[d], rng.choice([0.1, 0.5]), "zoh")
        elif kind == "hippo":
            A, B = hippo_legs(n)
            Abar[d], Bbar[d] = discretize(A, B, rng.choice([0.05, 0.2]), "bilinear")
        else:
            raise ValueError(f"kind: expected one of {SYSTEM_KINDS}, got {kind!r}")
    return Abar, Bbar


@st.composite
def lti_inputs(draw, *, size="default", batch=st.integers(1, 2), seq_len=lengths(12), channels=st.integers(1, 3),
               state_size=st.integers(1, 6), system=st.sampled_from(SYSTEM_KINDS), shared=st.booleans(),
               skip=st.booleans(), initial_state=st.booleans()):
    """Keyword arguments of ``lti_recurrent``: u (B,T,Dch), a stable Abar ((N,N) when ``shared``,
    else (Dch,N,N)), Bbar and C (Dch,N), D (Dch,) or None (``skip``), and initial_state (B,Dch,N)
    or None; ``initial_state=None`` leaves the argument out (for the convolution forms).

    Options:
        size: size tier of the length: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        channels: channels Dch.
        state_size: state size N.
        system: kind of stable system: "radius", "diagonal", "zoh" or "hippo" (SYSTEM_KINDS).
        shared: whether all channels share one Abar (N, N).
        skip: whether to draw the skip D (Dch,), else None.
        initial_state: whether to draw an initial state (B, Dch, N), else None.
    """
    tier = draw(tiers(size))
    B, T, Dch, N = (draw(sized(s, tier)) for s in (batch, seq_len, channels, state_size))
    rng = draw(generators())
    kind, is_shared = draw(fixed_or(system)), draw(fixed_or(shared))
    Abar, Bbar = stable_discrete(rng, kind, 1 if is_shared else Dch, N)
    if is_shared:
        Abar, Bbar = Abar[0], np.repeat(Bbar, Dch, axis=0)
    args = {"u": draw(random_arrays({"u": (B, T, Dch)}))["u"], "Abar": Abar, "Bbar": Bbar,
            "C": rng.standard_normal((Dch, N)), "D": rng.standard_normal(Dch) if draw(fixed_or(skip)) else None}
    if initial_state is not None:
        args["initial_state"] = rng.standard_normal((B, Dch, N)) if draw(fixed_or(initial_state)) else None
    return args


def lti_conv_inputs(*, size="default", batch=st.integers(1, 2), seq_len=lengths(12), channels=st.integers(1, 3),
                    state_size=st.integers(1, 6), system=st.sampled_from(SYSTEM_KINDS), shared=st.booleans(),
                    skip=st.booleans()):
    """``lti_inputs`` without an initial state: the arguments of the convolution forms.

    Options:
        size: size tier of the length: "small", "default" or "large".
        batch: batch size B.
        seq_len: sequence length T.
        channels: channels Dch.
        state_size: state size N.
        system: kind of stable system: "radius", "diagonal", "zoh" or "hippo" (SYSTEM_KINDS).
        shared: whether all channels share one Abar (N, N).
        skip: whether to draw the skip D (Dch,), else None.
    """
    return lti_inputs(size=size, batch=batch, seq_len=seq_len, channels=channels, state_size=state_size,
                      system=system, shared=shared, skip=skip, initial_state=None)


@st.composite
def continuation_inputs(draw, *, seq_len=st.integers(2, 12), initial_state=st.booleans()):
    """``lti_inputs`` with T >= 2 and ``cuts``: a non-empty sorted set of split points in 1..T-1
    (one cut is a split [u1; u2]; every point is T single steps)."""
    args = draw(lti_inputs(seq_len=seq_len, initial_state=initial_state))
    T = args["u"].shape[1]
    cuts = draw(st.sets(st.integers(1, T - 1), min_size=1, max_size=T - 1) | st.just(set(range(1, T))))
    return {**args, "cuts": tuple(sorted(cuts))}


@st.composite
def conv_inputs(draw, *, size="default", batch=st.integers(1, 2), seq_len=lengths(12), channels=st.integers(1, 3),
                kernel_len=None, skip=st.booleans()):
    """Keyword arguments of ``causal_conv`` / ``fft_conv``: u (B,T,Dch), K (Dch,L) with L from 1
    to T + 3 (longer than the signal included), D (Dch,) or None.

    Options:
        size: size tier of the length: "small", "default" or "large".
        batch: batch size B.
        seq_len: signal length T.
        channels: channels Dch.
        kernel_len: kernel length L (None: 1..T+3).
        skip: whether to draw the skip D (Dch,), else None.
    """
    tier = draw(tiers(size))
    B, T, Dch = draw(fixed_or(batch)), draw(sized(seq_len, tier)), draw(fixed_or(channels))
    L = draw(fixed_or(st.integers(1, T + 3) if kernel_len is None else kernel_len))
    arrays = draw(random_arrays({"u": (B, T, Dch), "K": (Dch, L), "D": (Dch,)}))
    return {"u": arrays["u"], "K": arrays["K"], "D": arrays["D"] if draw(fixed_or(skip)) else None}


@st.composite
def rational_lti_inputs(draw, *, channels=st.integers(1, 2), state_size=st.integers(1, 3),
                        length=st.integers(1, 6)):
    """A rational system as integers: Abar = Abar_num / den, Bbar = Bbar_num / den, C = C_num / den
    (ints in [-3, 3], den 1, 3 or 7, so float64 could not hold them) and a kernel length; integer
    arrays keep the reproducer exact."""
    Dch, N, L = draw(fixed_or(channels)), draw(fixed_or(state_size)), draw(fixed_or(length))
    rng = draw(generators())
    return {"Abar_num": rng.integers(-3, 4, (Dch, N, N)), "den": draw(st.sampled_from([1, 3, 7])),
            "Bbar_num": rng.integers(-3, 4, (Dch, N)), "C_num": rng.integers(-3, 4, (Dch, N)), "length": L}


def _complex(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


@st.composite
def dplr_inputs(draw, *, size="default", channels=st.integers(1, 2), modes=st.integers(1, 3), length=lengths(12),
                kind=st.sampled_from(DPLR_KINDS)):
    """Keyword arguments of ``s4_dplr_kernel`` / ``s4_krylov_kernel``: Lambda, P, Q, B, C (H, n)
    complex (n modes stand for N = 2n), log_dt (H,) with dt in [0.01, 0.5], length L.

    Options:
        size: size tier of the kernel length: "small", "default" or "large".
        channels: channels H.
        modes: modes n (state size N = 2n).
        length: kernel length L.
        kind: initialisation: "random", "hippo", "s4d_lin" or "s4d_inv" (DPLR_KINDS).
    """
    tier = draw(tiers(size))
    H, n, L, which = draw(fixed_or(channels)), draw(fixed_or(modes)), draw(sized(length, tier)), draw(fixed_or(kind))
    rng = draw(generators())
    log_dt = np.log(rng.uniform(0.01, 0.5, H))
    if which == "random":
        Lambda = -rng.uniform(0.1, 1.0, (H, n)) + 1j * np.pi * rng.uniform(0, n, (H, n))
        P, Q = 0.5 * _complex(rng, H, n), 0.5 * _complex(rng, H, n)
        B = _complex(rng, H, n)
    elif which == "hippo":
        Lambda, P, B, _ = dplr_from_legs(2 * n)
        Lambda, P, B = (np.broadcast_to(x, (H, n)).copy() for x in (Lambda, P, B))
        Q = P
    elif which in ("s4d_lin", "s4d_inv"):
        Lambda = (s4d_init_lin if which == "s4d_lin" else s4d_init_inv)(H, 2 * n)
        P = Q = 0.3 * _complex(rng, H, n)
        B = _complex(rng, H, n)
    else:
        raise ValueError(f"kind: expected one of {DPLR_KINDS}, got {which!r}")
    return {"Lambda": Lambda, "P": P, "Q": Q, "B": B, "C": _complex(rng, H, n), "log_dt": log_dt, "length": L}


@st.composite
def s4d_inputs(draw, *, size="default", channels=st.integers(1, 2), modes=st.integers(1, 3), length=lengths(12),
               init=st.sampled_from(S4D_INITS), discretization=st.sampled_from(["zoh", "bilinear"]),
               input_matrix=st.booleans()):
    """Keyword arguments of ``s4d_kernel`` (conj_halving=True): log_dt (H,) with dt in
    [0.001, 0.5], A (H, n) from S4D-Lin, S4D-Inv or random with Re A in [-1, -0.1], B (H, n) or
    None (``input_matrix`` False: ones, as models/s4/s4d.py), C (H, n), length, discretization.

    Options:
        size: size tier of the kernel length: "small", "default" or "large".
        channels: channels H.
        modes: modes n (state size N = 2n).
        length: kernel length L.
        init: A's initialisation: "lin", "inv" or "random" (S4D_INITS).
        discretization: "zoh" or "bilinear".
        input_matrix: whether to draw B (H, n); False passes None (ones).
    """
    tier = draw(tiers(size))
    H, n, L = draw(fixed_or(channels)), draw(fixed_or(modes)), draw(sized(length, tier))
    rng = draw(generators())
    which = draw(fixed_or(init))
    if which == "lin":
        A = s4d_init_lin(H, 2 * n)
    elif which == "inv":
        A = s4d_init_inv(H, 2 * n)
    elif which == "random":
        A = -rng.uniform(0.1, 1.0, (H, n)) + 1j * rng.uniform(-3.0, 3.0, (H, n))
    else:
        raise ValueError(f"init: expected one of {S4D_INITS}, got {which!r}")
    return {"log_dt": np.log(rng.uniform(0.001, 0.5, H)), "A": A,
            "B": _complex(rng, H, n) if draw(fixed_or(input_matrix)) else None, "C": _complex(rng, H, n),
            "length": L, "discretization": draw(fixed_or(discretization))}


@st.composite
def discretize_inputs(draw, *, state_size=st.integers(1, 6), inputs=st.sampled_from([None, 1, 2]),
                      method=st.sampled_from(["forward_euler", "backward_euler", "bilinear", "gbt", "zoh"]),
                      step=st.sampled_from([0.01, 0.1, 0.5])):
    """Keyword arguments of ``discretize``: a stable A (N, N), B (N,) or (N, M), step, method and
    alpha (drawn in [0, 1] for "gbt", else None)."""
    N, M, which = draw(fixed_or(state_size)), draw(fixed_or(inputs)), draw(fixed_or(method))
    rng = draw(generators())
    return {"A": stable_continuous(rng, N), "B": rng.standard_normal((N,) if M is None else (N, M)),
            "step": draw(fixed_or(step)), "method": which,
            "alpha": draw(st.floats(0.0, 1.0)) if which == "gbt" else None}


@st.composite
def order_inputs(draw, *, state_size=st.integers(1, 4)):
    """A stable continuous system for the convergence-order claim: A (N, N), B (N,), the initial
    state x0 (N,) and a constant input level u; integrated to time 1 with steps 1/32, 1/64, 1/128."""
    N = draw(fixed_or(state_size))
    rng = draw(generators())
    return {"A": stable_continuous(rng, N), "B": rng.standard_normal(N), "x0": rng.standard_normal(N),
            "u": float(draw(st.sampled_from([0.0, 1.0, -2.5])))}
