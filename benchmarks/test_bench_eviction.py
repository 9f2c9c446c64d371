"""The KV-cache eviction simulator at T = 4096 (B=1, H=Hkv=4, D=64, budget 256, prompt 512, no RoPE,
``return_rows=False``), per policy, against causal softmax attention over the same tokens.

One group, so the ratio of each policy's simulation to full attention reads off a single run:
    .venv/bin/python -m pytest benchmarks/test_bench_eviction.py --benchmark-only --benchmark-group-by=group
"""

import pytest

from seqcheck.reference.attention import softmax_attention
from seqcheck.reference.eviction import (H2O, TOVA, Scissorhands, SnapKV, StreamingLLM, TOVAKVPress, Window,
                                         simulate_decoding)

T, H, D, BUDGET, PROMPT = 4096, 4, 64, 256, 512
GROUP = "eviction T=4096 H=4 D=64 budget 256 prompt 512"
POLICIES = {
    "window": Window(),
    "streaming_llm": StreamingLLM(sinks=4),
    "tova": TOVA(),
    "tova_kvpress": TOVAKVPress(),
    "h2o": H2O(heavy=128),
    "scissorhands": Scissorhands(recent=64, history=64),
    "snapkv": SnapKV(window=32, kernel_size=5),
}


@pytest.fixture
def qkv(rng):
    return [rng.standard_normal((1, T, H, D)) for _ in range(3)]


@pytest.mark.benchmark(group=GROUP)
def test_full_attention(benchmark, qkv):
    benchmark.pedantic(softmax_attention, args=qkv, kwargs={"causal": True}, rounds=3)


@pytest.mark.benchmark(group=GROUP)
@pytest.mark.parametrize("name", list(POLICIES))
def test_simulate_decoding(benchmark, qkv, name):
    options = {"policy": POLICIES[name], "budget": BUDGET, "prefill_len": PROMPT, "return_rows": False}
    benchmark.pedantic(simulate_decoding, args=qkv, kwargs=options, rounds=3)
