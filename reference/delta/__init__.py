"""Float64 references for the delta rule (DeltaNet) and the gated delta rule (Gated DeltaNet), and
their gradient."""

from .delta import delta_rule_chunked, delta_rule_recurrent, delta_rule_step
from .grad import delta_rule_vjp, delta_rule_vjp_in_dtype

__all__ = ["delta_rule_chunked", "delta_rule_recurrent", "delta_rule_step", "delta_rule_vjp",
           "delta_rule_vjp_in_dtype"]
