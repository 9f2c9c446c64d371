"""Float64 references for gated linear attention (Yang et al. 2024) and its gradient."""

from .gla import gla_chunked, gla_parallel, gla_recurrent, gla_step
from .grad import gla_chunked_vjp, gla_vjp, gla_vjp_in_dtype

__all__ = ["gla_chunked", "gla_chunked_vjp", "gla_parallel", "gla_recurrent", "gla_step", "gla_vjp",
           "gla_vjp_in_dtype"]
