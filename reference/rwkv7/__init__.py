"""Float64 references for RWKV-7 "Goose" time mixing: the wkv7 operator, a generalised delta rule."""

from .grad import wkv7_vjp
from .wkv7 import wkv7_chunked, wkv7_recurrent, wkv7_step

__all__ = ["wkv7_chunked", "wkv7_recurrent", "wkv7_step", "wkv7_vjp"]
