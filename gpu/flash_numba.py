"""FlashAttention-2 forward as a Numba CUDA kernel (Dao 2023, arXiv:2307.08691, Algorithm 1).

One thread block per (query block, head, batch): the block's query tile is staged in shared
memory once, then the key/value tiles of its visit list are visited in order (the tiles its
causal/window masks can reach, or those a block mask sets: FlexAttention's ``kv_num_blocks`` and
``kv_indices``); for each, the block computes the scores into shared memory, one thread per query row
updates the row's running max ``m`` and running sum ``l`` (online softmax, in shared memory),
and every thread rescales and accumulates its slice of the output row in registers:

    m' = max(m, rowmax S),  alpha = exp(m - m'),  P = exp(S - m'),
    l' = alpha l + rowsum P,  acc' = alpha acc + P V,       out = acc / l,  lse = m + log l

Masks are those of ``seqcheck.reference.attention.attention_mask`` (bottom-right aligned):
query i sees key j iff ``i + Tk - Tq - left <= j <= i + Tk - Tq + right`` (None: unbounded;
causal: right = 0) and ``key_padding_mask[b, j]``. GQA: query head h reads kv head
``h // (H // Hkv)``. A row with no visible key gets out = 0 and lse = -inf.

``block_sparse_attention`` is the form ``sparse.attention.block_sparse`` on the same kernel:
square tiles of ``block_size``, the visit lists from a block mask (ceil(Tq / b), ceil(Tk / b)),
and a token mask (Tq, Tk) applied inside each visited tile.

Inputs float32 or float16 (q, k, v of one dtype); scores, softmax and accumulation in float32;
``out`` in the inputs' dtype, ``lse`` float32 (as flash-attention's softmax_lse). Block sizes,
the head-dimension capacity (a power of two >= D, Dv, at most 128) and the threads per row are
compile-time constants: one kernel is specialised and cached per configuration.

Written for Numba's CUDA simulator as well (CI has no GPU): each shared array is declared on its
own line (the simulator identifies shared arrays by source line), exponentials use ``math.exp``
(the simulator evaluates it with Python's math), and only block-level synchronisation is used.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

MAX_HEAD_DIM = 128
THREADS = 128  # threads per block the launch aims at (block_q rows x threads per row)
SHARED_BYTES = 48 * 1024  # static shared memory available to one block
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def head_dim_capacity(head_dim: int) -> int:
    """The compile-time head dimension: the smallest power of two >= head_dim, at least 4."""
    capacity = 4
    while capacity < head_dim:
        capacity *= 2
    return capacity


def threads_per_row(block_q: int, capacity: int) -> int:
    """Threads sharing one query row's output (each owns capacity / tpr of its columns)."""
    tpr = 1
    while tpr * 2 <= capacity and tpr * 2 * block_q <= THREADS:
        tpr *= 2
    return tpr


def shared_bytes(block_q: int, block_k: int, capacity: int) -> int:
    """Static shared memory of one block: Q, K, V tiles, the score tile, three row vectors."""
    return 4 * (block_q * capacity + 2 * block_k * capacity + block_q * block_k + 3 * block_q)


@functools.lru_cache(maxsize=None)
def flash_kernel(block_q: int, block_k: int, capacity: int, sparse: bool = False, token_masked: bool = False):
    """The kernel for tiles of ``block_q`` queries and ``block_k`` keys, head dims <= ``capacity``.

    Arguments: q (B, Tq, H, D), k (B, Tk, Hkv, D), v (B, Tk, Hkv, Dv), key_valid (B, Tk) uint8,
    token_valid (Tq, Tk) uint8 (read only if ``token_masked``), tile_count (nq,) and tile_index
    int32: query tile I visits tile_count[I] key tiles, tile_index[I, 0] and the ones after it
    (nq, 1), or, if ``sparse``, tile_index[I, :tile_count[I]] in order (nq, nk); out (B, Tq, H,
    Dv), lse (B, Tq, H) float32, scale float32, left, right (ints, Tq + Tk for an unbounded side).
    Launch: grid (ceil(Tq / block_q), H, B), block_q * threads_per_row threads.
    """
    BQ, BK, DC, SPARSE, TOKEN_MASKED = block_q, block_k, capacity, sparse, token_masked
    TPR = threads_per_row(BQ, DC)
    NT = BQ * TPR  # threads per block
    ACC = DC // TPR  # output columns per thread, in registers
    NEG_INF = -math.inf

    @cuda.jit
    def flash_forward(q, k, v, key_valid, token_valid, tile_count, tile_index, out, lse, scale, left, right):
        q_tile = cuda.shared.array((BQ, DC), float32)
        k_tile = cuda.shared.array((BK, DC), float32)
        v_tile = cuda.shared.array((BK, DC), float32)
        p_tile = cuda.shared.array((BQ, BK), float32)
        row_max = cuda.shared.array(BQ, float32)
        row_sum = cuda.shared.array(BQ, float32)
        row_alpha = cuda.shared.array(BQ, float32)
        acc = cuda.local.array(ACC, float32)

        tid = cuda.threadIdx.x
        query_tile = cuda.blockIdx.x
        q0 = query_tile * BQ
        h = cuda.blockIdx.y
        b = cuda.blockIdx.z
        Tq = q.shape[1]
        H = q.shape[2]
        D = q.shape[3]
        Tk = k.shape[1]
        Hkv = k.shape[2]
        Dv = v.shape[3]
        kv_head = h // (H // Hkv)
        offset = Tk - Tq  # bottom-right alignment: query i's diagonal is key i + offset

        for idx in range(tid, BQ * D, NT):
            r = idx // D
            d = idx - r * D
            if q0 + r < Tq:
                q_tile[r, d] = float32(q[b, q0 + r, h, d])
            else:
                q_tile[r, d] = float32(0.0)
        if tid < BQ:
            row_max[tid] = NEG_INF
            row_sum[tid] = float32(0.0)
            row_alpha[tid] = float32(1.0)
        for j in range(ACC):
            acc[j] = float32(0.0)

        cuda.syncthreads()

        for n in range(tile_count[query_tile]):
            k0 = (tile_index[query_tile, n] if SPARSE else tile_index[query_tile, 0] + n) * BK
            for idx in range(tid, BK * D, NT):
                c = idx // D
                d = idx - c * D
                k_tile[c, d] = float32(k[b, k0 + c, kv_head, d]) if k0 + c < Tk else float32(0.0)
            for idx in range(tid, BK * Dv, NT):
                c = idx // Dv
                d = idx - c * Dv
                v_tile[c, d] = float32(v[b, k0 + c, kv_head, d]) if k0 + c < Tk else float32(0.0)
            cuda.syncthreads()

            # S = scale * Q K^T, masked keys -inf
            for idx in range(tid, BQ * BK, NT):
                r = idx // BK
                c = idx - r * BK
                i = q0 + r
                j = k0 + c
                s = float32(NEG_INF)
                if (i < Tq and j < Tk and key_valid[b, j] != 0 and i + offset - left <= j <= i + offset + right
                        and (not TOKEN_MASKED or token_valid[i, j] != 0)):
                    dot = float32(0.0)
                    for d in range(D):
                        dot += q_tile[r, d] * k_tile[c, d]
                    s = dot * scale
                p_tile[r, c] = s
            cuda.syncthreads()

            # online softmax, one thread per query row
            if tid < BQ:
                m_old = row_max[tid]
                m_new = m_old
                for c in range(BK):
                    m_new = max(m_new, p_tile[tid, c])
                shift = float32(0.0) if m_new == NEG_INF else m_new  # every key so far masked
                alpha = math.exp(m_old - shift)
                total = float32(0.0)
                for c in range(BK):
                    p = math.exp(p_tile[tid, c] - shift)
                    p_tile[tid, c] = p
                    total += p
                row_sum[tid] = alpha * row_sum[tid] + total
                row_max[tid] = m_new
                row_alpha[tid] = alpha
            cuda.syncthreads()

            # acc = alpha acc + P V, each thread its columns lane, lane + TPR, ... of row r
            r = tid // TPR
            lane = tid - r * TPR
            alpha = row_alpha[r]
            for jj in range(ACC):
                d = lane + jj * TPR
                if d < Dv:
                    a = alpha * acc[jj]
                    for c in range(BK):
                        a += p_tile[r, c] * v_tile[c, d]
                    acc[jj] = a
            cuda.syncthreads()

        r = tid // TPR
        lane = tid - r * TPR
        i = q0 + r
        if i < Tq:
            total = row_sum[r]
            inverse = float32(1.0) / total if total > 0 else float32(0.0)
            for jj in range(ACC):
                d = lane + jj * TPR
                if d < Dv:
                    out[b, i, h, d] = acc[jj] * inverse
            if lane == 0:
                lse[b, i, h] = row_max[r] + math.log(total) if total > 0 else NEG_INF

    return flash_forward


def launch_config(Tq: int, H: int, B: int, block_q: int, capacity: int):
    """(grid, threads per block) of ``flash_kernel(block_q, ., capacity)``."""
    return (-(-Tq // block_q), H, B), block_q * threads_per_row(block_q, capacity)


def _check(q, k, v, key_padding_mask, block_q, block_k):
    q, k, v = (np.asarray(x) for x in (q, k, v))
    if q.dtype not in SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise TypeError(f"q, k, v must all be float32 or all float16; got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or 0 in q.shape or 0 in k.shape or 0 in v.shape:
        raise ValueError(f"q (B, Tq, H, D), k (B, Tk, Hkv, D), v (B, Tk, Hkv, Dv); got {q.shape}, {k.shape}, {v.shape}")
    B, _, H, D = q.shape
    if k.shape[0] != B or k.shape[3] != D or v.shape[:3] != k.shape[:3]:
        raise ValueError(f"k, v must be (B, Tk, Hkv, D) and (B, Tk, Hkv, Dv) matching q {q.shape}; "
                         f"got {k.shape}, {v.shape}")
    if H % k.shape[2]:
        raise ValueError(f"H={H} must be a multiple of Hkv={k.shape[2]}")
    if max(D, v.shape[3]) > MAX_HEAD_DIM:
        raise ValueError(f"head dims up to {MAX_HEAD_DIM} are supported; got D={D}, Dv={v.shape[3]}")
    for name, value in (("block_q", block_q), ("block_k", block_k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}")
    capacity = head_dim_capacity(max(D, v.shape[3]))
    if shared_bytes(block_q, block_k, capacity) > SHARED_BYTES:
        raise ValueError(f"block_q={block_q}, block_k={block_k} with head dim {capacity} need "
                         f"{shared_bytes(block_q, block_k, capacity)} bytes of shared memory; at most {SHARED_BYTES}")
    if key_padding_mask is None:
        valid = np.ones((B, k.shape[1]), dtype=np.uint8)
    else:
        mask = np.asarray(key_padding_mask)
        if mask.dtype != bool or mask.shape != (B, k.shape[1]):
            raise ValueError(f"key_padding_mask must be bool (B, Tk)=({B}, {k.shape[1]}); "
                             f"got {mask.dtype} {mask.shape}")
        valid = mask.astype(np.uint8)
    return q, k, v, valid, capacity


def window_tiles(Tq: int, Tk: int, block_q: int, block_k: int, left: int, right: int) -> tuple:
    """(tile_count (nq,), tile_index (nq, 1)) int32: per query tile the run of key tiles holding a
    key that one of its queries may see through the window, as a count and its first tile (the
    others are skipped, as flash-attention's n_block_min .. n_block_max)."""
    q0 = np.arange(0, Tq, block_q)
    offset = Tk - Tq
    first_key = np.maximum(0, q0 + offset - left)  # of the tile's first query
    last_key = np.minimum(Tk - 1, np.minimum(q0 + block_q, Tq) - 1 + offset + right)  # of its last query
    first_tile = first_key // block_k
    count = np.where(first_key <= last_key, last_key // block_k + 1 - first_tile, 0)
    return count.astype(np.int32), first_tile[:, None].astype(np.int32)


def visit_lists(visit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FlexAttention's kv_num_blocks and kv_indices of a tile mask (nq, nk): per query tile the
    number of key tiles to visit, (nq,) int32, and which, (nq, nk) int32 (in order, then the rest)."""
    count = visit.sum(axis=1).astype(np.int32)
    index = np.argsort(~visit, axis=1, kind="stable").astype(np.int32)
    return count, index


def _launch_arguments(q, k, v, valid, token, tiles, *, sparse, scale, left, right, block_q, block_k, capacity):
    """(kernel, grid, threads, arguments, (out, lse)) on the device; ``tiles`` (tile_count,
    tile_index) as ``flash_kernel`` reads them; ``token`` None: no token mask."""
    B, Tq, H, _ = q.shape
    kernel = flash_kernel(block_q, block_k, capacity, sparse, token is not None)
    grid, threads = launch_config(Tq, H, B, block_q, capacity)
    out = cuda.to_device(np.full((B, Tq, H, v.shape[3]), np.nan, dtype=q.dtype))
    lse = cuda.to_device(np.full((B, Tq, H), np.nan, dtype=np.float32))
    token = np.ones((1, 1), dtype=np.uint8) if token is None else token.astype(np.uint8)
    arrays = (np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v), valid, token, *tiles)
    arguments = (*(cuda.to_device(a) for a in arrays), out, lse, np.float32(scale), left, right)
    return kernel, grid, threads, arguments, (out, lse)


def prepare(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None, block_q=16, block_k=16):
    """Everything a launch needs, on the device: (kernel, grid, threads, arguments, (out, lse)).
    Outputs are filled with NaN, so an element the kernel leaves unwritten shows. The benchmark
    times ``launch`` of this without the host transfers."""
    q, k, v, valid, capacity = _check(q, k, v, key_padding_mask, block_q, block_k)
    Tq, Tk, D = q.shape[1], k.shape[1], q.shape[3]
    unbounded = Tq + Tk  # a window side this wide masks nothing
    left, right = (None, None) if window is None else window
    left = unbounded if left is None else int(left)
    right = unbounded if right is None else int(right)
    if causal:
        right = 0
    if left < 0 or right < 0:
        raise ValueError(f"window sides must be None or ints >= 0; got {window!r}")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    block_q, block_k = int(block_q), int(block_k)
    return _launch_arguments(q, k, v, valid, None, window_tiles(Tq, Tk, block_q, block_k, left, right), sparse=False,
                             scale=scale, left=left, right=right, block_q=block_q, block_k=block_k, capacity=capacity)


def prepare_block_sparse(q, k, v, block_mask, *, block_size, token_mask=None, scale=None):
    """``prepare`` for ``block_sparse_attention``: the visit lists from ``block_mask``."""
    q, k, v, valid, capacity = _check(q, k, v, None, block_size, block_size)
    Tq, Tk, D = q.shape[1], k.shape[1], q.shape[3]
    b = int(block_size)
    masks = [("block_mask", block_mask, (-(-Tq // b), -(-Tk // b)))]
    if token_mask is not None:
        masks.append(("token_mask", token_mask, (Tq, Tk)))
    for name, mask, shape in masks:
        if np.asarray(mask).dtype != bool or np.shape(mask) != shape:
            raise ValueError(f"{name} must be bool {shape} for Tq={Tq}, Tk={Tk}, block_size={b}; "
                             f"got {np.asarray(mask).dtype} {np.shape(mask)}")
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    token = None if token_mask is None else np.asarray(token_mask)
    return _launch_arguments(q, k, v, valid, token, visit_lists(np.asarray(block_mask)), sparse=True, scale=scale,
                             left=Tq + Tk, right=Tq + Tk, block_q=b, block_k=b, capacity=capacity)


def launch(kernel, grid, threads, arguments) -> None:
    kernel[grid, threads](*arguments)


def _run(prepared, return_lse: bool):
    kernel, grid, threads, arguments, (out, lse) = prepared
    launch(kernel, grid, threads, arguments)
    cuda.synchronize()
    return (out.copy_to_host(), lse.copy_to_host()) if return_lse else out.copy_to_host()


def flash_attention(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None, return_lse=False,
                    block_q=16, block_k=16, alibi_slopes=None, softcap=None):
    """FlashAttention-2 forward on the GPU (or Numba's CUDA simulator): NumPy in, NumPy out.

    The form ``attention.flash.tiled`` without ALiBi and softcapping: q (B, Tq, H, D), k (B, Tk,
    Hkv, D), v (B, Tk, Hkv, Dv), float32 or float16; returns out (B, Tq, H, Dv) in that dtype, and
    lse (B, Tq, H) float32 if ``return_lse``. ``block_q`` / ``block_k``: the tiles (any sizes whose
    tiles fit in 48 KiB of shared memory). ``alibi_slopes`` must be None and ``softcap`` None or
    0 (unsupported; taken so that the form's arguments pass through). Outputs are filled with NaN
    before the launch, so an element the kernel leaves unwritten shows.
    """
    if alibi_slopes is not None or softcap:
        raise NotImplementedError("flash_numba: ALiBi and softcapping are not supported")
    return _run(prepare(q, k, v, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                        block_q=block_q, block_k=block_k), return_lse)


def block_sparse_attention(q, k, v, block_mask, *, block_size, token_mask=None, scale=None, return_lse=False):
    """Block-sparse attention on the GPU (or the simulator), the form ``sparse.attention.block_sparse``:
    q (B, Tq, H, D), k (B, Tk, Hkv, D), v (B, Tk, Hkv, Dv) float32 or float16 (GQA as the dense kernel), block_mask bool
    (ceil(Tq / b), ceil(Tk / b)) for ``block_size`` b, token_mask None or bool (Tq, Tk). Query tile
    I visits key tile J only where block_mask[I, J]; inside, the token mask. Returns out (B, Tq,
    H, Dv) in the inputs' dtype, and lse (B, Tq, H) float32 if ``return_lse``; a row that sees no
    key gives 0 and -inf. Square tiles of b (b = 16 fits head dims up to 128 in 48 KiB)."""
    return _run(prepare_block_sparse(q, k, v, block_mask, block_size=block_size, token_mask=token_mask, scale=scale),
                return_lse)


def ptx_cases():
    """(name, kernel, signature) of representative configurations, for ``numba.cuda.compile_ptx``."""
    cases = []
    for dtype in ("float32", "float16"):
        data = f"{dtype}[:, :, :, ::1]"
        signature = (f"void({data}, {data}, {data}, uint8[:, ::1], uint8[:, ::1], int32[::1], int32[:, ::1], "
                     f"{dtype}[:, :, :, ::1], float32[:, :, ::1], float32, int64, int64)")
        for block_q, block_k, capacity in ((16, 16, 128), (4, 4, 4)):  # the default, the simulator's
            for sparse, token_masked in ((False, False), (True, False), (True, True)):
                cases.append((f"flash_forward[{block_q}x{block_k}, d<={capacity}, {dtype}"
                              f"{', block-sparse' * sparse}{', token mask' * token_masked}]",
                              flash_kernel(block_q, block_k, capacity, sparse, token_masked), signature))
    return cases
