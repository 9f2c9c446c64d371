"""Argument checks shared by the references: each error names the argument, what was expected and what came.

A bool is never taken for a number. Arrays come back converted (``as_real``, ``as_complex``,
``as_fractions``); scalars come back as Python ints or floats.
"""

import numbers
import operator
from fractions import Fraction

import numpy as np


class NumberTypeError(TypeError, ValueError):
    """A bool or a non-number where a number is expected.

    A TypeError, and a ValueError as well because some references raised ValueError for such
    scalars before their checks were shared (as ``numpy.exceptions.AxisError`` is both a
    ValueError and an IndexError).
    """


# ----------------------------------------------------------------------------- arrays


def _is_ml_dtype(dtype):
    """ml_dtypes' types (bfloat16, float8_*, int4, ...): kind "V" without fields."""
    return dtype.kind == "V" and dtype.names is None


def _number_entries(name, a, expected, complex_ok):
    """TypeError unless every entry of object array ``a`` is a number (bool, str, None refused)."""
    for v in a.flat:
        kind = type(v)
        if isinstance(v, (bool, np.bool_)) or not (hasattr(kind, "__float__")
                                                     or complex_ok and hasattr(kind, "__complex__")):
            raise TypeError(f"{name} must hold {expected}; got an object array holding {kind.__name__} {v!r}")


def as_real(name, x, *, complex_ok=False, exact_ok=False):
    """x as a new float64 array, or complex128 if it is complex and ``complex_ok``.

    TypeError unless x holds numbers: NumPy integers or floats, an ml_dtypes type, or objects
    that are numbers (bool, None, strings and, without ``complex_ok``, complex are refused).
    With ``exact_ok`` an object array comes back as it is (Fractions, mpmath numbers) for the
    caller's exact or multi-precision arithmetic; ``as_fractions`` converts it.
    """
    expected = "real or complex numbers" if complex_ok else "real numbers"
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must hold {expected}; got {x!r}")
    a = np.asarray(x)
    if a.dtype == object:
        _number_entries(name, a, expected, complex_ok)
        if exact_ok:
            return a
    if a.dtype.kind == "c" and complex_ok:
        return a.astype(np.complex128)
    if a.dtype.kind not in "iuf" and a.dtype != object and not _is_ml_dtype(a.dtype):
        raise TypeError(f"{name} must hold {expected}; got dtype {a.dtype}")
    try:
        return a.astype(np.float64)
    except (TypeError, ValueError):
        if complex_ok:
            return a.astype(np.complex128)
        raise TypeError(f"{name} must hold {expected}; got dtype {a.dtype} whose entries do not convert") from None


def as_complex(name, x):
    """x as a new complex128 array; TypeError unless it holds real or complex numbers (``as_real``)."""
    return as_real(name, x, complex_ok=True).astype(np.complex128, copy=False)


def as_fractions(name, a):
    """The entries of array ``a`` as a new object array of exact Fractions.

    TypeError unless every entry is an int, a Fraction or a finite float (what
    ``fractions.Fraction`` takes).
    """
    def convert(v):
        try:
            return Fraction(v)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"{name} must hold ints, Fractions or finite floats for exact arithmetic; "
                            f"got {v!r}") from None

    return np.asarray(np.frompyfunc(convert, 1, 1)(a), dtype=object)


def check_shape(name, a, expected, description, match=None):
    """ValueError unless a.shape == expected; ``description`` spells the shape symbolically and
    ``match`` names the argument(s) the expected shape comes from."""
    if a.shape != tuple(expected):
        source = f" to match {match}" if match else ""
        raise ValueError(f"{name} must have shape {description}={tuple(expected)}{source}; got shape {a.shape}")


def check_ndim(name, a, ndim, description):
    """ValueError unless a has ``ndim`` axes; ``description`` spells the layout, e.g. "(B, T, D)"."""
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {description}; got shape {a.shape}")


def check_layout(name, a, layout, may_be_empty=("B", "T")):
    """The sizes of a's axes by the letters of ``layout`` ("(B, T, H, D)"), as a tuple.

    ValueError unless a has as many axes as ``layout`` and every axis whose symbol is not in
    ``may_be_empty`` (the batch and time axes, by default B and T) has length >= 1.
    """
    axes = [ax.strip() for ax in layout.strip("()").split(",") if ax.strip()]
    nonempty = [ax for ax in axes if ax not in may_be_empty]
    if a.ndim != len(axes) or any(n == 0 for ax, n in zip(axes, a.shape) if ax not in may_be_empty):
        condition = f" with {', '.join(nonempty)} >= 1" if nonempty else ""
        raise ValueError(f"{name} must have shape {layout}{condition}; got shape {a.shape}")
    return a.shape


def check_pair(name, x):
    """x as a tuple of two; TypeError unless it is a tuple or list of length 2."""
    if not isinstance(x, (tuple, list)) or len(x) != 2:
        raise TypeError(f"{name} must be a pair (a tuple of two); got {type(x).__name__}"
                        + (f" of length {len(x)}" if isinstance(x, (tuple, list)) else ""))
    return tuple(x)


def float_dtype(name, dtype):
    """dtype as a numpy dtype; TypeError unless a floating dtype of at most 64 bits (numpy
    float16/32/64 or an ml_dtypes float such as bfloat16, float8_e4m3fn). None is refused (numpy
    would read it as float64)."""
    expected = "a floating dtype of at most 64 bits (numpy float16/32/64 or ml_dtypes)"
    try:
        dt = None if dtype is None or isinstance(dtype, (bool, np.bool_)) else np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or not ((dt.kind == "f" and dt.itemsize <= 8)
                          or (_is_ml_dtype(dt) and dt.name.startswith(("bfloat", "float")))):
        raise TypeError(f"{name} must be {expected}; got {dtype!r}")
    return dt


def check_rng(name, rng):
    """A numpy Generator from ``rng`` (a Generator or an int seed >= 0)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, numbers.Integral):
        raise TypeError(f"{name} must be a numpy.random.Generator or an int seed >= 0; got {type(rng).__name__}")
    return np.random.default_rng(int_in_range(name, rng, 0))


# ----------------------------------------------------------------------------- scalars


def as_int(name, value):
    """value as an int; NumberTypeError unless it is an integer (``operator.index``), bool excluded."""
    if isinstance(value, (bool, np.bool_)):
        raise NumberTypeError(f"{name} must be an int; got {type(value).__name__}")
    try:
        return operator.index(value)
    except TypeError:
        raise NumberTypeError(f"{name} must be an int; got {type(value).__name__}") from None


def int_in_range(name, value, low, high=None):
    """value as an int; NumberTypeError unless an integer, ValueError unless low <= value (<= high)."""
    n = as_int(name, value)
    if n < low or (high is not None and n > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bounds}; got {n}")
    return n


def positive_int(name, value):
    """value as an int; NumberTypeError unless an integer, ValueError unless >= 1."""
    return int_in_range(name, value, 1)


def even_positive_int(name, value):
    """value as an int; NumberTypeError unless an integer, ValueError unless even and >= 2."""
    n = as_int(name, value)
    if n < 2 or n % 2:
        raise ValueError(f"{name} must be an even int >= 2; got {n}")
    return n


_BOUNDS = {"": lambda v: True, ">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0}


def finite_real(name, value, bound=""):
    """value as a float; NumberTypeError unless a real number (bool excluded), ValueError unless
    finite and within ``bound``: "" (any), ">= 0" or "> 0"."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise NumberTypeError(f"{name} must be a real number; got {type(value).__name__}")
    if not np.isfinite(float(value)) or not _BOUNDS[bound](value):
        raise ValueError(f"{name} must be a finite number{' ' if bound else ''}{bound}; got {value!r}")
    return float(value)


def check_bool(name, value):
    """value as a bool; TypeError unless it is one (Python's or NumPy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool; got {type(value).__name__}")
    return bool(value)


def check_choice(name, value, options):
    """ValueError unless value is one of ``options``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {options}; got {value!r}")


def recurrence_cotangents(cotangent, state_cotangent, out_shape, state_shape):
    """The cotangents of a linear recurrence's outputs: o's (B, T, H, V) and, when the final state
    is an output, the state's (B, H, K, V) (None: zeros), each checked by name against q and v."""
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, out_shape, "(B, T, H, V)", match="q and v")
    if state_cotangent is None:
        return cotangent, np.zeros(state_shape)
    state_cotangent = as_real("state_cotangent", state_cotangent)
    check_shape("state_cotangent", state_cotangent, state_shape, "(B, H, K, V)", match="q and v")
    return cotangent, state_cotangent
