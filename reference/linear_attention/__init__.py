"""Float64 references for linear attention (Katharopoulos et al. 2020)."""

from .linear import (
    elu_feature_map,
    identity_feature_map,
    linear_attention_chunked,
    linear_attention_parallel,
    linear_attention_recurrent,
    linear_attention_step,
)
from .grad import linear_attention_vjp

__all__ = [
    "elu_feature_map",
    "identity_feature_map",
    "linear_attention_chunked",
    "linear_attention_parallel",
    "linear_attention_recurrent",
    "linear_attention_step",
    "linear_attention_vjp",
]
