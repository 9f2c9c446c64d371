"""The array module of CuPy implementations: CuPy on a GPU, NumPy elsewhere (CI), same code.

A CuPy implementation takes ``xp=None`` (``array_module()``: CuPy where a GPU and CuPy exist,
else NumPy), a module, or a name; ``to_device`` and ``to_host`` move arrays for either.
"""

from __future__ import annotations

import numpy as np

from seqcheck.gpu.backend import has_gpu


def array_module(name=None):
    """NumPy or CuPy. ``name``: "numpy", "cupy", a module (returned as is) or None (CuPy if a
    GPU is usable and CuPy imports, else NumPy)."""
    if name is not None and not isinstance(name, str):
        return name
    if name is None:
        if not has_gpu():
            return np
        try:
            import cupy
        except ImportError:
            return np
        return cupy
    if name == "numpy":
        return np
    if name == "cupy":
        import cupy

        return cupy
    raise ValueError(f"array module: expected 'numpy', 'cupy' or None, got {name!r}")


def to_device(a, xp, dtype=None):
    """``a`` as an array of ``xp`` (cast to ``dtype`` there); None stays None."""
    if a is None:
        return None
    a = xp.asarray(a)
    return a if dtype is None else a.astype(dtype, copy=False)


def to_host(a):
    """A NumPy array from an array of NumPy or CuPy."""
    if a is None or isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    return get() if callable(get) else np.asarray(a)


def compute_dtype(dtype):
    """The precision kernels compute in: float32 for float32 and narrower floats (float16
    inputs are widened on the device), float64 for float64."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


def nan_filled(xp, shape, dtype):
    """An output buffer poisoned with NaN, so an element the kernel never writes shows."""
    return xp.full(shape, xp.nan, dtype=dtype)
