"""The sparse patterns of BigBird and Longformer, as masks.

- ``bigbird_block_mask`` (Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences",
  ITC: internal transformer construction; google-research/bigbird: bigbird/core/attention.py
  ``bigbird_block_sparse_attention``): n blocks; blocks 0 and n - 1 are global (their rows see
  every block, every row sees them); every row sees the window of blocks i - 1, i, i + 1 (clipped
  at the ends, never wrapping); rows 1 .. n - 2 also see ``random_blocks`` blocks drawn, row by row
  in order, by one permutation each from ``numpy.random.default_rng(seed)`` among the blocks that
  are neither global nor in the row's window (as ``get_single_block_row_attention`` excludes
  them). Differences: the originals draw from the blocks below a plan's end (the first 2r + 5
  blocks in Hugging Face's ``_bigbird_block_rand_mask_with_head``, the first 1024 tokens in
  google-research's legacy path) and their sparse kernel counts a random block that repeats a
  window block twice; here every non-global, non-window block is a candidate and the mask is a
  set. Hugging Face's eval mode draws no random blocks at all (every row's are block 0).
- ``longformer_mask`` (Beltagy et al. 2020; allenai/longformer: longformer/sliding_chunks.py,
  longformer.py): query i sees key j where |i - j| <= ``window`` (one side's width, the original
  config's meaning; Hugging Face's ``attention_window`` is the total, its one side
  ``attention_window // 2``), and the ``global_tokens`` see every key and are seen by every query
  (symmetric).
"""

import numpy as np

from .._checks import check_rng, int_in_range, positive_int


def bigbird_block_mask(blocks, *, random_blocks, seed):
    """BigBird ITC's block mask (module docstring): (blocks, blocks) bool, True where a query
    block attends a key block."""
    n = positive_int("blocks", blocks)
    r = int_in_range("random_blocks", random_blocks, 0)
    rng = check_rng("seed", seed)
    mask = np.zeros((n, n), dtype=bool)
    mask[[0, -1], :] = True
    mask[:, [0, -1]] = True
    i = np.arange(n)
    mask[np.abs(i[:, None] - i[None, :]) <= 1] = True
    for row in range(1, n - 1):
        candidates = np.array([j for j in range(1, n - 1) if abs(j - row) > 1], dtype=np.int64)
        mask[row, rng.permutation(candidates)[:r]] = True
    return mask


def longformer_mask(length, *, window, global_tokens=()):
    """Longformer's token mask (module docstring): (length, length) bool."""
    T = int_in_range("length", length, 0)
    w = int_in_range("window", window, 0)
    tokens = np.asarray(global_tokens)
    tokens = np.zeros(0, dtype=np.int64) if tokens.size == 0 and tokens.ndim == 1 else tokens
    if tokens.dtype.kind not in "iu" or tokens.ndim != 1 or (tokens.size and (tokens.min() < 0 or tokens.max() >= T)):
        raise ValueError(f"global_tokens must be a 1-D sequence of token indices in [0, {T}); got {global_tokens!r}")
    i = np.arange(T)
    mask = np.abs(i[:, None] - i[None, :]) <= w
    mask[tokens, :] = True
    mask[:, tokens] = True
    return mask
