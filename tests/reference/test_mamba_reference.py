"""Unit tests of the selective-scan and SSD references: against loop transcriptions of mamba's
references, form against form, at every split point and exactly on Fractions."""

import cmath
import math
from fractions import Fraction

import numpy as np
import pytest
from peers.mamba_selective_scan_ref import torch_selective_scan_ref
from scipy.special import expit

from seqcheck.reference.mamba import (
    associative_scan,
    rms_norm_gated,
    scan_combine,
    segprod,
    segsum,
    selective_scan_chunked,
    selective_scan_parallel,
    selective_scan_recurrent,
    selective_scan_step,
    ssd_chunked,
    ssd_quadratic,
    ssd_recurrent,
)

EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------- selective scan inputs

def make_scan(rng, *, batch=2, T=6, dim=4, N=3, b="shared", c="shared", cplx=False, D=False,
              z=False, bias=False, softplus=False):
    """Inputs in our layout. b / c: "invariant" (D, N), "shared" (B, T, N), "grouped" (B, T, 2, N)."""
    def coefficient(layout):
        shape = {"invariant": (dim, N), "shared": (batch, T, N), "grouped": (batch, T, 2, N)}[layout]
        m = rng.standard_normal(shape)
        return m + 1j * rng.standard_normal(shape) if cplx else m

    A = -rng.uniform(0.2, 2.0, (dim, N))
    args = dict(
        u=rng.standard_normal((batch, T, dim)),
        delta=rng.standard_normal((batch, T, dim)) if softplus else rng.uniform(0.05, 1.0, (batch, T, dim)),
        A=A + 1j * rng.standard_normal((dim, N)) if cplx else A,
        B=coefficient(b), C=coefficient(c),
        D=rng.standard_normal(dim) if D else None,
        z=rng.standard_normal((batch, T, dim)) if z else None,
    )
    kwargs = dict(delta_bias=rng.uniform(0, 0.5, dim) if bias else None, delta_softplus=softplus)
    return args, kwargs


CASES = {
    "shared": dict(),
    "invariant": dict(b="invariant", c="invariant"),
    "grouped-D-z": dict(b="grouped", c="shared", D=True, z=True),
    "grouped-softplus-bias": dict(b="grouped", c="grouped", bias=True, softplus=True),
    "complex-D-z": dict(b="shared", c="invariant", cplx=True, D=True, z=True),
    "complex-grouped-softplus": dict(b="grouped", c="grouped", cplx=True, bias=True, softplus=True),
}


def budget(args, kwargs, h0=None):
    """Per-position error budget: c (T + N) eps (1 + max |sum dt A|) times the magnitude of the terms
    summed, which is the scan of |u|, |B|, |C|, |D|, |h0| with |exp(dt A)| = exp(dt Re A)."""
    u, A = args["u"], args["A"]
    magnitude = selective_scan_recurrent(
        abs(u), args["delta"], A.real, abs(args["B"]), abs(args["C"]),
        None if args["D"] is None else abs(args["D"]), **kwargs,
        initial_state=None if h0 is None else abs(h0))
    if args["z"] is not None:
        magnitude = magnitude * abs(args["z"] * expit(args["z"]))
    dt = args["delta"] + (0 if kwargs["delta_bias"] is None else kwargs["delta_bias"])
    dt = np.logaddexp(0, dt) if kwargs["delta_softplus"] else dt
    log_decay = abs(np.cumsum(dt[..., None] * A.real, axis=1)).max()
    T, N = u.shape[1], A.shape[1]
    return 4 * (T + N + 4) * EPS * (1 + log_decay) * (2 if np.iscomplexobj(A) else 1) * magnitude


def assert_within(got, want, bound):
    err = np.abs(np.asarray(got) - np.asarray(want))
    assert np.all(err <= bound), f"worst error {err.max():.3e}, worst ratio {(err / bound).max():.2f}"


# ----------------------------------------------------------------------------- selective_scan_ref transcriptions

def naive_selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """selective_scan_ref, scalar by scalar, channels-first: u, delta, z (B, D, L); B, C (D, N),
    (B, N, L) or (B, G, N, L), complex values as complex numbers. Returns (out, last_state)."""
    batch, dim, L = u.shape
    N = A.shape[1]

    def coef(M, b, d, n, t):
        if M.ndim == 2:
            return M[d, n]
        if M.ndim == 3:
            return M[b, n, t]
        return M[b, d // (dim // M.shape[1]), n, t]

    out = np.zeros((batch, dim, L))
    last = np.zeros((batch, dim, N), dtype=complex)
    for b in range(batch):
        for d in range(dim):
            x = [0j] * N
            for t in range(L):
                dt = delta[b, d, t] + (0.0 if delta_bias is None else delta_bias[d])
                if delta_softplus and dt <= 20:
                    dt = math.log1p(math.exp(dt))
                y = 0j
                for n in range(N):
                    x[n] = cmath.exp(dt * A[d, n]) * x[n] + dt * coef(B, b, d, n, t) * u[b, d, t]
                    y += x[n] * coef(C, b, d, n, t)
                y = 2 * y.real if np.iscomplexobj(A) else y.real
                if D is not None:
                    y += u[b, d, t] * D[d]
                if z is not None:
                    y *= z[b, d, t] / (1 + math.exp(-z[b, d, t]))
                out[b, d, t] = y
            last[b, d] = x
    return out, last


def channels_first(M, *, interleave_complex=False):
    """Our (B, T, ...) coefficient to selective_scan_ref's: time last; complex as (re, im) pairs."""
    M = np.asarray(M)
    if M.ndim <= 2:  # (D,), (D, N): no time axis
        return M
    M = np.moveaxis(M, 1, -1)
    if interleave_complex and np.iscomplexobj(M):
        M = np.stack([M.real, M.imag], axis=-1).reshape(M.shape[:-1] + (2 * M.shape[-1],))
    return M


# ----------------------------------------------------------------------------- selective scan tests

@pytest.mark.parametrize("case", CASES)
def test_recurrent_matches_naive_selective_scan_ref(case):
    args, kwargs = make_scan(np.random.default_rng(1), **CASES[case])
    t = lambda a: None if a is None else np.moveaxis(a, 1, 2)  # noqa: E731  (B, T, D) -> (B, D, T)
    want, want_state = naive_selective_scan_ref(
        t(args["u"]), t(args["delta"]), args["A"], channels_first(args["B"]), channels_first(args["C"]),
        args["D"], t(args["z"]), **kwargs)
    got, state = selective_scan_recurrent(**args, **kwargs, return_state=True)
    bound = budget(args, kwargs)
    assert_within(np.moveaxis(got, 1, 2), want, np.moveaxis(bound, 1, 2))
    assert np.allclose(state, want_state, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("case", CASES)
def test_recurrent_matches_torch_port_of_selective_scan_ref(case):
    torch = pytest.importorskip("torch")
    args, kwargs = make_scan(np.random.default_rng(2), **CASES[case])
    tt = lambda a, **kw: None if a is None else torch.from_numpy(channels_first(a, **kw))  # noqa: E731
    want, want_state = torch_selective_scan_ref(
        tt(args["u"]), tt(args["delta"]), tt(args["A"]), tt(args["B"], interleave_complex=True),
        tt(args["C"], interleave_complex=True), tt(args["D"]), tt(args["z"]),
        delta_bias=tt(kwargs["delta_bias"]), delta_softplus=kwargs["delta_softplus"])
    got, state = selective_scan_recurrent(**args, **kwargs, return_state=True)
    assert_within(np.moveaxis(got, 1, 2), want.numpy(), np.moveaxis(budget(args, kwargs), 1, 2))
    assert np.allclose(state, want_state.numpy(), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("T", [1, 5])
@pytest.mark.parametrize("case", CASES)
def test_parallel_and_every_chunk_size_match_recurrent(case, T):
    rng = np.random.default_rng(3)
    args, kwargs = make_scan(rng, T=T, **CASES[case])
    h0 = rng.standard_normal((2, 4, 3)) * (1 + 1j if np.iscomplexobj(args["A"]) else 1)
    want, want_state = selective_scan_recurrent(**args, **kwargs, initial_state=h0, return_state=True)
    bound = budget(args, kwargs, h0)
    forms = [("parallel", lambda **kw: selective_scan_parallel(**kw)),
             ("parallel-random", lambda **kw: selective_scan_parallel(**kw, tree="random", rng=rng))]
    forms += [(f"chunk {c}", lambda c=c, **kw: selective_scan_chunked(**kw, chunk_size=c)) for c in range(1, T + 2)]
    for name, form in forms:
        got, state = form(**args, **kwargs, initial_state=h0, return_state=True)
        assert_within(got, want, bound)
        assert np.allclose(state, want_state, rtol=1e-12, atol=1e-13), name


@pytest.mark.parametrize("case", ["grouped-D-z", "complex-grouped-softplus"])
def test_state_continues_at_every_split(case):
    args, kwargs = make_scan(np.random.default_rng(4), T=6, **CASES[case])
    want, want_state = selective_scan_recurrent(**args, **kwargs, return_state=True)
    bound = budget(args, kwargs)

    def part(sl):  # the arguments with a time axis, sliced
        timed = {"u", "delta", "z"} | {k for k in ("B", "C") if args[k].ndim > 2}
        return {k: v[:, sl] if k in timed and v is not None else v for k, v in args.items()}

    forms = [selective_scan_recurrent, selective_scan_parallel,
             lambda *a, **kw: selective_scan_chunked(*a, **kw, chunk_size=4)]
    for form in forms:
        for s in range(1, 6):
            y1, h1 = form(**part(slice(None, s)), **kwargs, return_state=True)
            y2, h2 = form(**part(slice(s, None)), **kwargs, initial_state=h1, return_state=True)
            assert_within(np.concatenate([y1, y2], axis=1), want, bound)
            assert np.allclose(h2, want_state, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("case", CASES)
def test_single_steps_equal_one_scan(case):
    args, kwargs = make_scan(np.random.default_rng(5), **CASES[case])
    want, want_state = selective_scan_recurrent(**args, **kwargs, return_state=True)
    batch, T, dim = args["u"].shape

    def at(M, t):  # a time-invariant (D, N) coefficient goes in as G = D groups
        return np.broadcast_to(M, (batch,) + M.shape) if M.ndim == 2 else M[:, t]

    state, ys = None, []
    for t in range(T):
        y, state = selective_scan_step(
            args["u"][:, t], args["delta"][:, t], args["A"], at(args["B"], t), at(args["C"], t), args["D"],
            None if args["z"] is None else args["z"][:, t], state=state, **kwargs)
        ys.append(y)
    np.testing.assert_array_equal(np.stack(ys, axis=1), want)
    np.testing.assert_array_equal(state, want_state)


def test_inputs_are_not_mutated():
    args, kwargs = make_scan(np.random.default_rng(6), **CASES["grouped-D-z"])
    before = {k: None if v is None else v.copy() for k, v in args.items()}
    selective_scan_chunked(**args, **kwargs, chunk_size=4)
    selective_scan_parallel(**args, **kwargs)
    for k, v in before.items():
        np.testing.assert_array_equal(args[k], v)


def random_fractions(rng, shape, lo=-9, hi=10, den=7):
    return np.array([Fraction(int(n), int(d)) for n, d in zip(rng.integers(lo, hi, np.prod(shape, dtype=int)),
                                                                 rng.integers(1, den, np.prod(shape, dtype=int)))],
                    dtype=object).reshape(shape)


def test_scan_combine_is_associative_exactly():
    rng = np.random.default_rng(7)
    e1, e2, e3 = ((random_fractions(rng, (5,)), random_fractions(rng, (5,))) for _ in range(3))
    left = scan_combine(scan_combine(e1, e2), e3)
    right = scan_combine(e1, scan_combine(e2, e3))
    assert all((l == r).all() for l, r in zip(left, right))
    assert all(isinstance(v, Fraction) for v in left[1])


def test_associative_scan_is_independent_of_the_tree_exactly():
    rng = np.random.default_rng(8)
    a, b = random_fractions(rng, (2, 9, 3)), random_fractions(rng, (2, 9, 3))
    h, want = 0, []
    for t in range(9):
        h = a[:, t] * h + b[:, t]
        want.append(h)
    want = np.stack(want, axis=1)
    trees = [dict(tree="balanced"), dict(tree="sequential")]
    trees += [dict(tree="random", rng=np.random.default_rng(seed)) for seed in range(5)]
    for tree in trees:
        prod, states = associative_scan(a, b, **tree)
        assert (states == want).all(), tree
        assert (prod == np.cumprod(a, axis=1)).all(), tree


# ----------------------------------------------------------------------------- SSD

def make_ssd(rng, *, batch=2, T=7, H=4, P=2, G=2, N=3, A_scale=1.0):
    return dict(x=rng.standard_normal((batch, T, H, P)), dt=rng.uniform(0.05, 1.0, (batch, T, H)),
                A=-rng.uniform(0.2, 2.0, H) * A_scale, B=rng.standard_normal((batch, T, G, N)),
                C=rng.standard_normal((batch, T, G, N)))


def ssd_budget(args, h0=None):
    """c (T + N) eps (1 + max |sum dt A|) times the magnitude of the terms (the SSD of |.|)."""
    a = {k: abs(v) for k, v in args.items()} | dict(A=args["A"])
    magnitude = ssd_recurrent(**a, initial_state=None if h0 is None else abs(h0))
    T, N = args["x"].shape[1], args["B"].shape[-1]
    log_decay = abs(np.cumsum(args["dt"] * args["A"], axis=1)).max()
    return 4 * (T + N + 4) * EPS * (1 + log_decay) * magnitude


@pytest.mark.parametrize("T", [1, 2, 7])
def test_ssd_forms_agree_for_every_chunk_size(T):
    rng = np.random.default_rng(9)
    args = make_ssd(rng, T=T)
    h0 = rng.standard_normal((2, 4, 2, 3))
    want, want_state = ssd_recurrent(**args, initial_state=h0, return_state=True)
    assert_within(ssd_quadratic(**args), ssd_recurrent(**args), ssd_budget(args))
    for c in range(1, T + 2):
        got, state = ssd_chunked(**args, chunk_size=c, initial_state=h0, return_state=True)
        assert_within(got, want, ssd_budget(args, h0))
        assert np.allclose(state, want_state, rtol=1e-12, atol=1e-13), c


def test_ssd_state_continues_at_every_split():
    args = make_ssd(np.random.default_rng(10), T=6)
    want, want_state = ssd_recurrent(**args, return_state=True)
    for s in range(1, 6):
        first = {k: v if k == "A" else v[:, :s] for k, v in args.items()}
        second = {k: v if k == "A" else v[:, s:] for k, v in args.items()}
        for form in (ssd_recurrent, lambda **kw: ssd_chunked(**kw, chunk_size=4)):
            y1, h1 = form(**first, return_state=True)
            y2, h2 = form(**second, initial_state=h1, return_state=True)
            assert_within(np.concatenate([y1, y2], axis=1), want, ssd_budget(args))
            assert np.allclose(h2, want_state, rtol=1e-12, atol=1e-13)


def test_segsum_does_not_overflow_and_equals_segprod():
    x = np.array([[-800.0, -900.0, -5.0, -1000.0, -0.5]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        L = np.exp(segsum(x))
    assert np.isfinite(L).all() and (np.triu(L[0], 1) == 0).all()
    assert np.allclose(L, segprod(np.exp(x)), rtol=1e-13, atol=0)
    unstable = np.cumsum(x, -1)[..., :, None] - np.cumsum(x, -1)[..., None, :]  # what #352 exponentiated
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.exp(unstable)).all()


def test_ssd_with_large_decays_stays_finite():
    args = make_ssd(np.random.default_rng(11), T=9, A_scale=500.0)  # |dt A| up to 1000
    args["dt"][:, ::3] = 0.001  # and a few mild steps between
    want = ssd_recurrent(**args)
    with np.errstate(over="raise", invalid="raise"):
        got = [ssd_quadratic(**args)] + [ssd_chunked(**args, chunk_size=c) for c in (1, 2, 4, 9)]
    for g in got:
        assert np.isfinite(g).all()
        assert_within(g, want, ssd_budget(args))


def test_ssd_equals_selective_scan_with_A_repeated_over_P():
    """SSD is the selective scan over D = H * P channels (d = h * P + p) with u = x, delta = dt
    repeated over P, A[d, :] = A[h] for every n, and B, C passed as G groups: channel d reads
    group d // (D / G) = h // (H / G), the head's group. States: (B, D, N) = (B, H, P, N)."""
    args = make_ssd(np.random.default_rng(12), T=6, H=4, P=3, G=2, N=5)
    batch, T, H, P = args["x"].shape
    N = args["B"].shape[-1]
    h0 = np.random.default_rng(13).standard_normal((batch, H, P, N))
    want, want_state = ssd_recurrent(**args, initial_state=h0, return_state=True)
    got, state = selective_scan_recurrent(
        args["x"].reshape(batch, T, H * P), np.repeat(args["dt"], P, axis=2),
        np.repeat(args["A"], P)[:, None] * np.ones(N), args["B"], args["C"],
        initial_state=h0.reshape(batch, H * P, N), return_state=True)
    assert_within(got.reshape(batch, T, H, P), want, ssd_budget(args, h0))
    assert np.allclose(state.reshape(batch, H, P, N), want_state, rtol=1e-13, atol=1e-14)


def test_ssd_decay_argument_matches_A():
    args = make_ssd(np.random.default_rng(14))
    decay = np.exp(args["dt"] * args["A"])
    with_decay = args | dict(A=None, decay=decay)
    assert_within(ssd_recurrent(**with_decay), ssd_recurrent(**args), ssd_budget(args))
    assert_within(ssd_quadratic(**with_decay), ssd_recurrent(**args), ssd_budget(args))
    assert_within(ssd_chunked(**with_decay, chunk_size=3), ssd_recurrent(**args), ssd_budget(args))


@pytest.mark.parametrize("T", [1, 5])
def test_ssd_forms_are_exactly_equal_on_fractions(T):
    rng = np.random.default_rng(15)
    batch, H, P, G, N = 1, 2, 2, 1, 2
    args = dict(x=random_fractions(rng, (batch, T, H, P)), dt=random_fractions(rng, (batch, T, H), 1, 4),
                A=None, decay=random_fractions(rng, (batch, T, H), 1, 5, 6),
                B=random_fractions(rng, (batch, T, G, N)), C=random_fractions(rng, (batch, T, G, N)))
    h0 = random_fractions(rng, (batch, H, P, N))
    want = ssd_recurrent(**args)
    assert want.dtype == object and all(isinstance(v, Fraction) for v in want.flat)
    assert (ssd_quadratic(**args) == want).all()
    want, want_state = ssd_recurrent(**args, initial_state=h0, return_state=True)
    for c in range(1, T + 2):
        got, state = ssd_chunked(**args, chunk_size=c, initial_state=h0, return_state=True)
        assert (got == want).all() and (state == want_state).all(), c


# ----------------------------------------------------------------------------- gated RMSNorm

def naive_rms_norm_gated(x, z, weight, eps, group_size, norm_before_gate):
    out = np.empty_like(x)
    for row in np.ndindex(x.shape[:-1]):
        xs = [float(v) for v in x[row]]
        gate = [float(v) / (1 + math.exp(-float(v))) for v in z[row]]
        if not norm_before_gate:
            xs = [a * g for a, g in zip(xs, gate)]
        for start in range(0, len(xs), group_size):
            group = xs[start:start + group_size]
            rstd = 1 / math.sqrt(sum(a * a for a in group) / len(group) + eps)
            for i, a in enumerate(group, start):
                out[row + (i,)] = a * rstd * weight[i] * (gate[i] if norm_before_gate else 1)
    return out


@pytest.mark.parametrize("norm_before_gate", [False, True])
@pytest.mark.parametrize("group_size", [None, 2])
def test_rms_norm_gated_matches_naive_and_torch_port(norm_before_gate, group_size):
    rng = np.random.default_rng(16)
    x, z, w = rng.standard_normal((2, 3, 6)), rng.standard_normal((2, 3, 6)), rng.standard_normal(6)
    got = rms_norm_gated(x, z, w, eps=1e-5, group_size=group_size, norm_before_gate=norm_before_gate)
    want = naive_rms_norm_gated(x, z, w, 1e-5, group_size or 6, norm_before_gate)
    np.testing.assert_allclose(got, want, rtol=32 * EPS, atol=0)
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tx, tz, tw = (torch.from_numpy(a) for a in (x, z, w))  # rms_norm_ref in float64, bias=None
    if not norm_before_gate:
        tx = tx * F.silu(tz)
    g = tx.reshape(*tx.shape[:-1], -1, group_size or 6)
    out = (g * (1 / torch.sqrt(g.square().mean(dim=-1, keepdim=True) + 1e-5))).reshape(tx.shape) * tw
    out = out * F.silu(tz) if norm_before_gate else out
    np.testing.assert_allclose(got, out.numpy(), rtol=8 * EPS, atol=0)


# ----------------------------------------------------------------------------- bad input

def _bad_inputs():
    rng = np.random.default_rng(17)
    args, kwargs = make_scan(rng, b="grouped")
    ssd = make_ssd(rng)
    scan = lambda **kw: (lambda: selective_scan_recurrent(**(args | kw), **kwargs))  # noqa: E731
    chunked = lambda **kw: (lambda: selective_scan_chunked(**args, **kwargs, **kw))  # noqa: E731
    ssd_call = lambda f=ssd_recurrent, **kw: (lambda: f(**(ssd | kw)))  # noqa: E731
    return [
        (scan(delta=args["delta"][:, :-1]), ValueError, r"delta must have shape \(B, T, D\)"),
        (scan(u=args["u"][0]), ValueError, r"u must have shape \(B, T, D\) with D >= 1"),
        (scan(A=args["A"][:, :2]), ValueError, r"B must have shape \(B, T, G, N\)"),
        (scan(B=args["B"] + 1j), TypeError, r"B may be complex only with a complex A"),
        (scan(C=rng.standard_normal((2, 6, 3, 3))), ValueError, r"C has G=3 groups, which must divide the D=4"),
        (scan(D=np.ones(3)), ValueError, r"D must have shape \(D,\)=\(4,\) to match u; got shape \(3,\)"),
        (scan(u=args["u"].astype(complex)), TypeError, r"u must hold real numbers"),
        # T = 0 is valid (docs/conventions.md), so a u with T = 0 makes delta the mismatched argument
        (scan(u=np.zeros((2, 0, 4))), ValueError, r"delta must have shape \(B, T, D\)=\(2, 0, 4\) to match u"),
        (lambda: selective_scan_recurrent(**args, initial_state=np.zeros((2, 4, 2))), ValueError,
         r"initial_state must have shape \(B, D, N\)"),
        (lambda: selective_scan_recurrent(**args, delta_softplus=1), TypeError, r"delta_softplus must be a bool"),
        (chunked(chunk_size=0), ValueError, r"chunk_size must be an int >= 1; got 0"),
        (chunked(chunk_size=2.0), TypeError, r"chunk_size must be an int"),
        (lambda: selective_scan_step(args["u"], args["delta"][:, 0], args["A"], args["B"][:, 0],
                                     args["C"][:, 0], state=None), ValueError, r"u_t must have shape \(B, D\)"),
        (lambda: associative_scan(np.ones((1, 3)), np.ones((1, 3)), tree="left"), ValueError, r"tree must be"),
        (lambda: associative_scan(np.ones((1, 3)), np.ones((1, 3)), tree="random"), TypeError, r"rng must be"),
        (lambda: associative_scan(np.ones((1, 3)), np.ones((1, 4))), ValueError,
         r"b must have shape \(B, T, ...\)=\(1, 3\) to match a"),
        (ssd_call(A=ssd["A"] + 0j), TypeError, r"A must hold real numbers"),
        (ssd_call(decay=np.ones((2, 7, 4))), ValueError, r"exactly one of A \(H,\) and decay"),
        (ssd_call(A=None), ValueError, r"exactly one of A \(H,\) and decay \(B, T, H\); got neither"),
        (ssd_call(dt=ssd["dt"][..., :2]), ValueError, r"dt must have shape \(B, T, H\)"),
        (ssd_call(B=ssd["B"][:, :, :1].repeat(3, 2), C=ssd["C"][:, :, :1].repeat(3, 2)), ValueError,
         r"B has G=3 groups, which must divide the H=4 heads"),
        (ssd_call(C=ssd["C"][:, :-1]), ValueError, r"C must have shape \(B, T, G, N\)=\(2, 7, 2, 3\) to match B"),
        (ssd_call(f=lambda **kw: ssd_chunked(**kw, chunk_size=-1)), ValueError, r"chunk_size must be an int >= 1"),
        (ssd_call(f=lambda **kw: ssd_recurrent(**kw, initial_state=np.zeros((2, 4, 2, 2)))), ValueError,
         r"initial_state must have shape \(B, H, P, N\)"),
        (lambda: ssd_recurrent(**(ssd | dict(A=None, decay=np.array([[["a"] * 4] * 7] * 2, dtype=object)))),
         TypeError, r"decay must hold real numbers; got an object array holding str"),
        (lambda: rms_norm_gated(np.ones((2, 6)), None, np.ones(6), group_size=4), ValueError,
         r"group_size must divide the last axis F=6"),
        (lambda: rms_norm_gated(np.ones((2, 6)), None, np.ones(5)), ValueError, r"weight must have shape \(F,\)"),
        (lambda: rms_norm_gated(np.ones((2, 6)), np.ones((2, 5)), np.ones(6)), ValueError,
         r"z must have shape \(..., F\)=\(2, 6\) to match x"),
        (lambda: rms_norm_gated(np.ones((2, 6)), None, np.ones(6), eps=-1.0), ValueError, r"eps must be a finite"),
    ]


@pytest.mark.parametrize("call, error, match", _bad_inputs())
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
