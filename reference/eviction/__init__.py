"""Float64 references for KV-cache eviction: policies and a token-by-token decoding simulator."""

from .policies import (
    H2O,
    POLICIES,
    TOVA,
    Policy,
    Scissorhands,
    SnapKV,
    StreamingLLM,
    TOVAKVPress,
    Window,
    argmin_highest_index,
    topk_lowest_index,
)
from .simulator import DecodeResult, simulate_decoding, simulate_layers

__all__ = [
    "H2O",
    "POLICIES",
    "TOVA",
    "DecodeResult",
    "Policy",
    "Scissorhands",
    "SnapKV",
    "StreamingLLM",
    "TOVAKVPress",
    "Window",
    "argmin_highest_index",
    "simulate_decoding",
    "simulate_layers",
    "topk_lowest_index",
]
