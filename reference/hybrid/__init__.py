"""Float64 references for hybrid stacks: Jamba (attention and Mamba layers interleaved, MoE in
every other layer) over the whole sequence, token by token, and as a prefill then decoding."""

from .jamba import (JambaConfig, JambaParams, jamba_layer_parallel, jamba_layer_prefill_decode, jamba_parallel,
                    jamba_params, jamba_prefill_decode, jamba_recurrent, jamba_step)

__all__ = ["JambaConfig", "JambaParams", "jamba_layer_parallel", "jamba_layer_prefill_decode", "jamba_params", "jamba_parallel", "jamba_prefill_decode", "jamba_recurrent",
           "jamba_step"]
