"""Error metrics between a candidate's output and the float64 reference.

Every metric treats non-finite values the same way: where the reference is finite, a NaN or Inf
in the candidate is an infinite error; where the reference is itself non-finite (a fully masked
row's log-sum-exp is -inf), the candidate must hold the very same value.
"""

from __future__ import annotations

import numpy as np

from seqcheck.equiv.convert import finfo


def abs_error(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Elementwise |actual - expected| (complex arrays: the modulus of the difference), with the
    non-finite rule above (inf where it breaks)."""
    actual = np.asarray(actual, dtype=np.result_type(actual, np.float64))
    expected = np.asarray(expected, dtype=np.result_type(expected, np.float64))
    both_finite = np.isfinite(actual) & np.isfinite(expected)
    same_special = (actual == expected) | (np.isnan(actual) & np.isnan(expected))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(np.where(both_finite, actual - expected, 0.0))
    return np.where(both_finite, diff, np.where(same_special, 0.0, np.inf))


def max_abs_error(actual, expected) -> float:
    """The largest elementwise absolute error (0.0 for empty arrays)."""
    err = abs_error(actual, expected)
    return float(err.max()) if err.size else 0.0


def rel_frobenius_error(actual, expected) -> float:
    """||actual - expected||_F / ||expected||_F over the finite entries (inf on a non-finite break)."""
    err = abs_error(actual, expected)
    if np.isinf(err).any():
        return float("inf")
    norm = np.linalg.norm(np.where(np.isfinite(expected), expected, 0.0))
    diff = np.linalg.norm(err)
    return float(diff / norm) if norm > 0 else (0.0 if diff == 0 else float("inf"))


def ulp(x: np.ndarray, dtype) -> np.ndarray:
    """The spacing of ``dtype`` at |x|: 2**floor(log2|x|) * eps, never below the smallest subnormal."""
    info = finfo(dtype)
    magnitude = np.abs(np.asarray(x, dtype=np.float64))
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log2(np.maximum(magnitude, float(info.tiny))))
    return np.maximum(np.exp2(exponent) * float(info.eps), float(info.smallest_subnormal))


def ulp_distance(actual, expected, dtype) -> np.ndarray:
    """Elementwise error in units of ``dtype``'s last place at the reference value."""
    return abs_error(actual, expected) / ulp(expected, dtype)


def error_per_position(actual, expected, time_axis: int = 1) -> np.ndarray:
    """Max absolute error at each position along ``time_axis`` (all other axes reduced).

    A wrong chunk boundary or one corrupted row shows here even when a whole-tensor norm is small.
    """
    err = abs_error(actual, expected)
    if err.ndim == 0:
        return err.reshape(1)
    other = tuple(a for a in range(err.ndim) if a != time_axis % err.ndim)
    if err.size == 0:
        return np.zeros(err.shape[time_axis])
    return err.max(axis=other) if other else err


def scale_per_position(x, time_axis: int = 1) -> np.ndarray:
    """Max finite |x| at each position along ``time_axis``: the output's scale, for ULP floors."""
    magnitude = np.abs(np.where(np.isfinite(x), np.asarray(x, dtype=np.float64), 0.0))
    return error_per_position(magnitude, np.zeros_like(magnitude), time_axis)
