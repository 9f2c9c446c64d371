"""Attention references at T = 4096 (B=1, H=4, D=64, causal): the tiled form against the plain one."""

import pytest

from seqcheck.reference.attention import flash_attention, softmax_attention, split_kv_attention

T, H, D = 4096, 4, 64


@pytest.fixture
def qkv(rng):
    return [rng.standard_normal((1, T, H, D)) for _ in range(3)]


@pytest.mark.benchmark(group="attention T=4096")
def test_softmax_parallel(benchmark, qkv):
    benchmark.pedantic(softmax_attention, args=qkv, kwargs={"causal": True}, rounds=3)


@pytest.mark.benchmark(group="attention T=4096")
@pytest.mark.parametrize("block", [128, 512])
def test_flash_tiled(benchmark, qkv, block):
    benchmark.pedantic(flash_attention, args=qkv, kwargs={"causal": True, "block_q": block, "block_k": block},
                       rounds=3)


@pytest.mark.benchmark(group="attention T=4096")
def test_split_kv(benchmark, qkv):
    benchmark.pedantic(split_kv_attention, args=qkv, kwargs={"causal": True, "num_splits": 8}, rounds=3)
