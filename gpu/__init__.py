"""GPU implementations (Numba CUDA kernels, CuPy array-module code) and backend detection.

Each implementation is declared, with the form it computes and the inputs it takes, in that
form's family module (``seqcheck.equiv.families``) and checked with ``seqcheck.equiv.check``;
``seqcheck.equiv.implementations()`` lists them.
"""

from seqcheck.gpu.backend import gpu_unavailable_reason, has_gpu, use_simulator_without_gpu, where

__all__ = ["where", "has_gpu", "gpu_unavailable_reason", "use_simulator_without_gpu"]
