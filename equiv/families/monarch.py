"""Monarch matrices: the factored product against the dense matrix, the DFT as a Monarch product
(and exactly, in mpmath), the projection onto the Monarch set, the transpose and composition
rules, and the causal FFT convolution through Monarch DFTs (M2); derived bounds, claims.

The float64 bound (u = 2**-53). Both forms of x M^T sum products of x with the factors' entries:
the factored one two block products of p and r terms, the dense one a product of n terms with M's
entries (each a sum of at most r products of the factors' entries); every term is bounded by the
same product of magnitudes, so each form is within gamma_(p + r + n + 2) of exact relative to
|x| |w1| |w2| applied together (``monarch_multiply`` on absolute values), times 4 for complex
factors (a complex product rounds its two parts). Two forms are within twice that:

    2 c gamma_(p + r + n + 2) Mag,   c = 4 complex, 1 real.

A DFT through Monarch factors: the factors' entries are exponentials within 4u of exact, so the
product with x is within (A + B + 8) 4u sum|x| of the exact DFT per output (any n = A B); the
direct sum x F^T within (n + 8) 4u sum|x|. The Monarch-FFT convolution composes three such
transforms and one product of spectra bounded by sum|u| sum|K|: within 12 (A + B + 8) u
sum|u| sum|K| per output, plus the direct convolution's (L + 1) u sum |K| |u| + 2u |D u|.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from scipy.linalg import block_diag

from seqcheck.equiv.bounds import per_position
from seqcheck.equiv.tracked import gamma
from seqcheck.equiv.registry import Claim, Form, Gradient, register_claim, register_form, register_gradient
from seqcheck.properties.arrays import for_form, generators
from seqcheck.properties.monarch import monarch_inputs
from seqcheck.reference import monarch as ref
from seqcheck.equiv.convert import numpy_dtype
from seqcheck.reference.arith import U64, accumulator, round_to, rounding
from seqcheck.reference.ssm import causal_conv


def multiply_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 c gamma_(p + r + n + 2) Mag per position (module docstring)."""
    w1, w2 = np.asarray(args["w1"]), np.asarray(args["w2"])
    x = np.asarray(args["x"])
    magnitude = ref.monarch_multiply(np.abs(x), np.abs(w1), np.abs(w2))
    c = 4.0 if np.iscomplexobj(w1) or np.iscomplexobj(w2) or np.iscomplexobj(x) else 1.0
    n = x.shape[-1]
    return (2 * c * gamma(w1.shape[2] + w2.shape[2] + n + 2) * per_position(magnitude),)


MULTIPLY_RULE = "derived float64 bound: 2 c gamma_(p + r + n + 2) (|x| |w1| |w2| through the factors), c = 4 complex"

UNUSED = {"multiply": ("length", "channels", "kernel_length"),
          "square": ("length", "channels", "kernel_length", "batch", "size", "complex_factors"),
          "dft": ("blocks", "block_size", "channels", "kernel_length", "complex_factors"),
          "conv": ("blocks", "block_size", "complex_factors")}


def inputs_of(form: str):
    return for_form(monarch_inputs, form, unused=UNUSED[form])


def _plain(args: dict, dtype) -> tuple:
    """The definition in ``dtype``: inputs rounded, M's entries (sums of the factors' products)
    rounded once, x M^T summed in float32 and rounded once."""
    r, _ = rounding(numpy_dtype(dtype))
    x, w1, w2 = (r(np.asarray(args[name])) for name in ("x", "w1", "w2"))
    M = r(ref.monarch_dense(w1, w2))
    return (r(round_to(x @ M.T, accumulator(numpy_dtype(dtype)))),)


def multiply_magnitude(args: dict, expected: tuple = ()) -> tuple:
    """|x| |w1| |w2| through the factors, per position: the size of the terms each output sums."""
    return (per_position(ref.monarch_multiply(np.abs(args["x"]), np.abs(args["w1"]), np.abs(args["w2"]))),)


register_form(Form(
    key="monarch.matrix.dense",
    fn=ref.dense_multiply,
    inputs=inputs_of("multiply"),
    bound=multiply_bound,
    rule=MULTIPLY_RULE,
    plain=_plain,
    magnitude=multiply_magnitude,
    magnitude_rule="|x| |w1| |w2| through the factors",
    statement="x M^T with the dense M = P_out block_diag(w2) P_mid block_diag(w1)",
    data_args=("x", "w1", "w2"),
    axes=(("batch", "output"),),
))

register_form(Form(
    key="monarch.matrix.factored",
    fn=ref.monarch_multiply,
    inputs=inputs_of("multiply"),
    bound=multiply_bound,
    rule=MULTIPLY_RULE,
    statement="the Monarch product by its two block-diagonal products and reshuffles (fly's "
              "blockdiag_butterfly_multiply) equals the dense product, square or not, real or complex",
    oracle="monarch.matrix.dense",
    data_args=("x", "w1", "w2"),
    axes=(("batch", "output"),),
))


# ----------------------------------------------------------------------------- the DFT


def dft_bound(args: dict, expected: tuple = ()) -> tuple:
    """(A + B + 8) 4u + (n + 8) 4u, times sum |x| per batch row, per position."""
    x = np.asarray(args["x"])
    n = x.shape[-1]
    A, B = ref.default_sizes(n) if n else (1, 1)
    total = np.abs(x).sum(axis=-1, keepdims=True)
    return (per_position(4 * U64 * (A + B + n + 16) * np.broadcast_to(total, x.shape)),)


register_form(Form(
    key="monarch.dft.direct",
    fn=ref.dft,
    inputs=inputs_of("dft"),
    bound=dft_bound,
    rule="derived float64 bound: 4u (A + B + n + 16) sum|x| per row",
    statement="the DFT of any length n as its sum",
    data_args=("x",),
    axes=(("batch", "frequency"),),
))

register_form(Form(
    key="monarch.dft.monarch",
    fn=ref.monarch_dft,
    inputs=inputs_of("dft"),
    bound=dft_bound,
    rule="derived float64 bound: 4u (A + B + n + 16) sum|x| per row",
    statement="the DFT of any length n (prime too) is a Monarch product of the stride-permuted input: A blocks "
              "of F_B, then B blocks of F_A with the twiddles folded in (fly's ButterflyFFT)",
    oracle="monarch.dft.direct",
    data_args=("x",),
    axes=(("batch", "frequency"),),
))


@st.composite
def _dft_sizes(draw):
    n = draw(st.integers(1, 12))
    A = draw(st.sampled_from([d for d in range(1, n + 1) if n % d == 0]))
    return {"n": n, "sizes": (A, n // A)}


def _exact_dft(impl, args: dict) -> tuple:
    """|M - F[:, perm]| entrywise at 50 digits, as float64 (a difference below 1e-45 is 0 here)."""
    M, F = impl(**args, dps=50)
    difference = np.vectorize(lambda a, b: float(abs(a - b)))(M, F)
    return (difference,), (np.zeros_like(difference),)


register_claim(Claim(
    key="monarch.dft.exact",
    statement="the DFT of every size n and factorisation n = A B is exactly the Monarch product of dft_factors' "
              "closed form (checked at 50 digits)",
    subject="monarch.dft.monarch",
    default_impl=ref.dft_mp,
    relation=_exact_dft,
    inputs=_dft_sizes,
    bound=lambda args, expected: (np.full(1, 1e-45),),
    rule="50 digits: |M - F| < 1e-45 entrywise",
    exactness="50 digits (mpmath)",
))


# ----------------------------------------------------------------------------- projection, transpose, composition


def _frobenius_bound(M: np.ndarray, n_terms: int) -> float:
    return 8 * gamma(n_terms) * float(np.linalg.norm(M)) + 1e-300


def _idempotent(impl, args: dict) -> tuple:
    """The Monarch matrix of w1, w2 projected: its own projection."""
    M = ref.monarch_dense(args["w1"], args["w2"])
    w1, w2 = impl(M, args["sizes"])
    return (ref.monarch_dense(w1, w2),), (M,)


def _projection_bound(args: dict, expected: tuple) -> tuple:
    """An SVD of each block within gamma of the block's norm, moved by 1 + 2 sigma_1 / (sigma_1 -
    sigma_2) (the rank-1 part's condition); per position, the largest over the blocks."""
    M = np.asarray(expected[0])
    n = M.shape[0]
    A, B = args["sizes"]
    blocks = M.reshape(n // B, B, A, n // A).transpose(1, 2, 0, 3)
    S = np.linalg.svd(blocks, compute_uv=False)
    gap = S[..., 0] - (S[..., 1] if S.shape[-1] > 1 else 0.0)
    condition = np.where(S[..., 0] > 0, 1 + 2 * S[..., 0] / np.maximum(gap, 1e-300), 1.0)
    scale = 16 * gamma(4 * n) * float((np.linalg.norm(blocks, axis=(-2, -1)) * condition).max(initial=0.0))
    return (np.full(n, scale),)


register_claim(Claim(
    key="monarch.project.idempotent",
    statement="projecting a Monarch matrix onto the Monarch set (per-block rank-1 SVD, sqrt(sigma) to each "
              "factor) returns it",
    subject="monarch.project",
    default_impl=ref.monarch_project,
    relation=_idempotent,
    inputs=lambda: monarch_inputs(form="square"),
    bound=_projection_bound,
    rule="each block's SVD within 16 gamma_4n of its norm times 1 + 2 sigma_1 / (sigma_1 - sigma_2)",
))


def _optimal(impl, args: dict) -> tuple:
    """||M - projection||_F^2 against the Eckart-Young value sum over blocks of ||block||_F^2 -
    sigma_1^2 (the least any Monarch matrix reaches), and the excess over a drawn competitor."""
    M = np.asarray(args["M"])
    n = M.shape[0]
    A, B = args["sizes"]
    residual = M - ref.monarch_dense(*impl(M, args["sizes"]))
    blocks = M.reshape(n // B, B, A, n // A).transpose(1, 2, 0, 3)
    least = float(((blocks ** 2).sum(axis=(-2, -1)) - np.linalg.svd(blocks, compute_uv=False)[..., 0] ** 2).sum())
    other = np.linalg.norm(M - ref.monarch_dense(args["w1"], args["w2"]))
    mine = float((residual ** 2).sum())
    return (np.atleast_1d(mine), np.atleast_1d(max(0.0, np.sqrt(mine) - other))), (np.atleast_1d(max(least, 0.0)),
                                                                                 np.zeros(1))


register_claim(Claim(
    key="monarch.project.optimal",
    statement="the projection is the Monarch matrix nearest to M in Frobenius norm: its squared distance is the "
              "Eckart-Young value, the sum over blocks of ||block||^2 - sigma_1^2, and no drawn competitor is nearer",
    subject="monarch.project",
    default_impl=ref.monarch_project,
    relation=_optimal,
    inputs=lambda: monarch_inputs(form="square"),
    bound=lambda args, expected: (np.atleast_1d(2 * _frobenius_bound(np.asarray(args["M"]), 4 * len(args["M"])) *
                                                np.linalg.norm(args["M"])),
                                  np.atleast_1d(_frobenius_bound(np.asarray(args["M"]), 4 * len(args["M"])))),
    rule="squared distances within 16 gamma_4n ||M||_F^2; the competitor's excess within 8 gamma_4n ||M||_F",
    outputs=("squared_distance", "excess"),
))


@st.composite
def _transpose_inputs(draw):
    """w1 (k, q, p), w2 (q, s, k): the shapes of the transpose rule (r = k, l = q)."""
    k, q, p, s = (draw(st.integers(1, 4)) for _ in range(4))
    rng = draw(generators())
    return {"w1": rng.standard_normal((k, q, p)), "w2": rng.standard_normal((q, s, k))}


def _digit_swap(major: int, minor: int) -> np.ndarray:
    """perm[i] for i = a minor + b (a < major, b < minor): b major + a."""
    i = np.arange(major * minor)
    return (i % minor) * major + i // minor


def _transposed(impl, args: dict) -> tuple:
    """Monarch(impl's factors) against M^T with rows (k, p) -> (p, k) and columns (s, l) -> (l, s)."""
    w1, w2 = np.asarray(args["w1"]), np.asarray(args["w2"])
    (k, q, p), s = w1.shape, w2.shape[1]
    Mt = ref.monarch_dense(w1, w2).T  # (k p, q s)
    expected = np.zeros_like(Mt)
    expected[_digit_swap(k, p)[:, None], _digit_swap(s, q)[None, :]] = Mt
    return (ref.monarch_dense(*impl(w1, w2)),), (expected,)


register_claim(Claim(
    key="monarch.matrix.transpose",
    statement="the transpose of a Monarch matrix is a Monarch matrix up to fixed digit swaps of its rows and "
              "columns, with the factors' roles exchanged and their blocks transposed",
    subject="monarch.matrix.factored",
    default_impl=ref.monarch_transpose,
    relation=_transposed,
    inputs=_transpose_inputs,
    bound=lambda args, expected: (np.full(np.shape(expected[0])[1], 4 * gamma(4) * float(
        np.abs(ref.monarch_dense(np.abs(args["w1"]), np.abs(args["w2"]))).max(initial=0.0))),),
    rule="each entry one product of two factors' entries, rounded once: 4 gamma_4 max |w1| |w2|",
))


def _composed(impl, args: dict) -> tuple:
    """x (M block_diag(D))^T: by the composed factors (impl's), and by the dense product of the three."""
    w1, w2, x, D = (np.asarray(args[name]) for name in ("w1", "w2", "x", "D"))
    dense = ref.monarch_dense(w1, w2) @ block_diag(*D)
    return (ref.monarch_multiply(x, *impl(w1, w2, D)),), (x @ dense.T,)


@st.composite
def _composition_inputs(draw):
    args = draw(monarch_inputs(form="multiply", complex_factors=False))
    k, _, p = args["w1"].shape
    return {**args, "D": draw(generators()).standard_normal((k, p, p))}


def _composition_bound(args: dict, expected: tuple) -> tuple:
    composed = np.einsum("kqp,kpj->kqj", np.abs(args["w1"]), np.abs(args["D"]))
    return (2 * multiply_bound({"x": args["x"], "w1": composed, "w2": args["w2"]})[0],)


register_claim(Claim(
    key="monarch.matrix.composition",
    statement="a Monarch matrix times a block-diagonal matrix with its input blocks is the Monarch matrix of the "
              "composed first factor: M block_diag(D) = Monarch(w1 D, w2)",
    subject="monarch.matrix.factored",
    default_impl=ref.monarch_compose,
    relation=_composed,
    inputs=_composition_inputs,
    bound=_composition_bound,
    rule=MULTIPLY_RULE + ", twice: the composed factor's own p-term products add at most as much again",
))


# ----------------------------------------------------------------------------- the convolution


def conv_bound(args: dict, expected: tuple = ()) -> tuple:
    """12 (A + B + 8) u sum|u| sum|K| (three Monarch DFTs of n = T + L) + the direct form's
    (L + 1) u sum |K| |u| + 2u |D u|, per position."""
    u, K = np.asarray(args["u"], dtype=np.float64), np.asarray(args["K"], dtype=np.float64)
    D = np.zeros(K.shape[0]) if args.get("D") is None else np.asarray(args["D"], dtype=np.float64)
    A, B = ref.default_sizes(max(u.shape[1] + K.shape[1], 1))
    spectra = 12 * (A + B + 8) * U64 * np.abs(u).sum(axis=1, keepdims=True) * np.abs(K).sum(axis=1)
    direct = (K.shape[1] + 1) * U64 * causal_conv(np.abs(u), np.abs(K)) + 2 * U64 * np.abs(D * u)
    return (per_position(2 * (spectra + direct)),)


CONV_RULE = "derived float64 bound: 2 (12 (A + B + 8) u sum|u| sum|K| + (L + 1) u sum|K||u| + 2u |D u|)"

register_form(Form(
    key="monarch.conv.direct",
    fn=causal_conv,
    inputs=inputs_of("conv"),
    bound=conv_bound,
    rule=CONV_RULE,
    statement="the causal convolution y_t = sum_l K_l u_{t-l} + D u_t, summed directly",
    data_args=("u", "K", "D"),
))

register_form(Form(
    key="monarch.conv.monarch_fft",
    fn=ref.monarch_fft_conv,
    inputs=inputs_of("conv"),
    bound=conv_bound,
    rule=CONV_RULE,
    statement="the causal convolution through Monarch DFTs of n = T + L (M2's fft_size = 2L for L = T), any "
              "length, equals the direct sum",
    oracle="monarch.conv.direct",
    data_args=("u", "K", "D"),
))


# ----------------------------------------------------------------------------- the gradient

GRADIENT_WRT = ("x", "w1", "w2")


def multiply_grad_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 c gamma_(p + r + n + N + 2) times the backward on absolute values (the same sums of
    products of magnitudes), per position for dx (along its n), one value per factor."""
    x, w1, w2, c = (np.asarray(args[name]) for name in ("x", "w1", "w2", "cotangent"))
    magnitudes = ref.monarch_vjp(np.abs(x), np.abs(w1), np.abs(w2), cotangent=np.abs(c))
    scale = 4.0 if any(np.iscomplexobj(a) for a in (x, w1, w2, c)) else 1.0
    N = int(np.prod(x.shape[:-1], dtype=np.int64))
    n = 2 * scale * gamma(w1.shape[2] + w2.shape[2] + x.shape[-1] + N + 2)
    return (n * per_position(np.abs(magnitudes["x"])), n * np.abs(magnitudes["w1"]).max(initial=0.0),
            n * np.abs(magnitudes["w2"]).max(initial=0.0))


GRADIENT_RULE = ("derived float64 bound: 2 c gamma_(p + r + n + N + 2) times the backward run on |x|, |w1|, |w2|, |c| "
                 "(c = 4 complex), per position for dx, one value per factor")

register_gradient(Gradient(
    form="monarch.matrix.dense",
    vjp=ref.monarch_vjp,
    wrt=GRADIENT_WRT,
    cotangents=("cotangent",),
    bound=multiply_grad_bound,
    rule=GRADIENT_RULE,
    axes=(("batch", "input"), ("block", "row", "column"), ("block", "row", "column")),
))


def _dense_vjp(args: dict) -> tuple:
    """The gradients by dense matrix calculus: with G = c^T x summed over the batch (dL/dM), dx =
    c M, dB1 = (P_out B2 P_mid)^T G and dB2 = P_out^T G (P_mid B1)^T, the factors' gradients their
    diagonal blocks; conjugated (the convention of ``monarch_vjp``)."""
    x, w1, w2, c = (np.asarray(args[name]) for name in ("x", "w1", "w2", "cotangent"))
    k, q, p = w1.shape
    l, s, r = w2.shape
    P_mid, P_out = np.eye(k * q)[ref.monarch._shuffle(r, l)], np.eye(l * s)[ref.monarch._shuffle(l, s)]
    B1, B2 = block_diag(*w1), block_diag(*w2)
    flat_x, flat_c = x.reshape(-1, x.shape[-1]), c.reshape(-1, c.shape[-1])
    G = flat_c.T @ flat_x
    dB1 = (P_out @ B2 @ P_mid).T @ G
    dB2 = P_out.T @ G @ (P_mid @ B1).T
    dw1 = np.stack([dB1[i * q:(i + 1) * q, i * p:(i + 1) * p] for i in range(k)])
    dw2 = np.stack([dB2[i * s:(i + 1) * s, i * r:(i + 1) * r] for i in range(l)])
    dx = (flat_c @ (P_out @ B2 @ P_mid @ B1)).reshape(x.shape)
    return tuple(np.conj(g) if np.iscomplexobj(a) else np.real(g) for g, a in ((dx, x), (dw1, w1), (dw2, w2)))


@st.composite
def _backward_inputs(draw):
    args = draw(monarch_inputs(form="multiply"))
    rng = draw(generators())
    out = ref.monarch_multiply(args["x"], args["w1"], args["w2"])
    return {**args, "cotangent": rng.standard_normal(out.shape)}


register_claim(Claim(
    key="monarch.matrix.dense_backward",
    statement="the Monarch product's backward through its factors (the steps reversed, the reshuffles inverted) "
              "equals dense matrix calculus on M = P_out B2 P_mid B1 (dx = c M, the factors' gradients the diagonal "
              "blocks of dL/dB1 and dL/dB2), real or complex",
    subject="monarch.matrix.factored_vjp",
    default_impl=ref.monarch_vjp,
    relation=lambda vjp, args: (tuple(vjp(**args)[name] for name in GRADIENT_WRT), _dense_vjp(args)),
    inputs=_backward_inputs,
    bound=multiply_grad_bound,
    rule=GRADIENT_RULE,
    outputs=("dx", "dw1", "dw2"),
))
