"""FlashAttention forwards in NumPy with their own fixed 64 x 64 tiles, as a production kernel has.

Signature of ``seqcheck.reference.attention.softmax_attention`` (no block sizes: the tiles are
hard-coded, so ``check`` drops the form's ``block_q`` / ``block_k``); q (B, Tq, H, D), k and v
(B, Tk, Hkv, D), query head h reading kv head h // (H / Hkv); causal and window aligned
bottom-right; a row with no visible key gives out = 0 and lse = -inf.

- ``flash_fixed_tiles``: correct.
- ``flash_no_output_rescale``: bug (a), the running output is not rescaled when the running
  max grows; it shows only when a row's keys span two tiles (Tk > 64) and the max moves on.
- ``flash_drops_last_key_tile``: bug (b), the number of key tiles is computed as
  ``max(1, (Tk - 1) // 64)``, so whenever there are two tiles or more the last one is skipped.

Each is written on its own (no shared tiling code), the way two authors would write them. They
are used by tests/test_sizes.py (the default strategies must catch both bugs with every seed)
and can be reused by a benchmark.
"""

import numpy as np

BLOCK_Q = 64
BLOCK_K = 64


def _visible(Tq, Tk, q0, q1, k0, k1, causal, window, key_padding_mask, batch):
    """(B, 1, q1-q0, k1-k0) bool: which keys of the tile each query of the tile sees."""
    i = np.arange(q0, q1)[:, None]
    j = np.arange(k0, k1)[None, :]
    diagonal = i + Tk - Tq
    left, right = (None, None) if window is None else window
    if causal:
        right = 0
    ok = np.ones((q1 - q0, k1 - k0), dtype=bool)
    if left is not None:
        ok &= j >= diagonal - left
    if right is not None:
        ok &= j <= diagonal + right
    ok = np.broadcast_to(ok, (batch, 1) + ok.shape)
    if key_padding_mask is not None:
        ok = ok & np.asarray(key_padding_mask, dtype=bool)[:, None, None, k0:k1]
    return ok


def flash_fixed_tiles(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                      alibi_slopes=None, softcap=None, return_lse=False):
    """FlashAttention-2 forward with 64 x 64 tiles (correct)."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    group = H // Hkv
    scale = 1.0 / np.sqrt(D) if scale is None else scale
    qh = q.transpose(0, 2, 1, 3)                                   # (B, H, Tq, D)
    kh = np.repeat(k, group, axis=2).transpose(0, 2, 1, 3)         # (B, H, Tk, D)
    vh = np.repeat(v, group, axis=2).transpose(0, 2, 1, 3)
    slopes = None if alibi_slopes is None else np.asarray(alibi_slopes, dtype=np.float64).reshape(-1, H)
    out = np.zeros((B, H, Tq, v.shape[3]))
    lse = np.zeros((B, H, Tq))
    for q0 in range(0, Tq, BLOCK_Q):
        q1 = min(q0 + BLOCK_Q, Tq)
        m = np.full((B, H, q1 - q0), -np.inf)
        l = np.zeros((B, H, q1 - q0))
        acc = np.zeros((B, H, q1 - q0, v.shape[3]))
        for k0 in range(0, Tk, BLOCK_K):
            k1 = min(k0 + BLOCK_K, Tk)
            s = scale * (qh[:, :, q0:q1] @ kh[:, :, k0:k1].transpose(0, 1, 3, 2))
            if softcap:
                s = softcap * np.tanh(s / softcap)
            if slopes is not None:
                distance = np.abs(np.arange(q0, q1)[:, None] + Tk - Tq - np.arange(k0, k1)[None, :])
                s = s - slopes[:, :, None, None] * distance
            s = np.where(_visible(Tq, Tk, q0, q1, k0, k1, causal, window, key_padding_mask, B), s, -np.inf)
            m_new = np.maximum(m, s.max(axis=-1))
            shift = np.where(np.isneginf(m_new), 0.0, m_new)
            alpha = np.exp(m - shift)
            p = np.exp(s - shift[..., None])
            l = alpha * l + p.sum(axis=-1)
            acc = alpha[..., None] * acc + p @ vh[:, :, k0:k1]
            m = m_new
        out[:, :, q0:q1] = acc / np.where(l == 0, 1.0, l)[..., None]
        with np.errstate(divide="ignore"):
            lse[:, :, q0:q1] = np.where(np.isneginf(m), 0.0, m) + np.log(l)
    out = out.transpose(0, 2, 1, 3)
    return (out, lse.transpose(0, 2, 1)) if return_lse else out


def flash_no_output_rescale(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                            alibi_slopes=None, softcap=None, return_lse=False):
    """Tiled attention, 64 x 64, whose output accumulator misses the rescale by exp(m_old - m_new)
    (the running sum gets it): wrong as soon as a later key tile raises a row's max."""
    q = np.asarray(q, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    B, Tq, H, D = q.shape
    _, Tk, Hkv, Dv = v.shape
    c = (1.0 / np.sqrt(D)) if scale is None else float(scale)
    heads_of = np.arange(H) // (H // Hkv)
    kpm = None if key_padding_mask is None else np.asarray(key_padding_mask, dtype=bool)
    out = np.empty((B, Tq, H, Dv))
    lse = np.empty((B, Tq, H))
    n_q = -(-Tq // BLOCK_Q)
    n_k = -(-Tk // BLOCK_K)
    for bq in range(n_q):
        rows = np.arange(bq * BLOCK_Q, min((bq + 1) * BLOCK_Q, Tq))
        qt = q[:, rows]                                            # (B, r, H, D)
        run_max = np.full((B, len(rows), H), -np.inf)
        run_sum = np.zeros((B, len(rows), H))
        o = np.zeros((B, len(rows), H, Dv))
        for bk in range(n_k):
            cols = np.arange(bk * BLOCK_K, min((bk + 1) * BLOCK_K, Tk))
            kt = k[:, cols][:, :, heads_of]                        # (B, c, H, D)
            vt = v[:, cols][:, :, heads_of]
            scores = c * np.einsum("brhd,bchd->brhc", qt, kt)
            if softcap:
                scores = softcap * np.tanh(scores / softcap)
            rel = rows[:, None] + (Tk - Tq) - cols[None, :]      # (r, c)
            if alibi_slopes is not None:
                sl = np.asarray(alibi_slopes, dtype=np.float64)
                sl = sl[None, :] if sl.ndim == 1 else sl             # (B or 1, H)
                scores = scores - sl[:, None, :, None] * np.abs(rel)[None, :, None, :]
            ok = np.ones(rel.shape, dtype=bool)
            lo, hi = (None, None) if window is None else window
            if causal:
                hi = 0
            if lo is not None:
                ok &= rel <= lo                                    # j >= i + Tk - Tq - left
            if hi is not None:
                ok &= rel >= -hi                                   # j <= i + Tk - Tq + right
            ok = np.broadcast_to(ok[None, :, None, :], scores.shape)
            if kpm is not None:
                ok = ok & kpm[:, None, None, cols]
            scores = np.where(ok, scores, -np.inf)
            new_max = np.maximum(run_max, scores.max(axis=-1))
            ref = np.where(new_max == -np.inf, 0.0, new_max)
            weights = np.exp(scores - ref[..., None])
            run_sum = np.exp(run_max - ref) * run_sum + weights.sum(axis=-1)
            o = o + np.einsum("brhc,bchd->brhd", weights, vt)     # BUG: o is not multiplied by exp(run_max - ref)
            run_max = new_max
        out[:, rows] = o / np.where(run_sum == 0, 1.0, run_sum)[..., None]
        with np.errstate(divide="ignore"):
            lse[:, rows] = np.where(run_max == -np.inf, 0.0, run_max) + np.log(run_sum)
    return (out, lse) if return_lse else out


def flash_drops_last_key_tile(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                              alibi_slopes=None, softcap=None, return_lse=False):
    """Tiled attention, 64 x 64, whose key-tile count is off by one: ``max(1, (Tk - 1) // 64)``
    tiles instead of ceil(Tk / 64), so with Tk > 64 the last key tile is never visited."""
    q, k, v = np.asarray(q, float), np.asarray(k, float), np.asarray(v, float)
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    g = H // Hkv
    sc = 1 / np.sqrt(D) if scale is None else scale
    slopes = None
    if alibi_slopes is not None:
        slopes = np.broadcast_to(np.asarray(alibi_slopes, float).reshape(-1, H), (B, H))
    left, right = (None, None) if window is None else window
    if causal:
        right = 0
    out = np.zeros((B, Tq, H, v.shape[3]))
    lse = np.full((B, Tq, H), -np.inf)
    key_tiles = max(1, (Tk - 1) // BLOCK_K)                        # BUG: should be -(-Tk // BLOCK_K)
    for h in range(H):
        kv = h // g
        for start_q in range(0, Tq, BLOCK_Q):
            i = np.arange(start_q, min(start_q + BLOCK_Q, Tq))
            Q = q[:, i, h]                                         # (B, r, D)
            mx = np.full((B, len(i)), -np.inf)
            den = np.zeros((B, len(i)))
            num = np.zeros((B, len(i), v.shape[3]))
            for t in range(key_tiles):
                j = np.arange(t * BLOCK_K, min((t + 1) * BLOCK_K, Tk))
                S = sc * np.einsum("brd,bcd->brc", Q, k[:, j, kv])
                if softcap:
                    S = softcap * np.tanh(S / softcap)
                diag = i[:, None] + Tk - Tq
                if slopes is not None:
                    S = S - slopes[:, h, None, None] * np.abs(diag - j[None, :])
                seen = np.ones((len(i), len(j)), bool)
                if left is not None:
                    seen &= j[None, :] >= diag - left
                if right is not None:
                    seen &= j[None, :] <= diag + right
                seen = np.broadcast_to(seen, S.shape)
                if key_padding_mask is not None:
                    seen = seen & np.asarray(key_padding_mask, bool)[:, None, j]
                S = np.where(seen, S, -np.inf)
                mx_new = np.maximum(mx, S.max(axis=-1))
                base = np.where(np.isfinite(mx_new), mx_new, 0.0)
                corr = np.exp(mx - base)
                P = np.exp(S - base[..., None])
                den = corr * den + P.sum(-1)
                num = corr[..., None] * num + P @ v[:, j, kv]
                mx = mx_new
            out[:, i, h] = num / np.where(den > 0, den, 1.0)[..., None]
            with np.errstate(divide="ignore"):
                lse[:, i, h] = np.where(np.isfinite(mx), mx, 0.0) + np.log(den)
    return (out, lse) if return_lse else out


KERNELS = {"correct": flash_fixed_tiles, "no_output_rescale": flash_no_output_rescale,
           "drops_last_key_tile": flash_drops_last_key_tile}
