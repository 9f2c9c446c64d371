"""The GPU kernels against torch, one pytest-benchmark group per kernel (ours, then torch's SDPA or
the torch port of mamba's reference scan), at ``gpu_bench.SIZES["gpu"]``. On a GPU only:

    .venv/bin/python -m pytest benchmarks/test_bench_gpu.py --benchmark-only --benchmark-group-by=group

``gpu_bench.py`` reports the same cases as fractions of the device's ceilings; its ``--tiny`` dry
run (tests/test_gpu_bench.py) shows without a GPU that every case and its torch counterpart run.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_bench  # noqa: E402

pytestmark = pytest.mark.gpu
KERNELS = ["numba_cuda.flash_attention", "numba_cuda.selective_scan", "cupy.ssd_chunked", "cupy.fft_conv",
           "numba_cuda.block_sparse_attention"]  # the first two have torch counterparts


@pytest.fixture(scope="module")
def cases():
    import cupy

    cupy.cuda.set_allocator(None)
    rng, sizes = np.random.default_rng(0), gpu_bench.SIZES["gpu"]
    return {case.kernel: case for case in gpu_bench.numba_cases(sizes, rng) + gpu_bench.array_module_cases(sizes, rng, cupy)}


def _synchronized(run):
    from numba import cuda

    run()
    cuda.synchronize()


@pytest.mark.parametrize("kernel", KERNELS)
def test_ours(benchmark, cases, kernel):
    benchmark.group = kernel
    benchmark.pedantic(_synchronized, args=(cases[kernel].run,), rounds=10, warmup_rounds=1)


@pytest.mark.parametrize("kernel", KERNELS[:2])
def test_torch(benchmark, cases, kernel):
    import torch

    benchmark.group = kernel
    benchmark.pedantic(gpu_bench._synchronized, args=(torch, "cuda", cases[kernel].torch_run), rounds=10,
                       warmup_rounds=1)
