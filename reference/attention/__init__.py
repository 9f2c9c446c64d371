"""Float64 references for softmax attention and its tiled, split and low-precision forms, and its gradients."""

from .grad import attention_vjp_in_dtype, flash_attention_backward, softmax_attention_vjp
from .flash import combine_partials, flash_attention, flash_attention_mp, split_kv_attention
from .softmax import attention_in_dtype, attention_mask, softmax_attention, softmax_attention_mp

__all__ = [
    "attention_in_dtype",
    "attention_vjp_in_dtype",
    "attention_mask",
    "combine_partials",
    "flash_attention",
    "flash_attention_backward",
    "flash_attention_mp",
    "softmax_attention",
    "softmax_attention_mp",
    "softmax_attention_vjp",
    "split_kv_attention",
]
