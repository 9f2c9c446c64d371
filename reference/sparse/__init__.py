"""Float64 references for sparse attention: masked softmax attention (the definition), its
block-sparse computation (tiles visited only where a block mask is set, online softmax across
them), both backwards, and the masks of BigBird (global, window and random blocks) and Longformer (a sliding
window with symmetric global tokens)."""

from .attention import (block_mask_of, block_sparse_attention, block_sparse_attention_vjp, expand_block_mask,
                        masked_attention, masked_attention_in_dtype, masked_attention_vjp)
from .masks import bigbird_block_mask, longformer_mask

__all__ = ["bigbird_block_mask", "block_mask_of", "block_sparse_attention", "block_sparse_attention_vjp",
           "expand_block_mask", "longformer_mask", "masked_attention", "masked_attention_in_dtype",
           "masked_attention_vjp"]
