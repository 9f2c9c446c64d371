"""The arithmetic every family shares: the float64 unit roundoff, evaluation rounded to a
low-precision dtype, and exact (rational) differences.

``U64`` is the float64 unit roundoff u = 2^-53 (machine epsilon is 2u): every float64 bound
is written in it. ``round_to``/``rounding`` evaluate a definition as a kernel computing in a
dtype does (the baseline of the low-precision budget, docs/tolerance.md): elementwise
results correctly rounded to the dtype, reductions accumulated in float32 (float64 for a 64-bit
dtype) and rounded once. ``fractions``/``exact_difference`` serve the claims checked in exact
rational arithmetic.

    >>> import numpy as np
    >>> from seqcheck.reference.arith import U64, exact_difference, fractions, round_to
    >>> float(round_to(1 + 2**-12, np.float16)[()])        # float16 keeps 10 fraction bits
    1.0
    >>> third, tiny = fractions([1.0], 3), fractions([1.0], 2**1100)
    >>> float((third + tiny - third)[0]), float(exact_difference(third + tiny, third)[0])
    (0.0, 5e-324)
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

U64 = 2.0 ** -53
"""The float64 unit roundoff u: |fl(x) - x| <= u |x| for every correctly rounded operation."""

SMALLEST_SUBNORMAL = 5e-324


def accumulator(dtype) -> np.dtype:
    """What a kernel computing in ``dtype`` accumulates sums in: float32, or float64 for a 64-bit dtype."""
    return np.dtype(np.float64 if np.dtype(dtype).itemsize >= 8 else np.float32)


def round_to(x, dtype) -> np.ndarray:
    """The float64 (complex128) array holding exactly the values of ``x`` rounded to ``dtype``
    (a NumPy or ml_dtypes floating dtype); a complex ``x`` is rounded part by part."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return round_to(x.real, dtype) + 1j * round_to(x.imag, dtype)
    return x.astype(np.float64).astype(dtype).astype(np.float64)


def rounding(dtype):
    """(r, total) for evaluating in ``dtype``: ``r(x)`` rounds elementwise (``round_to``);
    ``total(x, axis)`` sums ``x`` in the accumulator's precision (``accumulator``) and rounds the
    sum once to ``dtype``, as kernels reduce."""
    work = accumulator(dtype)

    def r(x):
        return round_to(x, dtype)

    def total(x, axis):
        return r(round_to(np.sum(x, axis=axis), work))

    return r, total


def fractions(values, denominator=1) -> np.ndarray:
    """An array of exactly representable floats (or ints) as a Fraction object array, each
    divided by ``denominator``."""
    return np.asarray(np.frompyfunc(lambda v: Fraction(v) / denominator, 1, 1)(np.asarray(values)), dtype=object)


def exact_difference(actual, expected) -> np.ndarray:
    """``actual - expected`` elementwise in exact arithmetic (Fractions, ints or floats), as
    float64: 0 exactly where they are equal, and never 0 where they differ (a difference below
    the smallest subnormal comes back as +-5e-324, one beyond float64's range as +-inf), so an
    exact claim cannot pass by rounding.
    An entry NaN or infinite on one side only gives the float difference (NaN or infinite: a
    failure); the same infinity on both sides is equal (0)."""
    actual, expected = np.broadcast_arrays(np.asarray(actual, dtype=object), np.asarray(expected, dtype=object))

    def one(a, b):
        if a == b:  # the same number, or the same infinity
            return 0.0
        try:
            difference = Fraction(a) - Fraction(b)
        except (ValueError, OverflowError):  # a NaN or an infinity: not a rational
            return float(a) - float(b)
        if difference == 0:
            return 0.0
        sign = 1.0 if difference > 0 else -1.0
        try:
            return float(difference) or sign * SMALLEST_SUBNORMAL
        except OverflowError:  # beyond float64's range: infinitely over any budget
            return sign * np.inf

    return np.vectorize(one, otypes=[float])(actual, expected)
