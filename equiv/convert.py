"""Moving arrays between NumPy and a candidate's array library (torch, CuPy, JAX).

Inputs travel as NumPy float64 arrays already rounded to the candidate's dtype; they reach the
candidate's library through DLPack and are cast there. Outputs come back through DLPack (after a
host copy where needed) and are widened to float64 for comparison.
"""

from __future__ import annotations

import numpy as np
import ml_dtypes

from seqcheck.reference import arith

BACKENDS = ("numpy", "torch", "torch:cuda", "cupy", "jax")

_LOW_PRECISION = {
    "bfloat16": ml_dtypes.bfloat16,
    "float8_e4m3fn": ml_dtypes.float8_e4m3fn,
    "float8_e5m2": ml_dtypes.float8_e5m2,
}


def numpy_dtype(dtype) -> np.dtype:
    """The NumPy dtype for a name such as "float32" or "bfloat16" (ml_dtypes for the latter)."""
    if isinstance(dtype, str) and dtype in _LOW_PRECISION:
        return np.dtype(_LOW_PRECISION[dtype])
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(
            f"dtype: expected a floating dtype name such as 'float32', 'float16' or 'bfloat16', "
            f"got {dtype!r}") from None
    if resolved.kind != "f" and resolved not in map(np.dtype, _LOW_PRECISION.values()):
        raise TypeError(f"dtype: expected a floating dtype, got {resolved}")
    return resolved


def finfo(dtype):
    """Machine limits for NumPy and ml_dtypes floating types alike."""
    return ml_dtypes.finfo(numpy_dtype(dtype))


def round_to(x: np.ndarray, dtype) -> np.ndarray:
    """The float64 array holding exactly the values ``x`` takes after rounding to ``dtype``."""
    return arith.round_to(x, numpy_dtype(dtype))


def to_backend(x, backend: str, dtype):
    """Hand a NumPy array to ``backend``, cast to ``dtype`` (a NumPy dtype) in that library."""
    if not isinstance(x, np.ndarray):
        return x
    x = np.ascontiguousarray(x)  # torch.from_dlpack aborts the process on negative strides
    name = np.dtype(dtype).name if x.dtype.kind == "f" else x.dtype.name
    if backend == "numpy":
        return x.astype(numpy_dtype(name)) if x.dtype.kind == "f" else x.copy()
    if backend.startswith("torch"):
        import torch

        wide = x.astype(np.float64) if x.dtype.kind == "f" else x
        tensor = torch.from_dlpack(wide).to(getattr(torch, name))
        return tensor.to("cuda") if backend == "torch:cuda" else tensor
    if backend == "cupy":
        import cupy

        if name in _LOW_PRECISION:
            raise ValueError(f"dtype: CuPy has no {name} arrays; pass float16, float32 or float64")
        return cupy.asarray(x.astype(name))
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(x).astype(name)
    raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")


def to_numpy(x) -> np.ndarray:
    """Bring an array of any supported library back as a float64 (or bool/int) NumPy array."""
    if isinstance(x, np.ndarray):
        return _widen(x)
    if np.isscalar(x):
        return np.asarray(x, dtype=np.float64)
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        tensor = x.detach().to("cpu")
        if tensor.is_floating_point() and tensor.dtype not in (_torch().float16, _torch().float32,
                                                              _torch().float64):
            tensor = tensor.to(_torch().float32)  # bfloat16/float8 have no DLPack form NumPy reads
        return _widen(np.from_dlpack(tensor.resolve_conj().resolve_neg().contiguous()))  # lazy conj/neg bits
    if module == "cupy":
        import cupy

        return _widen(cupy.asnumpy(x))
    if hasattr(x, "__dlpack__"):
        try:
            return _widen(np.from_dlpack(x))
        except (BufferError, TypeError, RuntimeError):
            pass
    return _widen(np.asarray(x))


def _widen(x: np.ndarray) -> np.ndarray:
    is_float = x.dtype.kind == "f" or x.dtype in map(np.dtype, _LOW_PRECISION.values())
    return x.astype(np.float64) if is_float else np.array(x)


def _torch():
    import torch

    return torch
