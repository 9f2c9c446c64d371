"""Float64 references for Mamba's selective scan and Mamba-2's SSD."""

from .selective_scan import (
    associative_scan,
    scan_combine,
    selective_scan_chunked,
    selective_scan_parallel,
    selective_scan_recurrent,
    selective_scan_step,
)
from .grad import (selective_scan_chunked_vjp, selective_scan_vjp, selective_scan_vjp_in_dtype, ssd_chunked_vjp, ssd_vjp,
                   ssd_vjp_in_dtype)
from .ssd import rms_norm_gated, segprod, segsum, ssd_chunked, ssd_quadratic, ssd_recurrent

__all__ = [
    "associative_scan",
    "rms_norm_gated",
    "scan_combine",
    "segprod",
    "segsum",
    "selective_scan_chunked",
    "selective_scan_chunked_vjp",
    "selective_scan_parallel",
    "selective_scan_recurrent",
    "selective_scan_step",
    "selective_scan_vjp",
    "selective_scan_vjp_in_dtype",
    "ssd_chunked",
    "ssd_chunked_vjp",
    "ssd_quadratic",
    "ssd_recurrent",
    "ssd_vjp",
    "ssd_vjp_in_dtype",
]
