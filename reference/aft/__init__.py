"""Float64 references for the Attention Free Transformer (Zhai et al. 2021): AFT-full, AFT-local,
AFT-simple and AFT-conv."""

from .aft import aft_conv, aft_full, aft_full_naive, aft_local, aft_simple
from .grad import aft_conv_vjp, aft_full_vjp, aft_local_vjp, aft_simple_vjp

__all__ = ["aft_conv", "aft_conv_vjp", "aft_full", "aft_full_naive", "aft_full_vjp", "aft_local", "aft_local_vjp",
           "aft_simple", "aft_simple_vjp"]
