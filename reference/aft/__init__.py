"""Float64 references for the Attention Free Transformer (Zhai et al. 2021): AFT-full, AFT-local,
AFT-simple and AFT-conv."""

from .aft import aft_conv, aft_full, aft_full_naive, aft_local, aft_simple

__all__ = ["aft_conv", "aft_full", "aft_full_naive", "aft_local", "aft_simple"]
