"""FlashAttention-2 backward as Numba CUDA kernels (Dao 2023, arXiv:2307.08691, Algorithm 2).

From the forward's saved ``out`` and ``lse`` and the output's cotangent dO (and, when the lse is
an output, its cotangent dL), with P_ij = exp(scale q_i . k_j - lse_i) over the visible keys:

    Delta_i = dO_i . out_i - dL_i                                  (``preprocess``: one thread per row)
    dV_j = sum_i P_ij dO_i,   dK_j = scale sum_i dS_ij q_i,   dS_ij = P_ij (dO_i . v_j - Delta_i)
    dQ_i = scale sum_j dS_ij k_j

Two main kernels, each recomputing P tile by tile from lse (no T x T matrix is ever stored):
``dkdv`` has one block per (key block, kv head, batch) and visits every query block of every
query head of its kv head that the masks let reach it, accumulating its keys' dK and dV in
registers; ``dq`` has one block per (query block, head, batch) and visits the key blocks its
rows can see, accumulating dQ in registers. So every gradient element is written once by one
thread, with no atomics: the result is deterministic (flash-attention's dq accumulates with
atomicAdd across key blocks and is not, flash-attention #414), at the cost of computing the
scores twice.

Masks are the forward's (``flash_numba``): bottom-right aligned causal and local windows and the
key padding mask; GQA query head h reads kv head h // (H // Hkv). Inputs float32 (q, k, v, out,
dO, dL), lse float32 as the forward returns it; everything computed in float32; the gradients
float32. Written for Numba's CUDA simulator as well: one shared array per source line,
``math.exp``, block-level synchronisation only; and without device functions, whose typing in
``cuda.compile_ptx`` initialises the CUDA driver (CI compiles PTX with none), so the two kernels
each spell out the masked P and dS.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda, float32

from seqcheck.gpu.flash_numba import MAX_HEAD_DIM, SHARED_BYTES, THREADS, flash_attention, head_dim_capacity

ROWS_PER_THREAD_BLOCK = THREADS  # threads per block the launches aim at


def threads_per_row(rows: int, capacity: int) -> int:
    """Threads sharing one row's gradient columns (each owns capacity / tpr of them)."""
    tpr = 1
    while tpr * 2 <= capacity and tpr * 2 * rows <= ROWS_PER_THREAD_BLOCK:
        tpr *= 2
    return tpr


def shared_bytes(block_q: int, block_k: int, capacity: int) -> int:
    """Static shared memory of one block: the Q, dO, K, V tiles, P and dS, two row vectors."""
    return 4 * (2 * block_q * capacity + 2 * block_k * capacity + 2 * block_q * block_k + 2 * block_q)


@cuda.jit
def preprocess(do, out, dlse, delta):
    """Delta (B, Tq, H) = rowsum(dO o out) - dL, one thread per row (grid over B * Tq * H)."""
    row = cuda.grid(1)
    B = do.shape[0]
    Tq = do.shape[1]
    H = do.shape[2]
    Dv = do.shape[3]
    if row < B * Tq * H:
        b = row // (Tq * H)
        i = (row // H) % Tq
        h = row % H
        total = float32(0.0)
        for d in range(Dv):
            total += do[b, i, h, d] * out[b, i, h, d]
        delta[b, i, h] = total - dlse[b, i, h]


@functools.lru_cache(maxsize=None)
def dkdv_kernel(block_q: int, block_k: int, capacity: int):
    """dK and dV for tiles of ``block_k`` keys, query tiles of ``block_q``, head dims <= ``capacity``.

    Arguments: q, do (B, Tq, H, D / Dv), k, v (B, Tk, Hkv, D / Dv), lse, delta (B, Tq, H), key_valid
    (B, Tk) uint8, dk, dv (B, Tk, Hkv, D / Dv), scale, left, right. Launch: grid
    (ceil(Tk / block_k), Hkv, B), block_k * threads_per_row(block_k, capacity) threads."""
    BQ, BK, DC = block_q, block_k, capacity
    TPR = threads_per_row(BK, DC)
    NT = BK * TPR
    ACC = DC // TPR

    @cuda.jit
    def flash_dkdv(q, do, k, v, lse, delta, key_valid, dk, dv, scale, left, right):
        k_tile = cuda.shared.array((BK, DC), float32)
        v_tile = cuda.shared.array((BK, DC), float32)
        q_tile = cuda.shared.array((BQ, DC), float32)
        do_tile = cuda.shared.array((BQ, DC), float32)
        p_tile = cuda.shared.array((BQ, BK), float32)
        ds_tile = cuda.shared.array((BQ, BK), float32)
        lse_row = cuda.shared.array(BQ, float32)
        delta_row = cuda.shared.array(BQ, float32)
        dk_acc = cuda.local.array(ACC, float32)
        dv_acc = cuda.local.array(ACC, float32)

        tid = cuda.threadIdx.x
        k0 = cuda.blockIdx.x * BK
        hk = cuda.blockIdx.y
        b = cuda.blockIdx.z
        Tq = q.shape[1]
        H = q.shape[2]
        D = q.shape[3]
        Tk = k.shape[1]
        Hkv = k.shape[2]
        Dv = v.shape[3]
        group = H // Hkv
        offset = Tk - Tq  # bottom-right alignment: query i's diagonal is key i + offset

        for idx in range(tid, BK * D, NT):
            c = idx // D
            d = idx - c * D
            k_tile[c, d] = k[b, k0 + c, hk, d] if k0 + c < Tk else float32(0.0)
        for idx in range(tid, BK * Dv, NT):
            c = idx // Dv
            d = idx - c * Dv
            v_tile[c, d] = v[b, k0 + c, hk, d] if k0 + c < Tk else float32(0.0)
        for jj in range(ACC):
            dk_acc[jj] = float32(0.0)
            dv_acc[jj] = float32(0.0)

        # The query rows that can see one of this block's keys: i with j - offset - right <= i <= j - offset + left.
        k_last = min(k0 + BK, Tk) - 1
        i_first = max(0, k0 - offset - right)
        i_last = min(Tq - 1, k_last - offset + left)
        tile_first = i_first // BQ
        tile_end = i_last // BQ + 1 if i_first <= i_last else tile_first
        cuda.syncthreads()

        for hq in range(hk * group, hk * group + group):
            for tile in range(tile_first, tile_end):
                q0 = tile * BQ
                for idx in range(tid, BQ * D, NT):
                    r = idx // D
                    d = idx - r * D
                    q_tile[r, d] = q[b, q0 + r, hq, d] if q0 + r < Tq else float32(0.0)
                for idx in range(tid, BQ * Dv, NT):
                    r = idx // Dv
                    d = idx - r * Dv
                    do_tile[r, d] = do[b, q0 + r, hq, d] if q0 + r < Tq else float32(0.0)
                for r in range(tid, BQ, NT):
                    lse_row[r] = lse[b, q0 + r, hq] if q0 + r < Tq else -math.inf
                    delta_row[r] = delta[b, q0 + r, hq] if q0 + r < Tq else float32(0.0)
                cuda.syncthreads()

                # P = exp(scale q.k - lse) and dS = P (dO.v - Delta), 0 where masked
                for idx in range(tid, BQ * BK, NT):
                    r = idx // BK
                    c = idx - r * BK
                    i = q0 + r
                    j = k0 + c
                    p = float32(0.0)
                    ds = float32(0.0)
                    if (i < Tq and j < Tk and key_valid[b, j] != 0 and i + offset - left <= j <= i + offset + right
                            and lse_row[r] != -math.inf):
                        dot = float32(0.0)
                        for d in range(D):
                            dot += q_tile[r, d] * k_tile[c, d]
                        p = math.exp(dot * scale - lse_row[r])
                        dp = float32(0.0)
                        for d in range(Dv):
                            dp += do_tile[r, d] * v_tile[c, d]
                        ds = p * (dp - delta_row[r])
                    p_tile[r, c] = p
                    ds_tile[r, c] = ds
                cuda.syncthreads()

                # dV_j += sum_r P_rj dO_r, dK_j += scale sum_r dS_rj q_r: thread (c, lane) owns columns lane + jj TPR
                c = tid // TPR
                lane = tid - c * TPR
                for jj in range(ACC):
                    d = lane + jj * TPR
                    if d < Dv:
                        a = dv_acc[jj]
                        for r in range(BQ):
                            a += p_tile[r, c] * do_tile[r, d]
                        dv_acc[jj] = a
                    if d < D:
                        a = float32(0.0)
                        for r in range(BQ):
                            a += ds_tile[r, c] * q_tile[r, d]
                        dk_acc[jj] += scale * a
                cuda.syncthreads()

        c = tid // TPR
        lane = tid - c * TPR
        j = k0 + c
        if j < Tk:
            for jj in range(ACC):
                d = lane + jj * TPR
                if d < Dv:
                    dv[b, j, hk, d] = dv_acc[jj]
                if d < D:
                    dk[b, j, hk, d] = dk_acc[jj]

    return flash_dkdv


@functools.lru_cache(maxsize=None)
def dq_kernel(block_q: int, block_k: int, capacity: int):
    """dQ for tiles of ``block_q`` queries, key tiles of ``block_k``, head dims <= ``capacity``.

    Arguments: q, do (B, Tq, H, D / Dv), k, v (B, Tk, Hkv, D / Dv), lse, delta (B, Tq, H), key_valid
    (B, Tk) uint8, dq (B, Tq, H, D), scale, left, right. Launch: grid (ceil(Tq / block_q), H, B),
    block_q * threads_per_row(block_q, capacity) threads."""
    BQ, BK, DC = block_q, block_k, capacity
    TPR = threads_per_row(BQ, DC)
    NT = BQ * TPR
    ACC = DC // TPR

    @cuda.jit
    def flash_dq(q, do, k, v, lse, delta, key_valid, dq, scale, left, right):
        q_tile = cuda.shared.array((BQ, DC), float32)
        do_tile = cuda.shared.array((BQ, DC), float32)
        k_tile = cuda.shared.array((BK, DC), float32)
        v_tile = cuda.shared.array((BK, DC), float32)
        ds_tile = cuda.shared.array((BQ, BK), float32)
        lse_row = cuda.shared.array(BQ, float32)
        delta_row = cuda.shared.array(BQ, float32)
        dq_acc = cuda.local.array(ACC, float32)

        tid = cuda.threadIdx.x
        q0 = cuda.blockIdx.x * BQ
        h = cuda.blockIdx.y
        b = cuda.blockIdx.z
        Tq = q.shape[1]
        H = q.shape[2]
        D = q.shape[3]
        Tk = k.shape[1]
        Hkv = k.shape[2]
        Dv = v.shape[3]
        kv_head = h // (H // Hkv)
        offset = Tk - Tq

        for idx in range(tid, BQ * D, NT):
            r = idx // D
            d = idx - r * D
            q_tile[r, d] = q[b, q0 + r, h, d] if q0 + r < Tq else float32(0.0)
        for idx in range(tid, BQ * Dv, NT):
            r = idx // Dv
            d = idx - r * Dv
            do_tile[r, d] = do[b, q0 + r, h, d] if q0 + r < Tq else float32(0.0)
        for r in range(tid, BQ, NT):
            lse_row[r] = lse[b, q0 + r, h] if q0 + r < Tq else -math.inf
            delta_row[r] = delta[b, q0 + r, h] if q0 + r < Tq else float32(0.0)
        for jj in range(ACC):
            dq_acc[jj] = float32(0.0)

        q_last = min(q0 + BQ, Tq) - 1
        k_first = max(0, q0 + offset - left)
        k_last = min(Tk - 1, q_last + offset + right)
        tile_first = k_first // BK
        tile_end = k_last // BK + 1 if k_first <= k_last else tile_first
        cuda.syncthreads()

        for tile in range(tile_first, tile_end):
            k0 = tile * BK
            for idx in range(tid, BK * D, NT):
                c = idx // D
                d = idx - c * D
                k_tile[c, d] = k[b, k0 + c, kv_head, d] if k0 + c < Tk else float32(0.0)
            for idx in range(tid, BK * Dv, NT):
                c = idx // Dv
                d = idx - c * Dv
                v_tile[c, d] = v[b, k0 + c, kv_head, d] if k0 + c < Tk else float32(0.0)
            cuda.syncthreads()

            for idx in range(tid, BQ * BK, NT):
                r = idx // BK
                c = idx - r * BK
                i = q0 + r
                j = k0 + c
                ds = float32(0.0)  # dS as the dkdv kernel forms it (module docstring: no device functions)
                if (i < Tq and j < Tk and key_valid[b, j] != 0 and i + offset - left <= j <= i + offset + right
                        and lse_row[r] != -math.inf):
                    dot = float32(0.0)
                    for d in range(D):
                        dot += q_tile[r, d] * k_tile[c, d]
                    p = math.exp(dot * scale - lse_row[r])
                    dp = float32(0.0)
                    for d in range(Dv):
                        dp += do_tile[r, d] * v_tile[c, d]
                    ds = p * (dp - delta_row[r])
                ds_tile[r, c] = ds
            cuda.syncthreads()

            # dQ_i += scale sum_c dS_ic k_c: thread (r, lane) owns columns lane + jj TPR
            r = tid // TPR
            lane = tid - r * TPR
            for jj in range(ACC):
                d = lane + jj * TPR
                if d < D:
                    a = float32(0.0)
                    for c in range(BK):
                        a += ds_tile[r, c] * k_tile[c, d]
                    dq_acc[jj] += scale * a
            cuda.syncthreads()

        r = tid // TPR
        lane = tid - r * TPR
        i = q0 + r
        if i < Tq:
            for jj in range(ACC):
                d = lane + jj * TPR
                if d < D:
                    dq[b, i, h, d] = dq_acc[jj]

    return flash_dq


def _check(q, k, v, cotangent, block_q, block_k):
    arrays = {name: np.asarray(x) for name, x in (("q", q), ("k", k), ("v", v), ("cotangent", cotangent))}
    if any(a.dtype != np.float32 for a in arrays.values()):
        dtypes = ", ".join(str(a.dtype) for a in arrays.values())
        raise TypeError(f"q, k, v and cotangent must be float32; got {dtypes}")
    q, k, v, do = arrays.values()
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or 0 in q.shape or 0 in k.shape or 0 in v.shape:
        raise ValueError(f"q (B, Tq, H, D), k (B, Tk, Hkv, D), v (B, Tk, Hkv, Dv); got {q.shape}, {k.shape}, {v.shape}")
    if do.shape != q.shape[:3] + v.shape[3:]:
        raise ValueError(f"cotangent must have shape (B, Tq, H, Dv)={q.shape[:3] + v.shape[3:]}; got {do.shape}")
    if max(q.shape[3], v.shape[3]) > MAX_HEAD_DIM:
        raise ValueError(f"head dims up to {MAX_HEAD_DIM} are supported; got D={q.shape[3]}, Dv={v.shape[3]}")
    capacity = head_dim_capacity(max(q.shape[3], v.shape[3]))
    if shared_bytes(block_q, block_k, capacity) > SHARED_BYTES:
        raise ValueError(f"block_q={block_q}, block_k={block_k} with head dim {capacity} need "
                         f"{shared_bytes(block_q, block_k, capacity)} bytes of shared memory; at most {SHARED_BYTES}")
    return q, k, v, do, capacity


def prepare_backward(q, k, v, *, cotangent, lse_cotangent=None, scale=None, causal=False, window=None,
                     key_padding_mask=None, block_q=16, block_k=16):
    """Everything the backward's launches need, on the device: (launches, (dq, dk, dv)). The
    forward kernel (``flash_numba``) runs here to save out and lse; ``launches()`` then runs
    ``preprocess``, ``dkdv`` and ``dq`` (the benchmark times it without the host transfers).
    Gradients are filled with NaN, so an element the kernels leave unwritten shows."""
    q, k, v, do, capacity = _check(q, k, v, cotangent, block_q, block_k)
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    out, lse = flash_attention(q, k, v, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
                               return_lse=True, block_q=block_q, block_k=block_k)
    unbounded = Tq + Tk
    left, right = (None, None) if window is None else window
    left = unbounded if left is None else int(left)
    right = 0 if causal else unbounded if right is None else int(right)
    scale = np.float32(1.0 / math.sqrt(D) if scale is None else scale)
    valid = (np.ones((B, Tk), np.uint8) if key_padding_mask is None
             else np.asarray(key_padding_mask, dtype=bool).astype(np.uint8))
    dl = np.zeros((B, Tq, H), np.float32) if lse_cotangent is None else np.asarray(lse_cotangent, np.float32)
    device = {name: cuda.to_device(np.ascontiguousarray(a)) for name, a in
              (("q", q), ("k", k), ("v", v), ("do", do), ("out", out), ("lse", lse), ("dl", dl), ("valid", valid))}
    delta = cuda.device_array((B, Tq, H), np.float32)
    dq, dk, dv = (cuda.to_device(np.full(x.shape, np.nan, np.float32)) for x in (q, k, v))
    tensors = (device["q"], device["do"], device["k"], device["v"], device["lse"], delta, device["valid"])
    dkdv = dkdv_kernel(block_q, block_k, capacity)[(-(-Tk // block_k), Hkv, B),
                                                   block_k * threads_per_row(block_k, capacity)]
    dq_pass = dq_kernel(block_q, block_k, capacity)[(-(-Tq // block_q), H, B),
                                                    block_q * threads_per_row(block_q, capacity)]
    rows = B * Tq * H

    def launches():
        preprocess[-(-rows // THREADS), THREADS](device["do"], device["out"], device["dl"], delta)
        dkdv(*tensors, dk, dv, scale, left, right)
        dq_pass(*tensors, dq, scale, left, right)

    return launches, (dq, dk, dv)


def flash_attention_vjp(q, k, v, *, cotangent, lse_cotangent=None, scale=None, causal=False, window=None,
                        key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False, block_q=16,
                        block_k=16):
    """The gradients {"q", "k", "v"} of <out, cotangent> (+ <lse, lse_cotangent>) for softmax
    attention, on the GPU (or Numba's CUDA simulator): NumPy float32 in and out. The form
    ``attention.softmax.parallel`` without ALiBi and softcapping (``return_lse`` only says
    whether ``lse_cotangent`` is drawn); ``block_q`` / ``block_k``: the tiles (those of the
    forward kernel too)."""
    if alibi_slopes is not None or softcap:
        raise NotImplementedError("flash_bwd_numba: ALiBi and softcapping are not supported")
    launches, (dq, dk, dv) = prepare_backward(q, k, v, cotangent=cotangent, lse_cotangent=lse_cotangent, scale=scale,
                                              causal=causal, window=window, key_padding_mask=key_padding_mask,
                                              block_q=block_q, block_k=block_k)
    launches()
    cuda.synchronize()
    return {"q": dq.copy_to_host(), "k": dk.copy_to_host(), "v": dv.copy_to_host()}


def ptx_cases():
    """(name, kernel, signature) of representative configurations, for ``numba.cuda.compile_ptx``."""
    data = "float32[:, :, :, ::1]"
    rows = "float32[:, :, ::1]"
    cases = [("flash_bwd_preprocess", preprocess, f"void({data}, {data}, {rows}, {rows})")]
    for block_q, block_k, capacity in ((16, 16, 128), (4, 4, 4)):  # the default, the simulator's
        cases.append((f"flash_dkdv[{block_q}x{block_k}, d<={capacity}]", dkdv_kernel(block_q, block_k, capacity),
                      f"void({data}, {data}, {data}, {data}, {rows}, {rows}, uint8[:, ::1], {data}, {data}, "
                      "float32, int64, int64)"))
        cases.append((f"flash_dq[{block_q}x{block_k}, d<={capacity}]", dq_kernel(block_q, block_k, capacity),
                      f"void({data}, {data}, {data}, {data}, {rows}, {rows}, uint8[:, ::1], {data}, "
                      "float32, int64, int64)"))
    return cases
