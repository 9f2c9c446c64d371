"""Float64 references for RetNet's retention (Sun et al. 2023)."""

from .retention import retention_chunked, retention_parallel, retention_recurrent, retention_step

__all__ = ["retention_chunked", "retention_parallel", "retention_recurrent", "retention_step"]
