"""RWKV-4's WKV forward (Peng et al. 2023, arXiv:2305.13048) as a Numba CUDA kernel: the stable
(p, q, o) recurrence of ``BlinkDL/RWKV-LM: RWKV-v4/cuda/wkv_cuda.cu``.

One thread per (batch, channel) holds the channel's state in registers: p and q, the
numerator's and denominator's sums scaled by e^{-o}, and o, their running maximum exponent
(-inf for an empty state), and steps through time:

    top = max(o, u + k_t),      a = e^{o - top},     b = e^{u + k_t - top}
    wkv_t = (a p + b v_t) / (a q + b)
    top = max(o - w, k_t),      a = e^{o - w - top}, b = e^{k_t - top}
    p, q, o = a p + b v_t,  a q + b,  top

Every exponential is of a number <= 0, so nothing overflows at any k (the naive sums overflow
near k = 88 in float32). The decay w > 0 is subtracted, as the reference's (the CUDA kernel
takes -exp(time_decay) and adds it).

Tiling: time is cut into chunks; per chunk the block stages k and v of its channels in shared
memory, synchronises, every thread steps through the chunk from the shared copies and writes
its outputs; the state stays in registers from chunk to chunk. Grid ``(ceil(C / channels), B)``,
``channels`` threads. Tiles: chunks of 32 steps and 64 channels per block on a GPU, 4 and 4
under the simulator (so its short sequences span several chunks and blocks).

Supported: initial_state (B, C, 3) [p, q, o] float32, return_state (the last state, float32).
k, v float32 or float16 (one dtype), w and u float32; arithmetic and state in float32; wkv in
the inputs' dtype.

Written for Numba's CUDA simulator as well (CI has no GPU): each shared array on its own line,
``math.exp`` only, block-level synchronisation only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import config, cuda, float32

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def default_tiles() -> tuple[int, int]:
    """(chunk, channels per block): (32, 64) on a GPU; (4, 4) under the simulator."""
    return (4, 4) if config.ENABLE_CUDASIM else (32, 64)


@functools.lru_cache(maxsize=None)
def wkv_kernel(chunk: int, channels: int):
    """The kernel for time chunks of ``chunk`` steps and ``channels`` threads per block.

    Arguments: k, v (B, T, C) of one dtype; w, u (C,) float32; s0 (B, C, 3) float32 (a
    placeholder unless ``has_s0``); out (B, T, C) in the inputs' dtype; state (B, C, 3) float32.
    Launch: grid (ceil(C / channels), B), ``channels`` threads.
    """
    CH, CHUNK = channels, chunk
    NEG_INF = -math.inf

    @cuda.jit
    def wkv_forward(k, v, w, u, s0, has_s0, out, state):
        k_tile = cuda.shared.array((CHUNK, CH), float32)
        v_tile = cuda.shared.array((CHUNK, CH), float32)

        tid = cuda.threadIdx.x
        c = cuda.blockIdx.x * CH + tid
        batch = cuda.blockIdx.y
        T = k.shape[1]
        active = c < k.shape[2]

        p = float32(0.0)
        q = float32(0.0)
        o = float32(NEG_INF)
        decay = float32(0.0)
        bonus = float32(0.0)
        if active:
            decay = w[c]
            bonus = u[c]
            if has_s0:
                p = s0[batch, c, 0]
                q = s0[batch, c, 1]
                o = s0[batch, c, 2]

        for t0 in range(0, T, CHUNK):
            steps = min(CHUNK, T - t0)
            if active:
                for s in range(steps):
                    k_tile[s, tid] = float32(k[batch, t0 + s, c])
                    v_tile[s, tid] = float32(v[batch, t0 + s, c])
            cuda.syncthreads()

            if active:
                for s in range(steps):
                    kt = k_tile[s, tid]
                    vt = v_tile[s, tid]
                    uk = bonus + kt
                    top = max(o, uk)
                    a = math.exp(o - top)
                    b = math.exp(uk - top)
                    out[batch, t0 + s, c] = (a * p + b * vt) / (a * q + b)
                    ow = o - decay
                    top = max(ow, kt)
                    a = math.exp(ow - top)
                    b = math.exp(kt - top)
                    p = a * p + b * vt
                    q = a * q + b
                    o = top
            cuda.syncthreads()  # the tiles are overwritten by the next chunk

        if active:
            state[batch, c, 0] = p
            state[batch, c, 1] = q
            state[batch, c, 2] = o

    return wkv_forward


def _float32(name, value, shape):
    value = np.asarray(value)
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {value.shape}")
    return np.ascontiguousarray(value, dtype=np.float32)


def prepare(k, v, w, u, *, initial_state=None, chunk=None, channels_per_block=None):
    """Everything a launch needs, on the device: (kernel, grid, threads, arguments, (out, state)),
    outputs filled with NaN. ``chunk`` / ``channels_per_block`` override ``default_tiles()``."""
    k, v = np.asarray(k), np.asarray(v)
    if k.dtype not in SUPPORTED_DTYPES or k.ndim != 3 or 0 in k.shape:
        raise TypeError(f"k must be float32 or float16 (B, T, C) with T >= 1; got {k.dtype} {k.shape}")
    if v.shape != k.shape or v.dtype != k.dtype:
        raise ValueError(f"v must be like k ({k.dtype} {k.shape}); got {v.dtype} {v.shape}")
    batch, T, C = k.shape
    w, u = _float32("w", w, (C,)), _float32("u", u, (C,))
    if not (np.isfinite(w) & (w > 0)).all():
        raise ValueError("w must hold finite decays > 0")
    s0 = np.zeros((1, 1, 3), np.float32) if initial_state is None else _float32(
        "initial_state", initial_state, (batch, C, 3))

    default_chunk, default_channels = default_tiles()
    chunk = default_chunk if chunk is None else int(chunk)
    channels = default_channels if channels_per_block is None else int(channels_per_block)
    kernel = wkv_kernel(chunk, channels)
    grid = (-(-C // channels), batch)
    out = cuda.to_device(np.full(k.shape, np.nan, dtype=k.dtype))
    state = cuda.to_device(np.full((batch, C, 3), np.nan, dtype=np.float32))
    device = cuda.to_device
    arguments = (device(np.ascontiguousarray(k)), device(np.ascontiguousarray(v)), device(w), device(u),
                 device(s0), initial_state is not None, out, state)
    return kernel, grid, channels, arguments, (out, state)


def launch(kernel, grid, threads, arguments) -> None:
    kernel[grid, threads](*arguments)


def wkv4_recurrent(k, v, w, u, *, initial_state=None, return_state=False, chunk=None, channels_per_block=None):
    """RWKV-4's WKV forward on the GPU (or Numba's CUDA simulator): NumPy in, NumPy out.

    The form ``rwkv.wkv4.recurrent``: k, v (B, T, C) float32 or float16, w > 0 and u (C,);
    returns wkv (B, T, C) in the inputs' dtype and, if ``return_state``, the state (B, C, 3)
    [p, q, o] float32. Outputs are filled with NaN before the launch.
    """
    kernel, grid, threads, arguments, (out, state) = prepare(
        k, v, w, u, initial_state=initial_state, chunk=chunk, channels_per_block=channels_per_block)
    launch(kernel, grid, threads, arguments)
    cuda.synchronize()
    return (out.copy_to_host(), state.copy_to_host()) if return_state else out.copy_to_host()


def ptx_cases():
    """(name, kernel, signature) of representative configurations, for ``numba.cuda.compile_ptx``."""
    cases = []
    for dtype in ("float32", "float16"):
        data, f1, f3 = f"{dtype}[:, :, ::1]", "float32[::1]", "float32[:, :, ::1]"
        signature = f"void({data}, {data}, {f1}, {f1}, {f3}, boolean, {data}, {f3})"
        cases.append((f"wkv_forward[chunk 32, 64 channels, {dtype}]", wkv_kernel(32, 64), signature))  # a GPU's tiles
    return cases
