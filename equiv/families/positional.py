"""Position encodings: RoPE (both pairings), ALiBi slopes, sinusoidal; RoPE's claims.

Float64 bounds, with u = 2**-53 and theta the largest angle in play (position / factor, the
fastest frequency being 1): an angle carries a relative error of about 3u, so cos/sin of it an
absolute error of u(3 theta + 1), and a rotated pair an error of u |x| (6 theta + 6). Two correct
forms differ by at most twice that.
"""

from __future__ import annotations

import functools

import numpy as np

from seqcheck.equiv.registry import Claim, Form, Gradient, Sweep, register_claim, register_form, register_gradient
from seqcheck.properties.positional import (alibi_inputs, rope_inputs, rope_matrix_inputs, rope_pair_inputs,
                                            sinusoidal_inputs)
from seqcheck.reference import positional as ref
from seqcheck.reference.arith import U64


def rope_half(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
    """RoPE with GPT-NeoX / Hugging Face pairing (i, i + D/2)."""
    return ref.apply_rope(x, positions, base=base, interpolation_factor=interpolation_factor, pairing="half")


def rope_interleaved(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
    """RoPE with RoFormer / GPT-J / Meta pairing (2i, 2i + 1)."""
    return ref.apply_rope(x, positions, base=base, interpolation_factor=interpolation_factor, pairing="interleaved")


def _max_angle(args: dict) -> np.ndarray:
    """Largest angle at each position t: position_t / interpolation_factor."""
    x = args["x"]
    positions = np.arange(x.shape[1]) if args["positions"] is None else np.asarray(args["positions"])
    return np.abs(positions.reshape(-1, x.shape[1])).max(axis=0) / args["interpolation_factor"]


def rope_bound(args: dict, expected: tuple) -> tuple:
    xmax = np.abs(args["x"]).max(initial=0.0)
    return (2 * U64 * xmax * (6 * _max_angle(args) + 6),)


ROPE_RULE = "derived float64 bound: 2u max|x| (6 theta_t + 6), theta_t = position_t / factor"


def _rope_plain(pairing: str):
    """Baseline for a low-precision RoPE kernel: the definition evaluated in the dtype
    (frequencies, angles, cos/sin and products each rounded), as such a kernel computes it."""
    def plain(args: dict, dtype) -> tuple:
        return (ref.rope_in_dtype(**args, dtype=dtype, pairing=pairing),)
    return plain


def rope_magnitude(args: dict, expected: tuple) -> tuple:
    """Per position t, max over the rotated pairs (a, b) of (|x_a| + |x_b|)(1 + |theta_ti|): a
    rounded angle is off by about u |theta|, which moves the pair by that times its size."""
    x = np.abs(np.asarray(args["x"], dtype=np.float64))
    positions = np.arange(x.shape[1]) if args["positions"] is None else np.asarray(args["positions"])
    theta = np.abs(ref.rope_angles(positions, x.shape[3], base=args["base"],
                                   interpolation_factor=args["interpolation_factor"]))
    theta = np.broadcast_to(theta.reshape((-1, x.shape[1], 1, x.shape[3] // 2)), x.shape[:3] + (x.shape[3] // 2,))
    half = x.shape[3] // 2
    pair_size = np.maximum(x[..., :half] + x[..., half:], x[..., 0::2] + x[..., 1::2])
    return (((pair_size * (1 + theta)).max(axis=(0, 2, 3), initial=0.0)),)


def rope_grad_bound(args: dict, expected: tuple) -> tuple:
    """dx is the cotangent rotated by -theta: the forward's bound with the cotangent for x."""
    return rope_bound({**args, "x": args["cotangent"]}, expected)


def _rope_grad_plain(pairing: str):
    """Baseline for a low-precision RoPE backward: the cotangent rotated by -theta in the dtype
    (``rope_in_dtype`` at the negated positions: the same rounded angles, cos, sin and products)."""
    def plain(args: dict, dtype) -> tuple:
        positions = np.arange(np.shape(args["x"])[1]) if args["positions"] is None else np.asarray(args["positions"])
        return (ref.rope_in_dtype(args["cotangent"], -positions, base=args["base"],
                                  interpolation_factor=args["interpolation_factor"], dtype=dtype, pairing=pairing),)
    return plain


def rope_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The forward's magnitude with the cotangent for x."""
    return rope_magnitude({**args, "x": args["cotangent"]}, expected)


ROPE_GRADIENT_RULE = "derived float64 bound: 2u max|dy| (6 theta_t + 6) (dx = R(theta)^T dy, a rotation)"


for pairing, fn in (("half", rope_half), ("interleaved", rope_interleaved)):
    register_form(Form(key=f"positional.rope.{pairing}", fn=fn, inputs=rope_inputs, bound=rope_bound, rule=ROPE_RULE,
                       statement=f"rotary position embedding, {pairing} pairing",
                       plain=_rope_plain(pairing), magnitude=rope_magnitude,
                       magnitude_rule="each position's max over pairs of (|x_a| + |x_b|)(1 + |theta_ti|)",
                       data_args=("x",)))
    register_gradient(Gradient(
        form=f"positional.rope.{pairing}", vjp=functools.partial(ref.rope_vjp, pairing=pairing), wrt=("x",),
        cotangents=("cotangent",), bound=rope_grad_bound, rule=ROPE_GRADIENT_RULE,
        axes=(("batch", "time", "head", "channel"),), plain=_rope_grad_plain(pairing), magnitude=rope_grad_magnitude))


register_form(Form(
    key="positional.alibi.slopes", fn=ref.alibi_slopes, inputs=alibi_inputs,
    bound=lambda args, expected: (4 * U64 * np.abs(expected[0]),),
    rule="4u |slope| (one power, one product)", statement="ALiBi head slopes (any head count)",
    time_axis=0))


def _sinusoidal(layout):
    def encoding(positions, dim, *, base=10000.0):
        return ref.sinusoidal_encoding(positions, dim, base=base, layout=layout)
    encoding.__name__ = encoding.__qualname__ = f"sinusoidal_{layout}"
    return encoding


for layout in ("interleaved", "concatenated"):
    register_form(Form(
        key=f"positional.sinusoidal.{layout}", fn=_sinusoidal(layout),
        inputs=sinusoidal_inputs if layout == "interleaved" else functools.partial(sinusoidal_inputs, even=False),
        bound=lambda args, expected: (2 * U64 * (3 * np.abs(args["positions"]) + 2),),
        rule="derived float64 bound: 2u (3 |position_t| + 2)",
        statement=f"sinusoidal position encoding, {layout} sin/cos layout", time_axis=0))


def _dot_at(impl, args: dict, m: int, n: int) -> float:
    options = {"base": args["base"], "interpolation_factor": args["interpolation_factor"], "pairing": args["pairing"]}
    q = impl(args["q"], np.array([m]), **options)
    k = impl(args["k"], np.array([n]), **options)
    return np.array([[np.sum(q * k)]])


def _relative(impl, args: dict):
    m, n, shift = args["m"], args["n"], args["shift"]
    return (_dot_at(impl, args, m, n),), (_dot_at(impl, args, m + shift, n + shift),)


def _relative_bound(args: dict, expected: tuple) -> tuple:
    theta = (max(args["m"], args["n"]) + args["shift"]) / args["interpolation_factor"]
    D = args["q"].shape[-1]
    norms = np.abs(args["q"]).sum() * np.abs(args["k"]).sum()
    return (2 * U64 * norms * (12 * theta + 2 * D + 12),)


def _relative_sweep(position: int, rng) -> dict:
    return {"q": rng.standard_normal((1, 1, 1, 64)), "k": rng.standard_normal((1, 1, 1, 64)), "m": position,
            "n": position // 2, "shift": position, "base": 10000.0, "interpolation_factor": 1.0, "pairing": "half"}


register_claim(Claim(
    key="positional.rope.relative",
    statement="RoPE's query-key dot product depends only on the position difference",
    subject="positional.rope (apply_rope)",
    default_impl=ref.apply_rope,
    relation=_relative,
    inputs=rope_pair_inputs,
    bound=_relative_bound,
    rule="derived float64 bound: 2u |q|_1 |k|_1 (12 theta + 2D + 12)",
    sweeps=(Sweep("position", "position m (n = m/2, shift = m, D = 64)", (16, 256, 4096, 65536),
                  _relative_sweep),),
))


def _composition(impl, args: dict):
    options = {"dim": args["dim"], "base": args["base"], "interpolation_factor": args["interpolation_factor"],
               "pairing": args["pairing"]}
    product = impl(args["m"], **options) @ impl(args["n"], **options)
    return (product[None],), (impl(args["m"] + args["n"], **options)[None],)


register_claim(Claim(
    key="positional.rope.composition",
    statement="RoPE rotations compose: R_m R_n = R_{m+n}",
    subject="positional.rope (rope_matrix)",
    default_impl=ref.rope_matrix,
    relation=_composition,
    inputs=rope_matrix_inputs,
    bound=lambda args, expected: (U64 * (12 * (args["m"] + args["n"]) / args["interpolation_factor"] + 16),),
    rule="derived float64 bound: u (12 theta_{m+n} + 16)",
))


def _pairings(impl, args: dict):
    x = args["x"]
    P = ref.rope_permutation(x.shape[-1])
    options = {"positions": args["positions"], "base": args["base"], "interpolation_factor": args["interpolation_factor"]}
    return (impl(x[..., P], pairing="half", **options),), (impl(x, pairing="interleaved", **options)[..., P],)


register_claim(Claim(
    key="positional.rope.pairings",
    statement="the half and interleaved RoPE pairings agree up to the fixed channel permutation",
    subject="positional.rope (apply_rope)",
    default_impl=ref.apply_rope,
    relation=_pairings,
    inputs=rope_inputs,
    bound=rope_bound,
    rule=ROPE_RULE,
))
