"""GPU benchmark: correctness first, then (on a GPU) time, achieved FLOP rate and memory bandwidth
as fractions of this device's measured ceilings, and the ratio against torch.

    .venv/bin/python benchmarks/gpu_bench.py [--json figures.json]

Correctness: every registered GPU implementation is checked with ``equiv.check`` (the call
users make). Without a GPU that runs under Numba's CUDA simulator or on NumPy, and the script
lists the figures that wait for a GPU. Ceilings: a large device-to-device copy (bandwidth) and a
large float32 matmul (FLOP rate; cuBLAS through CuPy, TF32 off). Targets (issue 5): FlashAttention
float32 forward >= 50% of the float32 rate at T = 4096, D = 64; scans >= 60% of the bandwidth.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # torch ports of peers

from seqcheck.gpu.registry import use_simulator_without_gpu  # noqa: E402

use_simulator_without_gpu()

from seqcheck import equiv  # noqa: E402
from seqcheck.gpu import has_gpu, implementations, where  # noqa: E402
from seqcheck.gpu.backend import gpu_name  # noqa: E402

WAITING = ["device ceilings (copy bandwidth, float32 matmul rate)",
           "numba_cuda.flash_attention at T=4096, D=64: time, FLOP rate / ceiling, ratio to torch SDPA",
           "numba_cuda.selective_scan at T=4096, D=1024, N=16: time, bandwidth / ceiling, ratio to the torch port",
           "cupy.ssd_chunked and cupy.fft_conv at T=4096: time, bandwidth / ceiling"]


def correctness() -> list[dict]:
    rows = []
    for impl in implementations():
        for dtype in impl.dtypes:
            place = where(impl.runtime)
            result = equiv.check(impl.load(), impl.form, dtype=dtype, inputs=impl.inputs(place == "simulator"),
                                 seed=0, max_examples=5 if place == "simulator" else 50)
            rows.append({"implementation": impl.name, "form": impl.form, "dtype": dtype, "where": place,
                         "passed": result.passed, "worst_ratio": result.worst_ratio, "examples": result.examples})
            print(f"{'PASSED' if result.passed else 'FAILED'} {impl.name} [{dtype}, {place}] "
                  f"worst error / budget {result.worst_ratio:.3g} over {result.examples} examples")
    return rows


def gpu_seconds(run, repeats: int = 10) -> float:
    """Median seconds of ``run()`` on the device, timed with CUDA events after a warm-up."""
    from numba import cuda

    run()
    cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cuda.event(), cuda.event()
        start.record()
        run()
        stop.record()
        stop.synchronize()
        times.append(cuda.event_elapsed_time(start, stop) / 1e3)
    return float(np.median(times))


def ceilings() -> dict:
    from numba import cuda

    n = 64 * 2**20  # 256 MiB of float32
    source, target = cuda.device_array(n, np.float32), cuda.device_array(n, np.float32)
    copy = gpu_seconds(lambda: target.copy_to_device(source))
    figures = {"bandwidth_bytes_per_s": 2 * 4 * n / copy}
    try:
        import cupy

        cupy.cuda.set_allocator(None)
        size = 8192
        a, b = cupy.ones((size, size), cupy.float32), cupy.ones((size, size), cupy.float32)
        figures["float32_flops_per_s"] = 2 * size**3 / gpu_seconds(lambda: a @ b, repeats=5)
    except ImportError:
        figures["float32_flops_per_s"] = None
    return figures


def kernels(ceiling: dict) -> list[dict]:
    from seqcheck.gpu import flash_numba, scan_numba

    rng = np.random.default_rng(0)
    rows = []
    B, T, H, D = 4, 4096, 8, 64
    q, k, v = (rng.standard_normal((B, T, H, D)).astype(np.float32) for _ in range(3))
    kernel, grid, threads, arguments, _ = flash_numba.prepare(q, k, v, block_q=32, block_k=32)
    seconds = gpu_seconds(lambda: flash_numba.launch(kernel, grid, threads, arguments))
    flops = 4 * B * H * T * T * D
    rows.append({"kernel": "numba_cuda.flash_attention", "shape": f"B={B} T={T} H={H} D={D} float32",
                 "seconds": seconds, "flops_per_s": flops / seconds,
                 "fraction": _fraction(flops / seconds, ceiling["float32_flops_per_s"]),
                 "torch_ratio": _torch_ratio(seconds, lambda torch: _sdpa(torch, q, k, v))})

    Dch, N = 1024, 16
    u, delta, z = (rng.standard_normal((1, T, Dch)).astype(np.float32) for _ in range(3))
    delta = np.abs(delta) * 0.1
    A = -np.exp(rng.standard_normal((Dch, N))).astype(np.float32)
    Bm, Cm = (rng.standard_normal((1, T, N)).astype(np.float32) for _ in range(2))
    kernel, grid, threads, arguments, _ = scan_numba.prepare(u, delta, A, Bm, Cm, z=z, chunk=32,
                                                             channels_per_block=64)
    seconds = gpu_seconds(lambda: scan_numba.launch(kernel, grid, threads, arguments))
    moved = 4 * (4 * T * Dch + 2 * T * N)  # u, delta, z, out; B and C
    rows.append({"kernel": "numba_cuda.selective_scan", "shape": f"B=1 T={T} D={Dch} N={N} float32",
                 "seconds": seconds, "bytes_per_s": moved / seconds,
                 "fraction": _fraction(moved / seconds, ceiling["bandwidth_bytes_per_s"]),
                 "torch_ratio": _torch_ratio(seconds, lambda torch: _scan_port(torch, u, delta, A, Bm, Cm, z))})
    return rows + cupy_kernels(ceiling, rng)


def cupy_kernels(ceiling: dict, rng) -> list[dict]:
    try:
        import cupy
    except ImportError:
        return []
    from seqcheck.gpu import conv_cupy, ssd_cupy

    def device(*shape):
        return cupy.asarray(rng.standard_normal(shape), dtype=cupy.float32)

    T, H, P, N = 4096, 4, 64, 16
    x, Bm, Cm = device(1, T, H, P), device(1, T, 1, N), device(1, T, 1, N)
    dt, A = cupy.abs(device(1, T, H)) * 0.1, -cupy.abs(device(H))
    seconds = gpu_seconds(lambda: ssd_cupy.ssd_chunked_device(x, dt, A, Bm, Cm, 64, None, cupy))
    moved = 4 * (2 * T * H * P + 2 * T * N + T * H)  # x, y; B, C; dt
    rows = [{"kernel": "cupy.ssd_chunked", "shape": f"B=1 T={T} H={H} P={P} N={N} chunks of 64 float32",
             "seconds": seconds, "bytes_per_s": moved / seconds,
             "fraction": _fraction(moved / seconds, ceiling["bandwidth_bytes_per_s"])}]
    Dch = 1024
    u, K = device(1, T, Dch), device(Dch, T)
    seconds = gpu_seconds(lambda: conv_cupy.fft_conv_device(u, K, None, cupy))
    moved = 4 * 3 * T * Dch  # u, K, y
    rows.append({"kernel": "cupy.fft_conv", "shape": f"B=1 T=L={T} D={Dch} float32", "seconds": seconds,
                 "bytes_per_s": moved / seconds,
                 "fraction": _fraction(moved / seconds, ceiling["bandwidth_bytes_per_s"])})
    return rows


def _fraction(rate, ceiling):
    return None if ceiling is None else rate / ceiling


def _torch_ratio(ours: float, run):
    """torch's time over ours (above 1: ours is faster); None where torch has no CUDA."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    run(torch)
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        run(torch)
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / 1e4 / ours


def _sdpa(torch, q, k, v):
    q, k, v = (torch.from_numpy(a).cuda().transpose(1, 2) for a in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _scan_port(torch, u, delta, A, B, C, z):
    from peers.mamba_selective_scan_ref import torch_selective_scan_ref

    first = [torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, 1, -1))).cuda() for a in (u, delta, B, C, z)]
    return torch_selective_scan_ref(first[0], first[1], torch.from_numpy(A).cuda(), first[2], first[3], z=first[4])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    options = parser.parse_args(argv)
    figures = {"device": gpu_name() if has_gpu() else "none", "correctness": correctness()}
    if has_gpu():
        figures["ceilings"] = ceilings()
        figures["kernels"] = kernels(figures["ceilings"])
        for row in figures["kernels"]:
            print(json.dumps(row))
    else:
        print("no GPU here: these figures wait for one:\n" + "\n".join(f"  - {item}" for item in WAITING))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(row["passed"] for row in figures["correctness"]) else 1


if __name__ == "__main__":
    sys.exit(main())
