"""Argument checks shared by the SSM references: each error names the argument, what was expected and what came."""

import numbers
from fractions import Fraction

import numpy as np


def as_real(name, x, *, exact_ok=False):
    """x as a new float64 array; TypeError unless it holds real numbers (bool excluded).

    With ``exact_ok``, an object array of rationals (Fraction, int) comes back as Fractions, for
    checks in exact arithmetic."""
    a = np.asarray(x)
    if exact_ok and a.dtype == object:
        return as_fractions(name, a)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")
    return a.astype(np.float64)


def as_complex(name, x):
    """x as a new complex128 array; TypeError unless it holds real or complex numbers."""
    a = np.asarray(x)
    if a.dtype.kind not in "iufc":
        raise TypeError(f"{name} must hold real or complex numbers; got dtype {a.dtype}")
    return a.astype(np.complex128)


def as_fractions(name, a):
    """An object array of rationals as a new object array of Fractions."""
    if not all(isinstance(v, numbers.Rational) for v in a.flat):
        raise TypeError(f"{name}: an object array must hold rationals (fractions.Fraction or int); "
                        f"got {sorted({type(v).__name__ for v in a.flat})}")
    return np.vectorize(Fraction, otypes=[object])(a) if a.size else a.copy()


def as_number_array(name, x, *, exact_ok=False):
    """x as a new float64 array, or complex128 if it is complex (Fractions as ``as_real``)."""
    a = np.asarray(x)
    if exact_ok and a.dtype == object:
        return as_fractions(name, a)
    if a.dtype.kind not in "iufc":
        raise TypeError(f"{name} must hold real or complex numbers; got dtype {a.dtype}")
    return a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)


def check_shape(name, a, expected, description):
    """ValueError unless a.shape == expected; ``description`` spells the shape symbolically."""
    if a.shape != tuple(expected):
        raise ValueError(f"{name} must have shape {description}={tuple(expected)}; got shape {a.shape}")


def positive_int(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1; got {value}")
    return int(value)


def even_positive_int(name, value):
    n = positive_int(name, value)
    if n % 2:
        raise ValueError(f"{name} must be an even int >= 2 (modes come in conjugate pairs); got {n}")
    return n


def positive_real(name, value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return float(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__}")
    return bool(value)
