"""Float64 references for RetNet's retention (Sun et al. 2023): the core forms, and multi-scale retention
as torchscale computes it."""

from .grad import msr_vjp
from .multiscale import msr_chunked, msr_decays, msr_parallel, msr_recurrent, msr_rotate, msr_scales
from .retention import retention_chunked, retention_parallel, retention_recurrent, retention_step

__all__ = ["msr_chunked", "msr_decays", "msr_parallel", "msr_recurrent", "msr_rotate", "msr_scales", "msr_vjp",
           "retention_chunked", "retention_parallel", "retention_recurrent", "retention_step"]
