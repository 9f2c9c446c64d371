"""Retention, GLA, the delta rule and RWKV references at T = 4096 (B=1, H=4, K=V=64; RWKV-4 with
C = H K = 256 channels): the chunked forms against the recurrent ones (the issue asks that
chunked be at least as fast), in one group per mechanism so the ratio reads off a single run:
    .venv/bin/python -m pytest benchmarks/test_bench_retention.py --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest

from seqcheck.reference.delta import delta_rule_chunked, delta_rule_recurrent
from seqcheck.reference.gla import gla_chunked, gla_recurrent
from seqcheck.reference.retention import retention_chunked, retention_recurrent
from seqcheck.reference.rwkv import wkv4_chunked, wkv4_recurrent, wkv6_chunked, wkv6_recurrent
from seqcheck.reference.rwkv7 import wkv7_chunked, wkv7_recurrent

T, H, K = 4096, 4, 64


@pytest.fixture
def qkv(rng):
    return [rng.standard_normal((1, T, H, K)) for _ in range(3)]


@pytest.mark.benchmark(group="retention T=4096 H=4 K=V=64")
def test_retention_recurrent(benchmark, qkv):
    benchmark.pedantic(retention_recurrent, args=(*qkv, 1 - 2.0 ** (-5 - np.arange(H))), rounds=5)


@pytest.mark.benchmark(group="retention T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [64, 256])
def test_retention_chunked(benchmark, qkv, chunk_size):
    benchmark.pedantic(retention_chunked, args=(*qkv, 1 - 2.0 ** (-5 - np.arange(H))),
                       kwargs={"chunk_size": chunk_size}, rounds=5)


@pytest.fixture
def gates(rng):
    return -np.logaddexp(0.0, -rng.standard_normal((1, T, H, K))) / 16


@pytest.mark.benchmark(group="gla T=4096 H=4 K=V=64")
def test_gla_recurrent(benchmark, qkv, gates):
    benchmark.pedantic(gla_recurrent, args=(*qkv, gates), rounds=5)


@pytest.mark.benchmark(group="gla T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_gla_chunked(benchmark, qkv, gates, chunk_size):
    benchmark.pedantic(gla_chunked, args=(*qkv, gates), kwargs={"chunk_size": chunk_size}, rounds=5)


@pytest.mark.benchmark(group="rwkv6 T=4096 H=4 K=V=64")
def test_wkv6_recurrent(benchmark, qkv, gates, rng):
    benchmark.pedantic(wkv6_recurrent, args=(*qkv, gates), kwargs={"u": rng.standard_normal((H, K))}, rounds=5)


@pytest.mark.benchmark(group="rwkv6 T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_wkv6_chunked(benchmark, qkv, gates, rng, chunk_size):
    benchmark.pedantic(wkv6_chunked, args=(*qkv, gates), kwargs={"u": rng.standard_normal((H, K)),
                                                                 "chunk_size": chunk_size}, rounds=5)


@pytest.fixture
def delta_args(qkv, rng):
    q, k, v = qkv
    return q, k / np.linalg.norm(k, axis=-1, keepdims=True), v, rng.uniform(0, 1, (1, T, H))


@pytest.mark.benchmark(group="delta rule T=4096 H=4 K=V=64")
def test_delta_rule_recurrent(benchmark, delta_args):
    benchmark.pedantic(delta_rule_recurrent, args=delta_args, rounds=5)


@pytest.mark.benchmark(group="delta rule T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_delta_rule_chunked(benchmark, delta_args, chunk_size):
    benchmark.pedantic(delta_rule_chunked, args=delta_args, kwargs={"chunk_size": chunk_size}, rounds=5)


@pytest.fixture
def wkv4_args(rng):
    C = H * K
    return (rng.standard_normal((1, T, C)), rng.standard_normal((1, T, C)), np.exp(rng.standard_normal(C)),
            rng.standard_normal(C))


@pytest.mark.benchmark(group="rwkv4 T=4096 C=256")
def test_wkv4_recurrent(benchmark, wkv4_args):
    benchmark.pedantic(wkv4_recurrent, args=wkv4_args, rounds=5)


@pytest.mark.benchmark(group="rwkv4 T=4096 C=256")
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_wkv4_chunked(benchmark, wkv4_args, chunk_size):
    benchmark.pedantic(wkv4_chunked, args=wkv4_args, kwargs={"chunk_size": chunk_size}, rounds=5)


@pytest.fixture
def wkv7_args(qkv, rng):
    r, k, v = qkv
    kk = rng.standard_normal((1, T, H, K))
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    decay = -np.exp(rng.standard_normal((1, T, H, K)) - 2)
    return r, decay, k, v, -kk, kk * rng.uniform(0, 1, (1, T, H, K))


@pytest.mark.benchmark(group="rwkv7 T=4096 H=4 K=V=64")
def test_wkv7_recurrent(benchmark, wkv7_args):
    benchmark.pedantic(wkv7_recurrent, args=wkv7_args, rounds=5)


@pytest.mark.benchmark(group="rwkv7 T=4096 H=4 K=V=64")
@pytest.mark.parametrize("chunk_size", [16, 64])
def test_wkv7_chunked(benchmark, wkv7_args, chunk_size):
    benchmark.pedantic(wkv7_chunked, args=wkv7_args, kwargs={"chunk_size": chunk_size}, rounds=5)
