"""Retention and GLA references at T = 4096 (B=1, H=4, K=V=64): the chunked forms against the
recurrent ones (the issue asks that chunked be at least as fast), in one group per mechanism so
the ratio reads off a single run:
    .venv/bin/python -m pytest benchmarks/test_bench_retention.py --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest

from seqcheck.reference.gla import gla_chunked, gla_recurrent
from seqcheck.reference.retention import retention_chunked, retention_recurrent

T, H, K = 4096, 4, 64


@pytest.fixture
def qkv(rng):
    return [rng.standard_normal((1, T, H, K)) for _ in range(3)]


@pytest.mark.benchmark(group="retention T=4096 H=4 K=V=64")
def test_retention_recurrent(benchmark, qkv):
    benchmark.pedantic(retention_recurrent, args=(*qkv, 1 - 2.0 ** (-5 - np.arange(H))), rounds=3)


@pytest.mark.benchmark(group="retention T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [64, 256])
def test_retention_chunked(benchmark, qkv, chunk_size):
    benchmark.pedantic(retention_chunked, args=(*qkv, 1 - 2.0 ** (-5 - np.arange(H))),
                       kwargs={"chunk_size": chunk_size}, rounds=3)


@pytest.fixture
def gates(rng):
    return -np.logaddexp(0.0, -rng.standard_normal((1, T, H, K))) / 16


@pytest.mark.benchmark(group="gla T=4096 H=4 K=V=64")
def test_gla_recurrent(benchmark, qkv, gates):
    benchmark.pedantic(gla_recurrent, args=(*qkv, gates), rounds=3)


@pytest.mark.benchmark(group="gla T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_gla_chunked(benchmark, qkv, gates, chunk_size):
    benchmark.pedantic(gla_chunked, args=(*qkv, gates), kwargs={"chunk_size": chunk_size}, rounds=3)
