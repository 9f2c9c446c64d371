"""Chunked gated linear attention forward (Yang et al. 2024, arXiv:2312.06635) as a Numba CUDA
kernel; retention (Sun et al. 2023) through the same kernel with the constant log-decay log gamma.

Per head, with a log-decay g_t <= 0 per key channel (or one per head) and S the (K, V) state:

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,    o_t = (scale q_t) S_t

computed by chunks of c steps. Within a chunk, b_i = sum_{start <= s <= i} g_s (per key channel,
float32) and r_i the offset of the last reset (g = -inf) at or before i (-1 for none); then
with P_ij = exp(b_i - b_j) if r_i <= j else 0 (the decay from j to i; 0 across a reset) and
Q_i = exp(b_i) if r_i < 0 else 0 (the decay from the chunk's start):

    A_ij = sum_k scale q_ik k_jk P_ij,k          (j <= i)
    o_i  = sum_{j <= i} A_ij v_j + (scale q_i o Q_i) S_prev
    S    = diag(Q_last) S_prev + sum_j (k_j o P_last,j)^T v_j

A reset (g = -inf, or any g < -1e30, whose exp is 0 all the same) is never added to b (it is
marked in r instead), so every exponent is finite, at most 64 x 1e30 in size: no ``-inf - -inf``
and no ``inf * 0``. Only j <= i is ever evaluated, so ``exp(b_i - b_j)`` is at
most exp(rounding) and never overflows. (The reference takes stable segment sums instead of
differences of cumulative sums; within a chunk of at most 64 steps the difference of two
float32 cumulative sums errs by a few ulp of the chunk's log-decay, which the float32 floor of
the form's budget covers: ``gla_magnitude``.)

Tiling: one thread block per (value tile, head, batch), grid ``(ceil(V / value_tile), H, B)``,
``threads`` threads. The block keeps its (K, value_tile) slice of the state in shared memory
from chunk to chunk; per chunk it stages q (scaled), k, g and its v columns in shared memory,
forms b and r (a thread per key channel), the scores A (a thread per (i, j)), folds Q into q and
P_last into k, writes the outputs (a thread per (i, column)) and updates the state (a thread per
(key channel, column)), with a block barrier between the phases. Blocks of one (batch, head)
recompute the same scores: the price of splitting V. Chunks are ``min(chunk_size, tile)``
steps, tile <= 64 on a GPU (smaller where K's tiles would not fit the 48 KiB of static shared
memory: ``tiles``), 4 under the simulator (so its short sequences span several chunks); the
chunking changes only the order of float32 sums.

Supported: g per key channel (B, T, H, K) or per head (B, T, H), -inf resets, scale,
initial_state (B, H, K, V), return_state; K <= 128, any V. q, k, v float32 or float16 (one
dtype), g, initial_state and scale float32; arithmetic and state in float32; out in the inputs'
dtype, the state float32.

Written for Numba's CUDA simulator as well (CI has no GPU): each shared array on its own line,
``math.exp`` only, block-level synchronisation only.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import config, cuda, float32, int16

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))
MAX_KEY_DIM = 128
SHARED_BYTES = 48 * 1024  # static shared memory available to one block


def capacity(n: int) -> int:
    """The compile-time size for n: the smallest power of two >= n, at least 4."""
    size = 4
    while size < n:
        size *= 2
    return size


def default_tiles() -> tuple[int, int, int]:
    """(largest chunk, value tile, threads per block): (64, 32, 128) on a GPU; (4, 2, 8) under the
    simulator, so that its tiny inputs span several chunks and value tiles."""
    return (4, 2, 8) if config.ENABLE_CUDASIM else (64, 32, 128)


def shared_bytes(chunk_capacity: int, key_capacity: int, value_tile: int) -> int:
    """Static shared memory of one block: q, k, b (float32) and r (int16) tiles (c, K), the v tile,
    the scores (c, c), the state slice (K, value tile) and Q_last (K)."""
    C, KC, VT = chunk_capacity, key_capacity, value_tile
    return 4 * (3 * C * KC + C * VT + C * C + KC * VT + KC) + 2 * C * KC


def tiles(K: int, V: int, chunk_size: int, *, max_chunk=None, value_tile=None) -> tuple[int, int, int]:
    """(chunk, chunk capacity, value tile) for key dim K, value dim V and the form's ``chunk_size``:
    chunks of min(chunk_size, max_chunk) steps, halved (down to 16), then the value tile halved
    (down to 8), then the chunk again (down to 4) until the tiles fit in ``SHARED_BYTES``."""
    default_chunk, default_value_tile, _ = default_tiles()
    chunk = min(int(chunk_size), default_chunk if max_chunk is None else int(max_chunk))
    VT = min(capacity(V), default_value_tile if value_tile is None else int(value_tile))
    KC = capacity(K)
    while shared_bytes(capacity(chunk), KC, VT) > SHARED_BYTES:
        if chunk > 16:
            chunk = capacity(chunk) // 2
        elif VT > 8:
            VT //= 2
        elif chunk > 4:
            chunk = capacity(chunk) // 2
        else:
            raise ValueError(f"K={K}: no tiles fit in {SHARED_BYTES} bytes of shared memory")
    return chunk, capacity(chunk), VT


@functools.lru_cache(maxsize=None)
def gla_kernel(chunk_capacity: int, key_capacity: int, value_tile: int, threads: int):
    """The kernel for chunks of at most ``chunk_capacity`` steps, K <= ``key_capacity``, ``value_tile``
    value columns and ``threads`` threads per block.

    Arguments: q, k (B, T, H, K), v (B, T, H, V) of one dtype; g (B, T, H, G) float32 (G = K, or
    1 for one decay per head); scale float32; h0 (B, H, K, V) float32 (a placeholder unless
    ``has_h0``); chunk (steps per chunk, <= chunk_capacity); out (B, T, H, V) in the inputs'
    dtype; state (B, H, K, V) float32. Launch: grid (ceil(V / value_tile), H, B), ``threads``.
    """
    CC, KC, VT, NT = chunk_capacity, key_capacity, value_tile, threads
    RESET = float32(-1e30)  # a log-decay below this is a reset: its exp is 0 in any float (-inf included)

    @cuda.jit
    def gla_forward(q, k, v, g, scale, h0, has_h0, chunk, out, state):
        q_tile = cuda.shared.array((CC, KC), float32)  # scale q_i, then scale q_i o Q_i
        k_tile = cuda.shared.array((CC, KC), float32)  # k_j, then k_j o P_last,j
        b_tile = cuda.shared.array((CC, KC), float32)  # g, then b: the chunk's cumulative log-decay
        r_tile = cuda.shared.array((CC, KC), int16)  # the last reset at or before i (-1: none)
        v_tile = cuda.shared.array((CC, VT), float32)
        a_tile = cuda.shared.array((CC, CC), float32)  # the scores A_ij
        s_tile = cuda.shared.array((KC, VT), float32)  # the block's columns of the state
        last_decay = cuda.shared.array(KC, float32)  # Q_last per key channel

        tid = cuda.threadIdx.x
        v0 = cuda.blockIdx.x * VT
        h = cuda.blockIdx.y
        batch = cuda.blockIdx.z
        T = q.shape[1]
        K = q.shape[3]
        width = min(VT, v.shape[3] - v0)  # the block's value columns
        per_head = g.shape[3] == 1

        for idx in range(tid, K * width, NT):
            kk = idx // width
            vv = idx - kk * width
            s_tile[kk, vv] = h0[batch, h, kk, v0 + vv] if has_h0 else float32(0.0)

        for t0 in range(0, T, chunk):
            steps = min(chunk, T - t0)
            last = steps - 1
            # stage the chunk
            for idx in range(tid, steps * K, NT):
                s = idx // K
                kk = idx - s * K
                q_tile[s, kk] = float32(q[batch, t0 + s, h, kk]) * scale
                k_tile[s, kk] = float32(k[batch, t0 + s, h, kk])
                b_tile[s, kk] = g[batch, t0 + s, h, 0 if per_head else kk]
            for idx in range(tid, steps * width, NT):
                s = idx // width
                vv = idx - s * width
                v_tile[s, vv] = float32(v[batch, t0 + s, h, v0 + vv])
            cuda.syncthreads()

            # b_i: the cumulative log-decay from the chunk's start, resets marked in r, not added
            for kk in range(tid, K, NT):
                running = float32(0.0)
                reset = -1
                for s in range(steps):
                    x = b_tile[s, kk]
                    if x < RESET:
                        reset = s
                    else:
                        running += x
                    b_tile[s, kk] = running
                    r_tile[s, kk] = reset
            cuda.syncthreads()

            # A_ij = sum_k q_ik k_jk exp(b_ik - b_jk), j <= i, no reset in (j, i]
            for idx in range(tid, steps * steps, NT):
                i = idx // steps
                j = idx - i * steps
                score = float32(0.0)
                if j <= i:
                    for kk in range(K):
                        if r_tile[i, kk] <= j:
                            score += q_tile[i, kk] * k_tile[j, kk] * math.exp(b_tile[i, kk] - b_tile[j, kk])
                a_tile[i, j] = score
            cuda.syncthreads()

            # fold the decays in: q_i o Q_i (from the chunk's start), k_j o P_last,j (to its end)
            for idx in range(tid, steps * K, NT):
                s = idx // K
                kk = idx - s * K
                if r_tile[s, kk] >= 0:
                    q_tile[s, kk] = float32(0.0)
                else:
                    q_tile[s, kk] *= math.exp(b_tile[s, kk])
                if r_tile[last, kk] > s:
                    k_tile[s, kk] = float32(0.0)
                else:
                    k_tile[s, kk] *= math.exp(b_tile[last, kk] - b_tile[s, kk])
            for kk in range(tid, K, NT):
                last_decay[kk] = float32(0.0) if r_tile[last, kk] >= 0 else math.exp(b_tile[last, kk])
            cuda.syncthreads()

            # o_i = sum_{j <= i} A_ij v_j + (q_i o Q_i) S_prev
            for idx in range(tid, steps * width, NT):
                i = idx // width
                vv = idx - i * width
                acc = float32(0.0)
                for j in range(i + 1):
                    acc += a_tile[i, j] * v_tile[j, vv]
                for kk in range(K):
                    acc += q_tile[i, kk] * s_tile[kk, vv]
                out[batch, t0 + i, h, v0 + vv] = acc
            cuda.syncthreads()  # every output has read S_prev

            # S = diag(Q_last) S_prev + sum_j (k_j o P_last,j)^T v_j
            for idx in range(tid, K * width, NT):
                kk = idx // width
                vv = idx - kk * width
                acc = last_decay[kk] * s_tile[kk, vv]
                for j in range(steps):
                    acc += k_tile[j, kk] * v_tile[j, vv]
                s_tile[kk, vv] = acc
            cuda.syncthreads()  # the tiles are overwritten by the next chunk

        for idx in range(tid, K * width, NT):
            kk = idx // width
            vv = idx - kk * width
            state[batch, h, kk, v0 + vv] = s_tile[kk, vv]

    return gla_forward


def prepare(q, k, v, g, *, chunk_size, scale=None, initial_state=None, max_chunk=None, value_tile=None,
            threads=None):
    """Everything a launch needs, on the device: (kernel, grid, threads, arguments, (out, state)),
    outputs filled with NaN. ``max_chunk`` / ``value_tile`` / ``threads`` override
    ``default_tiles()``."""
    q, k, v = (np.asarray(x) for x in (q, k, v))
    if q.dtype not in SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must all be float32 or all float16; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim != 4 or k.shape != q.shape or v.ndim != 4 or v.shape[:3] != q.shape[:3] or 0 in q.shape or 0 in v.shape:
        raise ValueError(f"q, k (B, T, H, K) and v (B, T, H, V) with T >= 1; got {q.shape}, {k.shape}, {v.shape}")
    batch, T, H, K = q.shape
    V = v.shape[3]
    if K > MAX_KEY_DIM:
        raise ValueError(f"key dims up to {MAX_KEY_DIM} are supported; got K={K}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1; got {chunk_size!r}")
    g = np.asarray(g, dtype=np.float32)
    if g.shape == (batch, T, H):
        g = g[..., None]
    if g.shape not in ((batch, T, H, K), (batch, T, H, 1)):
        raise ValueError(f"g must be (B, T, H, K) or (B, T, H) = {(batch, T, H)}; got {g.shape}")
    if np.isnan(g).any() or (g > 0).any():
        raise ValueError("g must hold log-decays <= 0 (-inf resets the state)")
    h0 = np.zeros((1, 1, 1, 1), np.float32)
    if initial_state is not None:
        h0 = np.asarray(initial_state, dtype=np.float32)
        if h0.shape != (batch, H, K, V):
            raise ValueError(f"initial_state must be (B, H, K, V) = {(batch, H, K, V)}; got {h0.shape}")
    scale = K ** -0.5 if scale is None else float(scale)

    chunk, chunk_capacity, VT = tiles(K, V, int(chunk_size), max_chunk=max_chunk, value_tile=value_tile)
    NT = default_tiles()[2] if threads is None else int(threads)
    kernel = gla_kernel(chunk_capacity, capacity(K), VT, NT)
    grid = (-(-V // VT), H, batch)
    out = cuda.to_device(np.full(v.shape, np.nan, dtype=q.dtype))
    state = cuda.to_device(np.full((batch, H, K, V), np.nan, dtype=np.float32))
    device = cuda.to_device
    arguments = (device(np.ascontiguousarray(q)), device(np.ascontiguousarray(k)), device(np.ascontiguousarray(v)),
                 device(np.ascontiguousarray(g)), np.float32(scale), device(np.ascontiguousarray(h0)),
                 initial_state is not None, chunk, out, state)
    return kernel, grid, NT, arguments, (out, state)


def launch(kernel, grid, threads, arguments) -> None:
    kernel[grid, threads](*arguments)


def gla_chunked(q, k, v, g, *, chunk_size, scale=None, initial_state=None, return_state=False, max_chunk=None,
                value_tile=None, threads=None):
    """Chunked GLA forward on the GPU (or Numba's CUDA simulator): NumPy in, NumPy out.

    The form ``gla.gla.chunked`` with log-decays g: q, k (B, T, H, K), v (B, T, H, V) float32 or
    float16; g (B, T, H, K) or (B, T, H); returns out (B, T, H, V) in the inputs' dtype and, if
    ``return_state``, the last state (B, H, K, V) float32. Chunks of min(chunk_size, tile) steps
    (``tiles``). Outputs are filled with NaN before the launch.
    """
    kernel, grid, threads, arguments, (out, state) = prepare(
        q, k, v, g, chunk_size=chunk_size, scale=scale, initial_state=initial_state, max_chunk=max_chunk,
        value_tile=value_tile, threads=threads)
    launch(kernel, grid, threads, arguments)
    cuda.synchronize()
    return (out.copy_to_host(), state.copy_to_host()) if return_state else out.copy_to_host()


def retention_log_decays(gamma, batch: int, T: int) -> np.ndarray:
    """log gamma_h (-inf for gamma = 0) as GLA's per-head g (B, T, H) float32."""
    gamma = np.asarray(gamma, dtype=np.float64)
    if gamma.ndim != 1 or not ((gamma >= 0) & (gamma <= 1)).all():
        raise ValueError(f"gamma must be (H,) in [0, 1]; got {gamma}")
    with np.errstate(divide="ignore"):
        logs = np.log(gamma).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(logs, (batch, T, gamma.shape[0])))


def retention_chunked(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False, max_chunk=None,
                      value_tile=None, threads=None):
    """Chunked retention (the form ``retnet.retention.chunked``) on the GLA kernel: one log-decay
    log gamma_h per head and step, scale 1. gamma (H,) in [0, 1] (0: only the current token)."""
    q = np.asarray(q)
    g = retention_log_decays(gamma, q.shape[0], q.shape[1]) if q.ndim == 4 else gamma
    return gla_chunked(q, k, v, g, chunk_size=chunk_size, scale=1.0, initial_state=initial_state,
                       return_state=return_state, max_chunk=max_chunk, value_tile=value_tile, threads=threads)


def ptx_cases():
    """(name, kernel, signature) of representative configurations, for ``numba.cuda.compile_ptx``:
    a GPU's tiles at K <= 64 in both dtypes and at K <= 128 (typing does not depend on the tiles,
    and each case takes seconds to compile)."""
    cases = []
    for dtype, (chunk_capacity, key_capacity, value_tile, threads) in (
            ("float32", (32, 64, 32, 128)), ("float16", (32, 64, 32, 128)), ("float32", (16, 128, 32, 128))):
        data, f4 = f"{dtype}[:, :, :, ::1]", "float32[:, :, :, ::1]"
        signature = f"void({data}, {data}, {data}, {f4}, float32, {f4}, boolean, int64, {data}, {f4})"
        cases.append((f"gla_forward[chunk {chunk_capacity}, K<={key_capacity}, {value_tile} columns, "
                      f"{threads} threads, {dtype}]",
                      gla_kernel(chunk_capacity, key_capacity, value_tile, threads), signature))
    return cases
