"""Tolerance budgets: derived for float64, baseline-relative for low precision.

- float64 candidate: the bound a form's algorithm guarantees (``Form.bound``), per position.
- low-precision candidate: ``k * baseline + floor`` per position, where ``baseline`` is the error
  of the plain definition evaluated in the candidate's dtype on the same input, ``k`` =
  ``BASELINE_FACTOR`` and ``floor`` ``FLOOR_ULPS`` ULPs of that dtype at each position's magnitude: what the
  definition declares (``Form.magnitude``: the size of the terms the position sums, times the
  condition of what it applies to them, such as the argument of an exp or of a cos), else the
  output's largest magnitude. docs/tolerance.md says why this rule does not flake.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from seqcheck.equiv.convert import finfo, numpy_dtype
from seqcheck.equiv.metrics import error_per_position
from seqcheck.equiv.registry import Form, as_outputs, definition_of, without


BASELINE_FACTOR = 4.0
"""k: a correct kernel may err up to 4 times as much as the plain definition in its dtype."""

FLOOR_ULPS = 4.0
"""f: the floor's ULPs of the dtype at each position's magnitude (docs/tolerance.md measures why 4)."""


class OutOfRange(Exception):
    """The inputs leave the dtype's range: the plain definition itself overflows on them."""


@dataclass(frozen=True)
class Budget:
    """Allowed absolute error per output (a scalar, per position along the time axis, or per
    element), and the rule that produced it."""

    per_output: tuple
    rule: str


def float64_budget(bound, rule: str, args: dict, expected: tuple) -> Budget:
    return Budget(tuple(np.asarray(b, dtype=np.float64) for b in as_outputs(bound(args, expected))), rule)


def baseline_budget(form: Form, dtype, args: dict, expected: tuple) -> Budget:
    """``k * baseline + floor`` for a candidate working in ``dtype`` on ``args``: the floor is
    ``f (eps M_t + tiny)``, tiny the dtype's smallest normal number: a kernel that flushes
    subnormal intermediates to zero (GPUs' fast-math default) errs by that much."""
    definition, dropped = definition_of(form)
    dtype = numpy_dtype(dtype)
    definition_args = without(args, dropped)
    plain = as_outputs(definition.plain(definition_args, dtype))
    scales = (as_outputs(definition.magnitude(definition_args, expected)) if definition.magnitude
              else (None,) * len(expected))
    eps, tiny = float(finfo(dtype).eps), float(finfo(dtype).tiny)
    accumulate = float(finfo(np.float32).eps) if dtype.itemsize <= 4 else eps
    budgets = []
    for name, low, ref, scale in zip(form.outputs, plain, expected, scales):
        low = np.asarray(low, dtype=np.result_type(low, np.float64))
        if (np.isfinite(ref) & ~np.isfinite(low)).any():
            raise OutOfRange(f"output {name!r}: the plain definition overflows in {dtype.name}")
        baseline = error_per_position(low, ref, form.time_axis)
        if scale is None:
            finite_ref = np.abs(np.where(np.isfinite(ref), ref, 0.0))
            scale = float(finite_ref.max()) if finite_ref.size else 0.0
        floor = FLOOR_ULPS * (_scaled(scale, eps, accumulate) + tiny)
        budgets.append(BASELINE_FACTOR * baseline + floor)
    return Budget(tuple(budgets), baseline_rule(form, dtype))


def _scaled(scale, eps: float, accumulate: float) -> np.ndarray:
    """eps * M, or, where the magnitude comes in two parts (M, M_acc), eps * M + accumulate * M_acc:
    a part computed in the float32 accumulation that low-precision kernels keep."""
    if isinstance(scale, tuple):
        return eps * np.asarray(scale[0], dtype=np.float64) + accumulate * np.asarray(scale[1], dtype=np.float64)
    return eps * np.asarray(scale, dtype=np.float64)


def baseline_rule(form: Form, dtype) -> str:
    name = numpy_dtype(dtype).name
    definition, _ = definition_of(form)
    scale = definition.magnitude_rule if definition.magnitude else "the output's largest magnitude"
    return (f"{BASELINE_FACTOR:g} x baseline (the definition evaluated in {name}) "
            f"+ {FLOOR_ULPS:g} ulp of {name} at {scale}, and {FLOOR_ULPS:g} times {name}'s "
            f"smallest normal number (for kernels flushing subnormals to zero)")


def gradient_baseline_budget(gradient, dtype, args: dict, expected: tuple) -> Budget:
    """``k * baseline + floor`` for a backward working in ``dtype``: the baseline is the error of
    the definition's backward in ``dtype`` (``Gradient.plain``) on ``args``, the floor
    ``f (eps M + tiny)`` with M each gradient's largest magnitude."""
    dtype = numpy_dtype(dtype)
    plain = gradient.plain(args, dtype)
    scales = gradient.magnitude(args, expected) if gradient.magnitude else (None,) * len(expected)
    eps, tiny = float(finfo(dtype).eps), float(finfo(dtype).tiny)
    budgets = []
    for name, low, ref, scale in zip(gradient.outputs, plain, expected, scales):
        ref = np.asarray(ref)
        if ref.size == 0:  # an input the draw left None: nothing to judge
            budgets.append(np.zeros(0))
            continue
        low = np.asarray(low, dtype=np.result_type(low, np.float64))
        if (np.isfinite(ref) & ~np.isfinite(low)).any():
            raise OutOfRange(f"gradient {name!r}: the definition's backward overflows in {dtype.name}")
        if scale is None:
            finite_ref = np.abs(np.where(np.isfinite(ref), ref, 0.0))
            scale = float(finite_ref.max()) if finite_ref.size else 0.0
        baseline = error_per_position(low, ref, 1)
        budgets.append(BASELINE_FACTOR * baseline + FLOOR_ULPS * (eps * np.asarray(scale, dtype=np.float64) + tiny))
    return Budget(tuple(budgets), gradient_baseline_rule(gradient, dtype))


def gradient_baseline_rule(gradient, dtype) -> str:
    name = numpy_dtype(dtype).name
    scale = "the sizes of the terms each position sums" if gradient.magnitude else "the gradient's largest magnitude"
    return (f"{BASELINE_FACTOR:g} x baseline (the definition's backward evaluated in {name}) "
            f"+ {FLOOR_ULPS:g} ulp of {name} at {scale}, and {FLOOR_ULPS:g} times {name}'s smallest normal number")
