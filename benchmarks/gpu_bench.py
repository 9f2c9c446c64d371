"""GPU benchmark: correctness first, then (on a GPU) time, achieved FLOP rate and memory bandwidth
as fractions of this device's measured ceilings, and the ratio against torch.

    .venv/bin/python benchmarks/gpu_bench.py [--json figures.json] [--tiny]

Correctness: every registered GPU implementation is checked with ``equiv.check`` (the call
users make). Without a GPU that runs under Numba's CUDA simulator or on NumPy, and the script
lists the figures that wait for a GPU. Ceilings: a large device-to-device copy (bandwidth) and a
large float32 matmul (FLOP rate; cuBLAS through CuPy, TF32 off). Targets (issue 5): FlashAttention
float32 forward >= 50% of the float32 rate at T = 4096, D = 64; scans >= 60% of the bandwidth.

``--tiny`` runs the timing part at tiny sizes wherever it is (under the simulator, the CuPy code on
NumPy, torch on the CPU, wall-clock timers): its figures mean nothing, it only shows that every
benchmark case and its torch counterpart run, so a GPU session does not find a broken script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # torch ports of peers

from seqcheck.gpu import use_simulator_without_gpu  # noqa: E402

use_simulator_without_gpu()

from seqcheck import equiv  # noqa: E402
from seqcheck.equiv import implementations  # noqa: E402
from seqcheck.gpu import has_gpu, where  # noqa: E402
from seqcheck.gpu.backend import gpu_name  # noqa: E402

SIZES = {
    "gpu": {"flash": dict(B=4, T=4096, H=8, D=64, block=32), "scan": dict(T=4096, D=1024, N=16, chunk=32, channels=64),
            "ssd": dict(T=4096, H=4, P=64, N=16, chunk=64), "conv": dict(T=4096, D=1024),
            "moe": dict(B=1, T=4096, D=1024, F=2048, E=8, k=2),
            "gla": dict(B=4, T=4096, H=8, K=64, V=64, chunk=64), "wkv": dict(B=4, T=4096, C=1024),
            "copy_floats": 64 * 2**20, "matmul": 8192},
    "tiny": {"flash": dict(B=1, T=8, H=2, D=4, block=4), "scan": dict(T=8, D=8, N=4, chunk=4, channels=4),
             "ssd": dict(T=8, H=2, P=4, N=4, chunk=4), "conv": dict(T=8, D=4),
             "moe": dict(B=1, T=8, D=4, F=8, E=4, k=2),
             "gla": dict(B=1, T=8, H=1, K=4, V=4, chunk=4), "wkv": dict(B=1, T=8, C=8),
             "copy_floats": 1024, "matmul": 16},
}
WAITING = ["device ceilings (copy bandwidth, float32 matmul rate)",
           "numba_cuda.flash_attention at T=4096, D=64: time, FLOP rate / ceiling, ratio to torch SDPA",
           "numba_cuda.flash_attention_backward at T=4096, D=64: time, FLOP rate / ceiling, ratio to SDPA's backward",
           "numba_cuda.selective_scan at T=4096, D=1024, N=16: time, bandwidth / ceiling, ratio to the torch port",
           "cupy.ssd_chunked and cupy.fft_conv at T=4096: time, bandwidth / ceiling",
           "cupy.moe_dispatch at T=4096, D=1024, F=2048, E=8, top-2: time, FLOP rate / ceiling",
           "numba_cuda.gla_chunked at T=4096, H=8, K=V=64: time, FLOP rate / ceiling (no torch counterpart)",
           "numba_cuda.wkv4 at T=4096, C=1024: time, bandwidth / ceiling (no torch counterpart)"]


@dataclass
class Case:
    """One benchmark: ``run()`` launches the kernel on inputs already on the device; ``work`` is
    {"flops": n} or {"bytes": n}; ``torch_run(torch, device)`` the torch counterpart, if any."""

    kernel: str
    shape: str
    run: Callable[[], object]
    work: dict
    torch_run: Callable | None = None


def correctness() -> list[dict]:
    rows = []
    for impl in implementations():
        for dtype in impl.dtypes:
            place = where(impl.runtime)
            result = equiv.check_implementation(impl, dtype, seed=0, max_examples=5 if place == "simulator" else 50)
            rows.append({"implementation": impl.name, "form": impl.form, "dtype": dtype, "where": place,
                         "passed": result.passed, "worst_ratio": result.worst_ratio, "examples": result.examples})
            print(f"{'PASSED' if result.passed else 'FAILED'} {impl.name} [{dtype}, {place}] "
                  f"worst error / budget {result.worst_ratio:.3g} over {result.examples} examples")
    return rows


def cuda_seconds(run, repeats: int = 10) -> float:
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
        times.append(start.elapsed_time(stop) / 1e3)
    return float(np.median(times))


def wall_seconds(run, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``run()`` (``--tiny``: the simulator and NumPy are synchronous)."""
    run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def ceilings(sizes: dict, xp, seconds) -> dict:
    from numba import cuda

    n = sizes["copy_floats"]
    source, target = cuda.device_array(n, np.float32), cuda.device_array(n, np.float32)
    figures = {"bandwidth_bytes_per_s": 2 * 4 * n / seconds(lambda: target.copy_to_device(source))}
    size = sizes["matmul"]
    a, b = xp.ones((size, size), xp.float32), xp.ones((size, size), xp.float32)
    figures["float32_flops_per_s"] = 2 * size**3 / seconds(lambda: a @ b)
    return figures


def numba_cases(sizes: dict, rng) -> list[Case]:
    from seqcheck.gpu import flash_bwd_numba, flash_numba, gla_numba, scan_numba, wkv_numba
    from seqcheck.reference.sparse import bigbird_block_mask

    B, T, H, D, block = (sizes["flash"][name] for name in ("B", "T", "H", "D", "block"))
    q, k, v = (rng.standard_normal((B, T, H, D)).astype(np.float32) for _ in range(3))
    kernel, grid, threads, arguments, _ = flash_numba.prepare(q, k, v, block_q=block, block_k=block)
    flash = Case("numba_cuda.flash_attention", f"B={B} T={T} H={H} D={D} float32, blocks of {block}",
                 lambda: flash_numba.launch(kernel, grid, threads, arguments), {"flops": 4 * B * H * T * T * D},
                 partial(_sdpa, q=q, k=k, v=v))  # bound now: q, k, v are reused below

    tiles = -(-T // block)
    block_mask = bigbird_block_mask(tiles, random_blocks=3, seed=0)
    s_kernel, s_grid, s_threads, s_arguments, _ = flash_numba.prepare_block_sparse(q, k, v, block_mask,
                                                                                   block_size=block)
    block_sparse = Case("numba_cuda.block_sparse_attention",
                        f"B={B} T={T} H={H} D={D} float32, BigBird ITC (3 random) on blocks of {block}: "
                        f"{int(block_mask.sum())} of {tiles * tiles} tiles",
                        lambda: flash_numba.launch(s_kernel, s_grid, s_threads, s_arguments),
                        {"flops": 4 * B * H * D * int(block_mask.sum()) * block * block})

    do = rng.standard_normal((B, T, H, D)).astype(np.float32)
    launches, _ = flash_bwd_numba.prepare_backward(q, k, v, cotangent=do, block_q=block, block_k=block)
    flash_backward = Case("numba_cuda.flash_attention_backward", f"B={B} T={T} H={H} D={D} float32, blocks of {block}",
                          launches, {"flops": 14 * B * H * T * T * D},  # 7 T x T x D products: scores twice
                          partial(_sdpa_backward, q=q, k=k, v=v, do=do))

    T, Dch, N, chunk, channels = (sizes["scan"][name] for name in ("T", "D", "N", "chunk", "channels"))
    u, delta, z = (rng.standard_normal((1, T, Dch)).astype(np.float32) for _ in range(3))
    delta = np.abs(delta) * 0.1
    A = -np.exp(rng.standard_normal((Dch, N))).astype(np.float32)
    Bm, Cm = (rng.standard_normal((1, T, N)).astype(np.float32) for _ in range(2))
    s_kernel, s_grid, s_threads, s_arguments, _ = scan_numba.prepare(u, delta, A, Bm, Cm, z=z, chunk=chunk,
                                                                     channels_per_block=channels)
    scan = Case("numba_cuda.selective_scan", f"B=1 T={T} D={Dch} N={N} float32",
                lambda: scan_numba.launch(s_kernel, s_grid, s_threads, s_arguments),
                {"bytes": 4 * (4 * T * Dch + 2 * T * N)},  # u, delta, z, out; B and C
                lambda torch, device: _scan_port(torch, device, u, delta, A, Bm, Cm, z))

    B, T, H, K, V, chunk = (sizes["gla"][name] for name in ("B", "T", "H", "K", "V", "chunk"))
    q, k = (rng.standard_normal((B, T, H, K)).astype(np.float32) for _ in range(2))
    v = rng.standard_normal((B, T, H, V)).astype(np.float32)
    g = (-np.logaddexp(0.0, -rng.standard_normal((B, T, H, K))) / 16).astype(np.float32)  # GLA's gate
    g_kernel, g_grid, g_threads, g_arguments, _ = gla_numba.prepare(q, k, v, g, chunk_size=chunk)
    c = g_arguments[7]  # the kernel's chunk: min(chunk, the tile that fits)
    gla = Case("numba_cuda.gla_chunked", f"B={B} T={T} H={H} K={K} V={V} float32, chunks of {c}",
               lambda: gla_numba.launch(g_kernel, g_grid, g_threads, g_arguments),
               # per chunk: scores c^2 K, intra outputs c^2 V, the state's term and update 4 c K V
               {"flops": B * H * T * (c * (K + V) + 4 * K * V)})

    B, T, C = (sizes["wkv"][name] for name in ("B", "T", "C"))
    kw, vw = rng.standard_normal((B, T, C)).astype(np.float32), rng.standard_normal((B, T, C)).astype(np.float32)
    w, uw = np.exp(rng.standard_normal(C)).astype(np.float32), rng.standard_normal(C).astype(np.float32)
    w_kernel, w_grid, w_threads, w_arguments, _ = wkv_numba.prepare(kw, vw, w, uw)
    wkv = Case("numba_cuda.wkv4", f"B={B} T={T} C={C} float32",
               lambda: wkv_numba.launch(w_kernel, w_grid, w_threads, w_arguments),
               {"bytes": 4 * 3 * B * T * C})  # k, v, out
    return [flash, block_sparse, flash_backward, scan, gla, wkv]


def array_module_cases(sizes: dict, rng, xp) -> list[Case]:
    from seqcheck.gpu import conv_cupy, moe_cupy, ssd_cupy

    def device(*shape):
        return xp.asarray(rng.standard_normal(shape), dtype=xp.float32)

    T, H, P, N, chunk = (sizes["ssd"][name] for name in ("T", "H", "P", "N", "chunk"))
    x, Bm, Cm = device(1, T, H, P), device(1, T, 1, N), device(1, T, 1, N)
    dt, A = xp.abs(device(1, T, H)) * 0.1, -xp.abs(device(H))
    ssd = Case("cupy.ssd_chunked", f"B=1 T={T} H={H} P={P} N={N} chunks of {chunk} float32",
               lambda: ssd_cupy.ssd_chunked_device(x, dt, A, Bm, Cm, chunk, None, xp),
               {"bytes": 4 * (2 * T * H * P + 2 * T * N + T * H)})  # x, y; B, C; dt
    T, Dch = sizes["conv"]["T"], sizes["conv"]["D"]
    u, K = device(1, T, Dch), device(Dch, T)
    conv = Case("cupy.fft_conv", f"B=1 T=L={T} D={Dch} float32", lambda: conv_cupy.fft_conv_device(u, K, None, xp),
                {"bytes": 4 * 3 * T * Dch})  # u, K, y
    B, T, D, F, E, k = (sizes["moe"][name] for name in ("B", "T", "D", "F", "E", "k"))
    tokens, w_gate, w_up, w_down = device(B, T, D), device(E, D, F), device(E, D, F), device(E, F, D)
    index = xp.asarray(np.argsort(rng.standard_normal((B, T, E)), axis=-1)[..., :k], dtype=xp.int64)
    gate = xp.full((B, T, k), 1.0 / k, dtype=xp.float32)
    moe = Case("cupy.moe_dispatch", f"B={B} T={T} D={D} F={F} E={E} top-{k} float32, no capacity",
               lambda: moe_cupy.moe_dispatch_device(tokens, index, gate, w_gate, w_up, w_down, None, xp),
               {"flops": 6 * B * T * k * D * F})  # three products of 2 D F per routed slot
    return [ssd, conv, moe]


def measure(case: Case, ceiling: dict, seconds, torch_device) -> dict:
    elapsed = seconds(case.run)
    (kind, amount), = case.work.items()
    rate = amount / elapsed
    limit = ceiling["float32_flops_per_s" if kind == "flops" else "bandwidth_bytes_per_s"]
    row = {"kernel": case.kernel, "shape": case.shape, "seconds": elapsed, f"{kind}_per_s": rate,
           "fraction": rate / limit, "torch_ratio": None}
    if case.torch_run is not None and torch_device is not None:
        import torch

        row["torch_ratio"] = seconds(lambda: _synchronized(torch, torch_device, case.torch_run)) / elapsed
    return row


def _synchronized(torch, device, run):
    run(torch, device)
    if device == "cuda":
        torch.cuda.synchronize()


def _torch_device(tiny: bool):
    """"cuda" where torch sees the GPU, "cpu" for ``--tiny`` runs, else None (no ratio)."""
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else ("cpu" if tiny else None)


def _sdpa(torch, device, q, k, v):
    q, k, v = (torch.from_numpy(a).to(device).transpose(1, 2) for a in (q, k, v))
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _sdpa_backward(torch, device, q, k, v, do):
    q, k, v = (torch.from_numpy(a).to(device).transpose(1, 2).requires_grad_(True) for a in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return torch.autograd.grad(out, (q, k, v), torch.from_numpy(do).to(device).transpose(1, 2))


def _scan_port(torch, device, u, delta, A, B, C, z):
    from peers.mamba_selective_scan_ref import torch_selective_scan_ref

    first = [torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, 1, -1))).to(device) for a in (u, delta, B, C, z)]
    return torch_selective_scan_ref(first[0], first[1], torch.from_numpy(A).to(device), first[2], first[3], z=first[4])


def timing(tiny: bool) -> dict:
    """Ceilings and one row per case, at the GPU sizes on a GPU or at tiny ones with ``tiny``."""
    sizes = SIZES["tiny" if tiny else "gpu"]
    if has_gpu():
        import cupy

        cupy.cuda.set_allocator(None)
        xp, seconds = cupy, cuda_seconds
    else:
        xp, seconds = np, wall_seconds
    rng = np.random.default_rng(0)
    ceiling = ceilings(sizes, xp, seconds)
    torch_device = _torch_device(tiny)
    rows = [measure(case, ceiling, seconds, torch_device)
            for case in numba_cases(sizes, rng) + array_module_cases(sizes, rng, xp)]
    return {"ceilings": ceiling, "kernels": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=None, help="write the figures here as JSON")
    parser.add_argument("--tiny", action="store_true",
                        help="time tiny sizes wherever this runs (figures meaningless: a dry run of the timing code)")
    options = parser.parse_args(argv)
    figures = {"device": gpu_name() if has_gpu() else "none", "sizes": "tiny" if options.tiny else "gpu",
               "correctness": correctness()}
    if has_gpu() or options.tiny:
        figures.update(timing(options.tiny))
        for row in figures["kernels"]:
            print(json.dumps(row))
    else:
        print("no GPU here: these figures wait for one:\n" + "\n".join(f"  - {item}" for item in WAITING))
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(row["passed"] for row in figures["correctness"]) else 1


if __name__ == "__main__":
    sys.exit(main())
