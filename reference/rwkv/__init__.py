"""Float64 references for RWKV's time mixing (Peng et al. 2023, 2024): the RWKV-4 WKV operator
and RWKV-5/6's matrix-state WKV with its per-head GroupNorm."""

from .wkv4 import wkv4_chunked, wkv4_naive, wkv4_parallel, wkv4_recurrent
from .grad import wkv4_vjp, wkv6_vjp, wkv6_vjp_in_dtype
from .wkv6 import wkv6_chunked, wkv6_parallel, wkv6_recurrent, wkv6_step, wkv_group_norm

__all__ = ["wkv4_chunked", "wkv4_naive", "wkv4_parallel", "wkv4_recurrent", "wkv4_vjp",
           "wkv6_chunked", "wkv6_parallel", "wkv6_recurrent", "wkv6_step", "wkv6_vjp", "wkv6_vjp_in_dtype",
           "wkv_group_norm"]
