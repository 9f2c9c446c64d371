"""Deliberately wrong sparse attention and masks: each must be rejected by a claim. The tiled
kernel that counts its key tiles as T // b and so never visits a partial last tile (the
FlexAttention block-mask bug class, pytorch #141126, #153799), a BigBird window that wraps around
(a cyclic roll), Longformer's global tokens as rows only (not seen by the others), a backward
whose exp(s - lse) is unguarded on rows that see no key (NaN)."""

import numpy as np

from seqcheck.reference import sparse as ref


def block_sparse_without_the_partial_tile(q, k, v, block_mask, *, block_size, token_mask=None, scale=None,
                                          return_lse=False):
    """Key tiles counted as Tk // b: where b does not divide Tk the last, partial tile is never visited."""
    Tk = np.shape(k)[1]
    full = Tk // block_size
    dropped = np.asarray(block_mask).copy()
    dropped[:, full:] = False
    return ref.block_sparse_attention(q, k, v, dropped, block_size=block_size, token_mask=token_mask, scale=scale,
                                      return_lse=return_lse)


def bigbird_window_wrapping(blocks, *, random_blocks, seed):
    """The middle rows' window built by rolling their band cyclically: row 1 also sees block
    n - 2 and row n - 2 block 1 (the band wraps around instead of being clipped)."""
    mask = ref.bigbird_block_mask(blocks, random_blocks=random_blocks, seed=seed)
    middle = np.arange(1, blocks - 1)
    if len(middle) > 2:
        mask[middle, np.roll(middle, 1)] = True  # row 1 sees block n - 2
        mask[middle, np.roll(middle, -1)] = True  # row n - 2 sees block 1
    return mask


def longformer_global_rows_only(length, *, window, global_tokens=()):
    """Global tokens that see every key but are seen only through the window."""
    T = length
    i = np.arange(T)
    mask = np.abs(i[:, None] - i[None, :]) <= window
    mask[np.asarray(global_tokens, dtype=np.int64), :] = True
    return mask


MUTANTS = {
    "sparse.block_sparse.dense_equivalence": block_sparse_without_the_partial_tile,
    "sparse.bigbird.structure": bigbird_window_wrapping,
    "sparse.longformer.symmetric_global": longformer_global_rows_only,
}
"""The mutant each claim of the family must reject, by claim key."""


def block_sparse_vjp_unguarded(q, k, v, block_mask, *, block_size, token_mask=None, scale=None, cotangent,
                               lse_cotangent=None):
    """P = exp(s - lse) * mask per visited tile, unguarded: on a row whose lse is -inf (no key
    visible) exp(+inf) * 0 is NaN (FlexAttention's backward NaN, pytorch #153799)."""
    q, k, v, c = (np.asarray(a, dtype=np.float64) for a in (q, k, v, cotangent))
    B, Tq, H, D = q.shape
    Tk, b = k.shape[1], block_size
    token_mask = np.ones((Tq, Tk), dtype=bool) if token_mask is None else np.asarray(token_mask)
    scale = D ** -0.5 if scale is None else scale
    dl = np.zeros((B, Tq, H)) if lse_cotangent is None else np.asarray(lse_cotangent)
    out, lse = ref.block_sparse_attention(q, k, v, block_mask, block_size=b, token_mask=token_mask, scale=scale,
                                          return_lse=True)
    Dr = (c * out).sum(axis=-1) - dl
    dq, dk, dv = np.zeros_like(q), np.zeros_like(k), np.zeros_like(v)
    with np.errstate(over="ignore", invalid="ignore"):
        for I in range(-(-Tq // b)):
            rows = slice(I * b, min((I + 1) * b, Tq))
            row_lse = np.swapaxes(lse[:, rows], 1, 2)[..., None]
            for J in np.nonzero(np.asarray(block_mask)[I])[0]:
                cols = slice(J * b, min((J + 1) * b, Tk))
                s = scale * np.einsum("bihd,bjhd->bhij", q[:, rows], k[:, cols])
                P = np.exp(s - row_lse) * token_mask[rows, cols][None, None]
                dS = P * (np.einsum("bihe,bjhe->bhij", c[:, rows], v[:, cols]) - np.swapaxes(Dr[:, rows], 1, 2)[..., None])
                dv[:, cols] += np.einsum("bhij,bihe->bjhe", P, c[:, rows])
                dk[:, cols] += scale * np.einsum("bhij,bihd->bjhd", dS, q[:, rows])
                dq[:, rows] += scale * np.einsum("bhij,bjhd->bihd", dS, k[:, cols])
    return {"q": dq, "k": dk, "v": dv}


MUTANTS["sparse.block_sparse.backward"] = block_sparse_vjp_unguarded
