"""Float64 references for gated linear attention (Yang et al. 2024)."""

from .gla import gla_chunked, gla_parallel, gla_recurrent, gla_step

__all__ = ["gla_chunked", "gla_parallel", "gla_recurrent", "gla_step"]
