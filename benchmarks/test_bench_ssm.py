"""Selective scan, SSD and linear attention references at T = 4096 (B=1, H=4, D or P = 64, N = 16).

One group per mechanism, so the ratio of each form to the recurrent one reads off a single run:
    .venv/bin/python -m pytest benchmarks/test_bench_ssm.py --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest

from seqcheck.reference.linear_attention import (linear_attention_chunked, linear_attention_parallel,
                                                 linear_attention_recurrent)
from seqcheck.reference.mamba import (selective_scan_chunked, selective_scan_parallel, selective_scan_recurrent,
                                      ssd_chunked, ssd_quadratic, ssd_recurrent)

T, H, P, N = 4096, 4, 64, 16
SCAN = "selective scan T=4096 D=64 N=16"
SSD = "ssd T=4096 H=4 P=64 N=16"
LINEAR = "linear attention T=4096 H=4 D=M=64"


@pytest.fixture
def scan_args(rng):
    """Mamba-1 shapes: D = 64 channels, shared B and C (B, T, N), D skip, z gate, softplus dt."""
    return {"u": rng.standard_normal((1, T, P)), "delta": rng.uniform(-4.0, 0.0, (1, T, P)),
            "A": -np.exp(rng.uniform(0.0, 1.0, (P, N))), "B": rng.standard_normal((1, T, N)),
            "C": rng.standard_normal((1, T, N)), "D": rng.standard_normal(P), "z": rng.standard_normal((1, T, P)),
            "delta_softplus": True}


@pytest.fixture
def ssd_args(rng):
    """Mamba-2 shapes: H = 4 heads of P = 64, one group of B and C, dt log-uniform in [1e-3, 1e-1]."""
    return {"x": rng.standard_normal((1, T, H, P)), "dt": np.exp(rng.uniform(np.log(1e-3), np.log(0.1), (1, T, H))),
            "A": -rng.uniform(1.0, 16.0, H), "B": rng.standard_normal((1, T, 1, N)),
            "C": rng.standard_normal((1, T, 1, N))}


@pytest.fixture
def qkv(rng):
    return [rng.standard_normal((1, T, H, P)) for _ in range(3)]


@pytest.mark.benchmark(group=SCAN)
def test_selective_scan_recurrent(benchmark, scan_args):
    benchmark.pedantic(selective_scan_recurrent, kwargs=scan_args, rounds=3)


@pytest.mark.benchmark(group=SCAN)
def test_selective_scan_parallel(benchmark, scan_args):
    benchmark.pedantic(selective_scan_parallel, kwargs=scan_args, rounds=3)


@pytest.mark.benchmark(group=SCAN)
@pytest.mark.parametrize("chunk", [16, 64])
def test_selective_scan_chunked(benchmark, scan_args, chunk):
    benchmark.pedantic(selective_scan_chunked, kwargs={**scan_args, "chunk_size": chunk}, rounds=3)


@pytest.mark.benchmark(group=SSD)
def test_ssd_recurrent(benchmark, ssd_args):
    benchmark.pedantic(ssd_recurrent, kwargs=ssd_args, rounds=3)


@pytest.mark.benchmark(group=SSD)
def test_ssd_quadratic(benchmark, ssd_args):
    benchmark.pedantic(ssd_quadratic, kwargs=ssd_args, rounds=3)


@pytest.mark.benchmark(group=SSD)
@pytest.mark.parametrize("chunk", [64, 256])
def test_ssd_chunked(benchmark, ssd_args, chunk):
    benchmark.pedantic(ssd_chunked, kwargs={**ssd_args, "chunk_size": chunk}, rounds=3)


@pytest.mark.benchmark(group=LINEAR)
def test_linear_attention_recurrent(benchmark, qkv):
    benchmark.pedantic(linear_attention_recurrent, args=qkv, rounds=3)


@pytest.mark.benchmark(group=LINEAR)
def test_linear_attention_parallel(benchmark, qkv):
    benchmark.pedantic(linear_attention_parallel, args=qkv, rounds=3)


@pytest.mark.benchmark(group=LINEAR)
@pytest.mark.parametrize("chunk", [64, 256])
def test_linear_attention_chunked(benchmark, qkv, chunk):
    benchmark.pedantic(linear_attention_chunked, args=qkv, kwargs={"chunk_size": chunk}, rounds=3)
