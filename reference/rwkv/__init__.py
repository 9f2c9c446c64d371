"""Float64 references for RWKV's time mixing (Peng et al. 2023): the RWKV-4 WKV operator."""

from .wkv4 import wkv4_chunked, wkv4_naive, wkv4_parallel, wkv4_recurrent

__all__ = ["wkv4_chunked", "wkv4_naive", "wkv4_parallel", "wkv4_recurrent"]
