"""Float64 references for the delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet)."""

from .delta import delta_rule_chunked, delta_rule_recurrent, delta_rule_step

__all__ = ["delta_rule_chunked", "delta_rule_recurrent", "delta_rule_step"]
