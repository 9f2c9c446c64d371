"""Error metrics between a candidate's output and the float64 reference.

Every metric treats non-finite values the same way: where the reference is finite, a NaN or Inf
in the candidate is an infinite error; where the reference is itself non-finite (a fully masked
row's log-sum-exp is -inf), the candidate must hold the very same value.
"""

from __future__ import annotations

import numpy as np

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

