"""Mamba's selective scan forward (Gu & Dao 2023, arXiv:2312.00752) as a Numba CUDA kernel.

One thread per (batch, channel) holds the channel's N states, A's row and, for time-invariant
B / C, their rows in registers (local arrays sized by a compile-time state capacity), and steps
through time:

    dt = softplus(delta + delta_bias),  x_n = exp(dt A_n) x_n + (dt u) B_n,  y = sum_n C_n x_n,
    out = (y + D u) * silu(z)

Time is cut into chunks: per chunk, the block stages u, delta and z of its channels and the
chunk's rows of time-varying B and C in shared memory, synchronises, and every thread steps
through the chunk from the shared copies; the states stay in registers from chunk to chunk.
A block's channels lie in one group of B and one of C (grid over channel segments of
gcd(D/G_B, D/G_C) channels), so a chunk of B or C is one (chunk, N) tile per block.

Supported: real A (D, N); B and C time-invariant (D, N), shared (B, T, N) or grouped
(B, T, G, N), each in its own layout; D, z, delta_bias, delta_softplus, initial_state,
return_state. Unsupported: complex A (a TypeError). u, delta, B, C, z float32 or float16 (one
dtype), A, D, delta_bias, initial_state float32; arithmetic in float32; out in the inputs'
dtype, the last state float32.

Written for Numba's CUDA simulator as well (CI has no GPU): each shared array on its own line,
``math.exp`` / ``math.log1p`` only, block-level synchronisation only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import config, cuda, float32

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
MAX_STATE_DIM = 256


def state_capacity(N: int) -> int:
    """The compile-time state dimension: the smallest power of two >= N, at least 4."""
    capacity = 4
    while capacity < N:
        capacity *= 2
    return capacity


def default_tiles() -> tuple[int, int]:
    """(chunk, channels per block): (32, 64) on a GPU; (4, 4) under the simulator, so that its
    tiny sequences still span several chunks and blocks."""
    return (4, 4) if config.ENABLE_CUDASIM else (32, 64)


@functools.lru_cache(maxsize=None)
def scan_kernel(chunk: int, channels: int, capacity: int):
    """The kernel for time chunks of ``chunk`` steps, ``channels`` threads per block, N <= ``capacity``.

    Arguments: u, delta (B, T, D); A (D, N) float32; B_fixed (D, N) and B_steps (B, T, G_B, N)
    (one of them a (1, N) / (1, 1, 1, N) placeholder, per ``b_fixed``); C likewise; D_skip (D,),
    bias (D,) float32; z (B, T, D) (placeholder unless ``has_z``); h0 (B, D, N) float32 (unless
    ``has_h0``); out (B, T, D); state (B, D, N) float32; ``segment``: channels per segment.
    Launch: grid (D / segment, ceil(segment / channels), B), ``channels`` threads.
    """
    CH, NC = channels, capacity
    CHUNK = chunk

    @cuda.jit
    def selective_scan_forward(u, delta, A, B_fixed, B_steps, b_fixed, C_fixed, C_steps, c_fixed,
                               D_skip, has_D, bias, softplus, z, has_z, h0, has_h0, out, state, segment):
        u_tile = cuda.shared.array((CHUNK, CH), float32)
        dt_tile = cuda.shared.array((CHUNK, CH), float32)
        z_tile = cuda.shared.array((CHUNK, CH), float32)
        b_tile = cuda.shared.array((CHUNK, NC), float32)
        c_tile = cuda.shared.array((CHUNK, NC), float32)
        x = cuda.local.array(NC, float32)
        a = cuda.local.array(NC, float32)
        b_row = cuda.local.array(NC, float32)
        c_row = cuda.local.array(NC, float32)

        tid = cuda.threadIdx.x
        first = cuda.blockIdx.x * segment  # the segment's first channel
        within = cuda.blockIdx.y * CH + tid
        batch = cuda.blockIdx.z
        T = u.shape[1]
        Dch = u.shape[2]
        N = A.shape[1]
        d = first + within
        active = within < segment
        b_group = first // (Dch // B_steps.shape[2])
        c_group = first // (Dch // C_steps.shape[2])

        skip = float32(0.0)
        dt_bias = float32(0.0)
        if active:
            for n in range(N):
                a[n] = A[d, n]
                x[n] = h0[batch, d, n] if has_h0 else float32(0.0)
                if b_fixed:
                    b_row[n] = float32(B_fixed[d, n])
                if c_fixed:
                    c_row[n] = float32(C_fixed[d, n])
            dt_bias = bias[d]
            if has_D:
                skip = D_skip[d]

        for t0 in range(0, T, CHUNK):
            steps = min(CHUNK, T - t0)
            if active:
                for s in range(steps):
                    u_tile[s, tid] = float32(u[batch, t0 + s, d])
                    dt_tile[s, tid] = float32(delta[batch, t0 + s, d])
                    if has_z:
                        z_tile[s, tid] = float32(z[batch, t0 + s, d])
            for idx in range(tid, steps * N, CH):
                s = idx // N
                n = idx - s * N
                if not b_fixed:
                    b_tile[s, n] = float32(B_steps[batch, t0 + s, b_group, n])
                if not c_fixed:
                    c_tile[s, n] = float32(C_steps[batch, t0 + s, c_group, n])
            cuda.syncthreads()

            if active:
                for s in range(steps):
                    dt = dt_tile[s, tid] + dt_bias
                    if softplus and dt <= float32(20.0):
                        dt = math.log1p(math.exp(dt))
                    du = dt * u_tile[s, tid]
                    y = float32(0.0)
                    for n in range(N):
                        bn = b_row[n] if b_fixed else b_tile[s, n]
                        cn = c_row[n] if c_fixed else c_tile[s, n]
                        x[n] = math.exp(dt * a[n]) * x[n] + du * bn
                        y += cn * x[n]
                    if has_D:
                        y += skip * u_tile[s, tid]
                    if has_z:
                        g = z_tile[s, tid]
                        if g >= 0:  # silu(g) = g sigmoid(g), without overflowing exp
                            y *= g / (float32(1.0) + math.exp(-g))
                        else:
                            e = math.exp(g)
                            y *= g * e / (float32(1.0) + e)
                    out[batch, t0 + s, d] = y
            cuda.syncthreads()  # the tiles are overwritten by the next chunk

        if active:
            for n in range(N):
                state[batch, d, n] = x[n]

    return selective_scan_forward


def _layout(name, M, batch, T, Dch, N, dtype):
    """(fixed (D, N), steps (B, T, G, N), is_fixed) for B or C; the unused one a placeholder."""
    M = np.asarray(M)
    if M.dtype.kind == "c":
        raise TypeError(f"{name}: complex B and C (complex A) are not supported by this kernel")
    if M.dtype != dtype:
        raise TypeError(f"{name} must have u's dtype {dtype}; got {M.dtype}")
    if M.shape == (Dch, N):
        return np.ascontiguousarray(M), np.zeros((1, 1, 1, N), dtype), True
    if M.shape == (batch, T, N):
        M = M[:, :, None, :]
    if M.ndim != 4 or M.shape[:2] != (batch, T) or M.shape[3] != N or M.shape[2] < 1 or Dch % M.shape[2]:
        raise ValueError(f"{name} must be (D, N), (B, T, N) or (B, T, G, N) with G dividing D={Dch}; got {M.shape}")
    return np.zeros((1, N), dtype), np.ascontiguousarray(M), False


def _float32(name, value, shape):
    value = np.asarray(value)
    if value.dtype.kind == "c":
        raise TypeError(f"{name}: complex values are not supported by this kernel (real A only)")
    if value.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {value.shape}")
    return np.ascontiguousarray(value, dtype=np.float32)


def prepare(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False,
            initial_state=None, chunk=None, channels_per_block=None):
    """Everything a launch needs, on the device: (kernel, grid, threads, arguments, (out, state)),
    outputs filled with NaN. ``chunk`` / ``channels_per_block`` override ``default_tiles()``."""
    u = np.asarray(u)
    if u.dtype not in SUPPORTED_DTYPES or u.ndim != 3 or 0 in u.shape:
        raise TypeError(f"u must be float32 or float16 (B, T, D) with T >= 1; got {u.dtype} {u.shape}")
    batch, T, Dch = u.shape
    A = np.asarray(A)
    if A.dtype.kind == "c":
        raise TypeError("complex A is not supported by this kernel (real A only)")
    if A.ndim != 2 or A.shape[0] != Dch or not 1 <= A.shape[1] <= MAX_STATE_DIM:
        raise ValueError(f"A must be (D, N) with D={Dch} and 1 <= N <= {MAX_STATE_DIM}; got {A.shape}")
    N = A.shape[1]
    delta = np.asarray(delta)
    if delta.shape != u.shape or delta.dtype != u.dtype:
        raise ValueError(f"delta must be like u ({u.dtype} {u.shape}); got {delta.dtype} {delta.shape}")
    B_fixed, B_steps, b_fixed = _layout("B", B, batch, T, Dch, N, u.dtype)
    C_fixed, C_steps, c_fixed = _layout("C", C, batch, T, Dch, N, u.dtype)
    if z is not None:
        z = np.asarray(z)
        if z.shape != u.shape or z.dtype != u.dtype:
            raise ValueError(f"z must be like u ({u.dtype} {u.shape}); got {z.dtype} {z.shape}")
    zeros = np.zeros(Dch, dtype=np.float32)
    D_skip = zeros if D is None else _float32("D", D, (Dch,))
    bias = zeros if delta_bias is None else _float32("delta_bias", delta_bias, (Dch,))
    h0 = np.zeros((1, 1, N), np.float32) if initial_state is None else _float32(
        "initial_state", initial_state, (batch, Dch, N))

    default_chunk, default_channels = default_tiles()
    chunk = default_chunk if chunk is None else int(chunk)
    channels = default_channels if channels_per_block is None else int(channels_per_block)
    # a block's channels must share one group of B and one of C
    group_b = Dch if b_fixed else Dch // B_steps.shape[2]
    group_c = Dch if c_fixed else Dch // C_steps.shape[2]
    segment = math.gcd(group_b, group_c)
    grid = (Dch // segment, -(-segment // channels), batch)

    kernel = scan_kernel(chunk, channels, state_capacity(N))
    out = cuda.to_device(np.full(u.shape, np.nan, dtype=u.dtype))
    state = cuda.to_device(np.full((batch, Dch, N), np.nan, dtype=np.float32))
    device = cuda.to_device
    arguments = (
        device(np.ascontiguousarray(u)), device(np.ascontiguousarray(delta)), device(_float32("A", A, (Dch, N))),
        device(B_fixed), device(B_steps), b_fixed, device(C_fixed), device(C_steps), c_fixed,
        device(D_skip), D is not None, device(bias), bool(delta_softplus),
        device(np.zeros((1, 1, 1), u.dtype) if z is None else np.ascontiguousarray(z)), z is not None,
        device(h0), initial_state is not None, out, state, segment)
    return kernel, grid, channels, arguments, (out, state)


def launch(kernel, grid, threads, arguments) -> None:
    kernel[grid, threads](*arguments)


def selective_scan(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False,
                   initial_state=None, return_state=False, chunk=None, channels_per_block=None):
    """The selective scan forward on the GPU (or Numba's CUDA simulator): NumPy in, NumPy out.

    The form ``mamba.selective_scan.recurrent`` with a real A: u, delta, z (B, T, D); A (D, N);
    B, C (D, N), (B, T, N) or (B, T, G, N); returns out (B, T, D) in u's dtype and, if
    ``return_state``, the last state (B, D, N) float32. ``chunk`` / ``channels_per_block``
    override ``default_tiles()``. Outputs are filled with NaN before the launch.
    """
    kernel, grid, threads, arguments, (out, state) = prepare(
        u, delta, A, B, C, D, z, delta_bias=delta_bias, delta_softplus=delta_softplus, initial_state=initial_state,
        chunk=chunk, channels_per_block=channels_per_block)
    launch(kernel, grid, threads, arguments)
    cuda.synchronize()
    return (out.copy_to_host(), state.copy_to_host()) if return_state else out.copy_to_host()


def ptx_cases():
    """(name, kernel, signature) of representative configurations, for ``numba.cuda.compile_ptx``."""
    cases = []
    for dtype in ("float32", "float16"):
        d3, d2, d4 = f"{dtype}[:, :, ::1]", f"{dtype}[:, ::1]", f"{dtype}[:, :, :, ::1]"
        f1, f2, f3 = "float32[::1]", "float32[:, ::1]", "float32[:, :, ::1]"
        signature = (f"void({d3}, {d3}, {f2}, {d2}, {d4}, boolean, {d2}, {d4}, boolean, {f1}, boolean, {f1}, "
                     f"boolean, {d3}, boolean, {f3}, boolean, {d3}, {f3}, int64)")
        for chunk, channels, capacity in ((32, 64, 16), (4, 4, 4)):  # a GPU's tiles (N <= 16), the simulator's
            cases.append((f"selective_scan_forward[chunk {chunk}, {channels} channels, N<={capacity}, {dtype}]",
                          scan_kernel(chunk, channels, capacity), signature))
    return cases
