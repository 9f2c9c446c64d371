"""The MoE layer's dispatch form on an array module (CuPy on a GPU, NumPy in CI): the form
"moe.layer.dispatch" (reference/moe/layer.py), as grouped-GEMM MoE kernels lay it out.

1. locate    per batch row, the slots in priority order (slot j of every token before slot
             j + 1), each slot's queue position in its expert = a cumulative count of one-hot
             rows minus 1; kept where it is below ``capacity`` (GShard's ``locations``)
2. permute   the kept slots' tokens gathered and sorted by expert (a stable argsort)
3. compute   one SwiGLU per expert over its contiguous rows: two cuBLAS products, silu, one more
4. combine   each row scaled by its gate and added onto its token, one slot index at a time (a
             token appears at most once per slot index, so the additions need no atomics)

Float32 for float32 and float16 inputs (float16 widened on the device, the output rounded back),
float64 for float64. x (B, T, D), expert_index (B, T, k) int (-1: empty), gate (B, T, k),
w_gate and w_up (E, D, F), w_down (E, F, D).
"""

from __future__ import annotations

import numpy as np

from seqcheck.gpu.xp import array_module, compute_dtype, to_device, to_host


def moe_dispatch(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None, xp=None):
    """Host wrapper with the form's signature: NumPy (or device) arrays in, y (B, T, D) in x's dtype out."""
    xp = array_module(xp)
    out_dtype = x.dtype
    work = compute_dtype(out_dtype)
    x, gate, w_gate, w_up, w_down = (to_device(a, xp, work) for a in (x, gate, w_gate, w_up, w_down))
    index = to_device(expert_index, xp).astype(xp.int64)
    y = moe_dispatch_device(x, index, gate, w_gate, w_up, w_down, capacity, xp)
    return to_host(y.astype(out_dtype, copy=False))


def locate(index, capacity, E, xp):
    """Step 1: (order (B, k T) the slots' experts in priority order, kept (B, k T))."""
    B, T, k = index.shape
    order = xp.swapaxes(index, 1, 2).reshape(B, k * T)
    one_hot = (order[..., None] == xp.arange(E)).astype(xp.int64)
    location = ((xp.cumsum(one_hot, axis=1) - 1) * one_hot).sum(axis=-1)
    kept = order >= 0
    return order, kept if capacity is None else kept & (location < capacity)


def moe_dispatch_device(x, index, gate, w_gate, w_up, w_down, capacity, xp, *, locate_slots=None):
    """The four steps on device arrays; ``locate_slots`` replaces step 1 (the tests' mutants)."""
    locate_slots = locate if locate_slots is None else locate_slots
    B, T, k = index.shape
    E = w_gate.shape[0]
    order, kept = locate_slots(index, capacity, E, xp)
    b, s = xp.nonzero(kept)
    experts = order[b, s]
    sort = np.argsort(experts, kind="stable") if xp is np else xp.argsort(experts)  # CuPy's is stable
    b, s, experts = b[sort], s[sort], experts[sort]
    j, t = s // T, s % T
    rows = x[b, t]
    out = xp.empty_like(rows)
    starts = to_host(xp.searchsorted(experts, xp.arange(E + 1)))
    for e in range(E):
        lo, hi = int(starts[e]), int(starts[e + 1])
        if hi > lo:
            h = rows[lo:hi] @ w_gate[e]
            with np.errstate(over="ignore"):  # exp(-h) = inf for h << 0 gives silu(h) = h / inf = -0, its limit
                out[lo:hi] = (h / (1 + xp.exp(-h)) * (rows[lo:hi] @ w_up[e])) @ w_down[e]
    y = xp.zeros_like(x)
    weighted = gate[b, t, j][:, None] * out
    for slot in range(k):
        mine = j == slot
        y[b[mine], t[mine]] += weighted[mine]
    return y
