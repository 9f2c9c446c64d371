"""Float64 references for RetNet's retention (Sun et al. 2023): the core forms, and multi-scale retention
as torchscale computes it."""

from .multiscale import msr_chunked, msr_decays, msr_parallel, msr_recurrent, msr_rotate
from .retention import retention_chunked, retention_parallel, retention_recurrent, retention_step

__all__ = ["msr_chunked", "msr_decays", "msr_parallel", "msr_recurrent", "msr_rotate", "retention_chunked",
           "retention_parallel", "retention_recurrent", "retention_step"]
