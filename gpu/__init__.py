"""GPU implementations (Numba CUDA kernels, CuPy array-module code), backend detection, and the
registry through which each is checked with ``seqcheck.equiv.check``."""

from seqcheck.gpu.backend import gpu_unavailable_reason, has_gpu
from seqcheck.gpu.registry import Implementation, implementations, where

__all__ = ["Implementation", "implementations", "where", "has_gpu", "gpu_unavailable_reason"]
