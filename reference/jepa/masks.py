"""The multi-block masks of V-JEPA and I-JEPA, drawn from a seeded generator.

- ``multiblock3d`` (Bardes et al. 2024, "Revisiting Feature Prediction for Learning Visual
  Representations from Video", V-JEPA; facebookresearch/jepa: src/masks/multiblock3d.py
  ``_MaskGenerator``): on a grid of T x H x W patches (16 frames in tubelets of 2, 224 pixels in
  patches of 16: 8 x 14 x 14), one block size per call, from three uniforms u in [0, 1):

      t = max(1, int(T (t_lo + u_0 (t_hi - t_lo)))),    k = int(H W (s_lo + u_1 (s_hi - s_lo))),
      a = a_lo + u_2 (a_hi - a_lo),    h = min(round(sqrt(k a)), H),    w = min(round(sqrt(k / a)), W);

  per sample ``blocks`` boxes of that size, each start uniform where the box fits ([0, T - t] x
  [0, H - h] x [0, W - w]); the prediction target is the union of the boxes, the context its
  complement, and a draw whose context is empty is redrawn (the positions, not the size). V-JEPA
  pretrains with two such masks (``VJEPA_MASKS``; configs/pretrain/vitl16.yaml): 8 blocks at
  spatial scale 0.15 (short-range) and 2 at 0.7 (long-range), temporal scale 1 (every block spans
  every frame), aspect ratio in [0.75, 1.5].
- ``ijepa_multiblock`` (Assran et al. 2023, "Self-Supervised Learning from Images with a
  Joint-Embedding Predictive Architecture", I-JEPA; facebookresearch/ijepa: src/masks/multiblock.py
  ``MaskCollator``): on H x W patches, one prediction size and one context size per call, each
  from one uniform u (its scale and aspect ratio move together):

      k = int(H W (s_lo + u (s_hi - s_lo))),  a = a_lo + u (a_hi - a_lo),
      h = min(round(sqrt(k a)), H - 1),  w = min(round(sqrt(k / a)), W - 1)

  (the context's aspect ratio is 1); per sample ``npred`` prediction boxes, top uniform in
  [0, H - h] and left in [0, W - w]; then ``nenc`` context boxes, each restricted to the
  complement of every prediction box (unless ``allow_overlap``) and redrawn until more than
  ``min_keep`` patches remain, the last kept prediction box's exclusion dropped after every
  ``PATIENCE`` failed draws. Defaults: the paper's configs (configs/in1k_vith14_ep300.yaml), not
  the code's.
- ``collate_indices``: the collators' index lists: each mask's positions, flattened row-major,
  increasing, truncated to the batch's smallest count (and ``max_keep``): the lowest kept.

Differences from the originals: one numpy Generator (``seed``) draws everything, where they seed
a torch Generator with a step counter for the sizes and take the positions from the global RNG:
the same distribution, not the same numbers. ijepa draws the top from [0, H - h - 1]
(``torch.randint(0, H - h)`` excludes its bound), so its last row and column are never in a
block; here the bound is H - h, the fix of facebookresearch/ijepa PR #40 (jepa's multiblock3d
already has it). What would hang the originals or give empty blocks is refused with a
ValueError: a possible block size of zero patches, a block filling the grid (the context would
always be empty), blocks of at most ``min_keep`` patches (ijepa #68).
"""

import functools
import math
from typing import NamedTuple

import numpy as np

from .._checks import check_bool, check_pair, check_rng, finite_real, int_in_range, positive_int

VJEPA_GRID = (8, 14, 14)
VJEPA_MASKS = (
    {"blocks": 8, "spatial_scale": (0.15, 0.15), "temporal_scale": (1.0, 1.0), "aspect_ratio": (0.75, 1.5)},
    {"blocks": 2, "spatial_scale": (0.7, 0.7), "temporal_scale": (1.0, 1.0), "aspect_ratio": (0.75, 1.5)},
)
IJEPA_GRID = (14, 14)  # 224 pixels in patches of 16; ViT-H/14 at 224 has (16, 16), ViT-H/16 at 448 (28, 28)
PATIENCE = 20  # ijepa: failed context draws before one more prediction box's exclusion is dropped
MAX_REDRAWS = 10_000  # multiblock3d: draws with an empty context before giving up


class Multiblock3D(NamedTuple):
    """boxes (B, blocks, 6) int64: t0, h0, w0, t, h, w; context and target (B, T, H, W) bool."""

    boxes: np.ndarray
    context: np.ndarray
    target: np.ndarray


class IJEPAMasks(NamedTuple):
    """pred_boxes (B, npred, 4) and enc_boxes (B, nenc, 4) int64: top, left, h, w; pred (B, npred,
    H, W) and enc (B, nenc, H, W) bool; respected (B, nenc) int64: how many prediction boxes, the
    first ones, each context mask excludes."""

    pred_boxes: np.ndarray
    enc_boxes: np.ndarray
    pred: np.ndarray
    enc: np.ndarray
    respected: np.ndarray


# ----------------------------------------------------------------------------- arguments

def _grid(grid, dims: int) -> tuple:
    if not isinstance(grid, (tuple, list)) or len(grid) != dims:
        raise TypeError(f"grid must be a tuple of {dims} ints ({'T, H, W' if dims == 3 else 'H, W'}); got {grid!r}")
    return tuple(positive_int("grid", n) for n in grid)


def _range(name, pair, *, scale: bool) -> tuple:
    """(lo, hi) with 0 < lo <= hi (and hi <= 1 for a scale)."""
    lo, hi = (finite_real(name, x, "> 0") for x in check_pair(name, pair))
    if lo > hi or (scale and hi > 1):
        raise ValueError(f"{name} must be (lo, hi) with 0 < lo <= hi{' <= 1' if scale else ''}; got {pair!r}")
    return lo, hi


# ----------------------------------------------------------------------------- block sizes

def _frames(T, temporal, u) -> int:
    return max(1, int(T * (temporal[0] + u * (temporal[1] - temporal[0]))))


def _area(cells, scale, u) -> int:
    return int(cells * (scale[0] + u * (scale[1] - scale[0])))


def _shape(k, a, H, W) -> tuple:
    return min(round(math.sqrt(k * a)), H), min(round(math.sqrt(k / a)), W)


def _size_3d(grid, spatial, temporal, aspect, u) -> tuple:
    T, H, W = grid
    return (_frames(T, temporal, u[0]), *_shape(_area(H * W, spatial, u[1]), aspect[0] + u[2] * (aspect[1] - aspect[0]),
                                                H, W))


def _size_2d(grid, scale, aspect, u) -> tuple:
    """One uniform for the scale and the aspect ratio; sides at most H - 1 and W - 1 (ijepa's
    ``while h >= H: h -= 1``)."""
    H, W = grid
    return _shape(_area(H * W, scale, u), aspect[0] + u * (aspect[1] - aspect[0]), H - 1, W - 1)


def _cuts(interval, crossings) -> np.ndarray:
    """The u where lo + u (hi - lo) equals one of ``crossings`` (none if lo == hi)."""
    lo, hi = interval
    return np.zeros(0) if hi == lo else (np.asarray(crossings, dtype=np.float64) - lo) / (hi - lo)


def _pieces(f, cuts) -> dict:
    """{f(u): probability} for u uniform on [0, 1) and f constant between the ``cuts``."""
    edges = np.unique(np.clip(np.concatenate([[0.0, 1.0], cuts]), 0.0, 1.0))
    measure = {}
    for lo, hi in zip(edges[:-1], edges[1:]):
        value = f((lo + hi) / 2)
        measure[value] = measure.get(value, 0.0) + float(hi - lo)
    return measure


def _aspect_cuts(k_values, aspect, longest: int) -> np.ndarray:
    """Where round(sqrt(k a)) or round(sqrt(k / a)) changes, for any of ``k_values``, as a moves
    across ``aspect``."""
    half = np.arange(longest + 1) + 0.5
    return _cuts(aspect, [c for k in k_values if k > 0 for c in (*(half**2 / k), *(k / half**2))])


def multiblock3d_sizes(grid, *, spatial_scale, temporal_scale=(1.0, 1.0), aspect_ratio=(0.75, 1.5)) -> dict:
    """The distribution of ``multiblock3d``'s block size (module docstring), exactly:
    {(t, h, w): probability}, the measure of the uniforms that give each size."""
    return dict(_sizes_3d(_grid(grid, 3), _range("spatial_scale", spatial_scale, scale=True),
                          _range("temporal_scale", temporal_scale, scale=True),
                          _range("aspect_ratio", aspect_ratio, scale=False)))


@functools.lru_cache(maxsize=256)
def _sizes_3d(grid, spatial, temporal, aspect) -> tuple:
    T, H, W = grid
    frames = _pieces(lambda u: _frames(T, temporal, u), _cuts(temporal, np.arange(T + 1) / T))
    areas = _pieces(lambda u: _area(H * W, spatial, u), _cuts(spatial, np.arange(H * W + 1) / (H * W)))
    sizes = {}
    for k, p_k in areas.items():
        shapes = _pieces(lambda u: _shape(k, aspect[0] + u * (aspect[1] - aspect[0]), H, W),
                         _aspect_cuts([k], aspect, max(H, W)))
        for t, p_t in frames.items():
            for (h, w), p_hw in shapes.items():
                sizes[(t, h, w)] = sizes.get((t, h, w), 0.0) + p_t * p_k * p_hw
    return tuple(sizes.items())


def ijepa_sizes(grid, *, scale, aspect_ratio) -> dict:
    """The distribution of ``ijepa_multiblock``'s block size for a scale range and an aspect range
    (module docstring; the context's aspect range is (1, 1)), exactly: {(h, w): probability}."""
    return dict(_sizes_2d(_grid(grid, 2), _range("scale", scale, scale=True),
                          _range("aspect_ratio", aspect_ratio, scale=False)))


@functools.lru_cache(maxsize=256)
def _sizes_2d(grid, scale, aspect) -> tuple:
    H, W = grid
    k_values = range(_area(H * W, scale, 0.0), _area(H * W, scale, 1.0) + 1)
    cuts = np.concatenate([_cuts(scale, np.arange(H * W + 1) / (H * W)), _aspect_cuts(k_values, aspect, max(H, W))])
    return tuple(_pieces(lambda u: _size_2d((H, W), scale, aspect, u), cuts).items())


# ----------------------------------------------------------------------------- V-JEPA

def _refuse_degenerate(sizes, grid, name: str) -> None:
    for size in sizes:
        if min(size) == 0:
            raise ValueError(f"{name} on grid {grid} can give a block of size {size}: no patches (scale too small)")
        if size == tuple(grid):
            raise ValueError(f"{name} on grid {grid} can give a block filling the grid: the context would be empty "
                             f"(scale too large)")


def _union(starts, size, grid) -> np.ndarray:
    covered = np.zeros(grid, dtype=bool)
    t, h, w = size
    for t0, h0, w0 in starts:
        covered[t0:t0 + t, h0:h0 + h, w0:w0 + w] = True
    return covered


def multiblock3d(grid, *, blocks, spatial_scale, temporal_scale=(1.0, 1.0), aspect_ratio=(0.75, 1.5), batch=1,
                 seed):
    """V-JEPA's multi-block mask (module docstring) for ``batch`` samples on ``grid`` (T, H, W):
    one size for the call, ``blocks`` boxes per sample, the context the complement of their union
    (never empty: such draws are redrawn). ``seed``: an int or a numpy Generator. Returns
    ``Multiblock3D(boxes, context, target)``."""
    grid = _grid(grid, 3)
    n, B = positive_int("blocks", blocks), int_in_range("batch", batch, 0)
    spatial = _range("spatial_scale", spatial_scale, scale=True)
    temporal = _range("temporal_scale", temporal_scale, scale=True)
    aspect = _range("aspect_ratio", aspect_ratio, scale=False)
    rng = check_rng("seed", seed)
    _refuse_degenerate(multiblock3d_sizes(grid, spatial_scale=spatial, temporal_scale=temporal, aspect_ratio=aspect),
                       grid, "spatial_scale / temporal_scale")
    size = _size_3d(grid, spatial, temporal, aspect, rng.random(3))
    boxes = np.zeros((B, n, 6), dtype=np.int64)
    boxes[..., 3:] = size
    target = np.zeros((B, *grid), dtype=bool)
    for b in range(B):
        for _ in range(MAX_REDRAWS):
            starts = np.stack([rng.integers(0, d - s + 1, n) for d, s in zip(grid, size)], axis=1)
            covered = _union(starts, size, grid)
            if not covered.all():
                break
        else:
            raise RuntimeError(f"multiblock3d: {MAX_REDRAWS} draws of {n} blocks of size {size} on grid {grid} all "
                               f"covered the grid (fewer or smaller blocks leave a context)")
        boxes[b, :, :3] = starts
        target[b] = covered
    return Multiblock3D(boxes, ~target, target)


# ----------------------------------------------------------------------------- I-JEPA

def _ijepa_box(rng, grid, size, regions, min_keep):
    """(top, left, mask, regions respected) of one accepted box: redrawn until more than
    ``min_keep`` patches remain in the kept regions, one region fewer kept every PATIENCE draws."""
    H, W = grid
    h, w = size
    failures = 0
    while True:
        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))
        mask = np.zeros(grid, dtype=bool)
        mask[top:top + h, left:left + w] = True
        kept = max(len(regions) - failures // PATIENCE, 0)
        for region in regions[:kept]:
            mask &= region
        if mask.sum() > min_keep:
            return top, left, mask, kept
        failures += 1


def ijepa_multiblock(grid, *, batch=1, seed, pred_scale=(0.15, 0.2), enc_scale=(0.85, 1.0), aspect_ratio=(0.75, 1.5),
                     npred=4, nenc=1, min_keep=10, allow_overlap=False):
    """I-JEPA's multi-block masks (module docstring) for ``batch`` samples on ``grid`` (H, W): one
    prediction size and one context size for the call; per sample ``npred`` prediction boxes and
    ``nenc`` context masks (each its box less the prediction boxes it respects). ``seed``: an int
    or a numpy Generator. Returns ``IJEPAMasks``."""
    grid = _grid(grid, 2)
    B, n_pred, n_enc = int_in_range("batch", batch, 0), positive_int("npred", npred), positive_int("nenc", nenc)
    keep = int_in_range("min_keep", min_keep, 0)
    overlap = check_bool("allow_overlap", allow_overlap)
    pred_range = _range("pred_scale", pred_scale, scale=True)
    enc_range = _range("enc_scale", enc_scale, scale=True)
    aspect = _range("aspect_ratio", aspect_ratio, scale=False)
    rng = check_rng("seed", seed)
    for name, scale, ratio in (("pred_scale", pred_range, aspect), ("enc_scale", enc_range, (1.0, 1.0))):
        small = [size for size in ijepa_sizes(grid, scale=scale, aspect_ratio=ratio) if size[0] * size[1] <= keep]
        if small:
            raise ValueError(f"{name} on grid {grid} can give blocks of {min(small)} patches, not more than "
                             f"min_keep={keep}: such a block is never accepted (the original loops forever)")
    u_pred, u_enc = rng.random(2)
    pred_size = _size_2d(grid, pred_range, aspect, u_pred)
    enc_size = _size_2d(grid, enc_range, (1.0, 1.0), u_enc)
    pred_boxes, enc_boxes = np.zeros((B, n_pred, 4), dtype=np.int64), np.zeros((B, n_enc, 4), dtype=np.int64)
    pred, enc = np.zeros((B, n_pred, *grid), dtype=bool), np.zeros((B, n_enc, *grid), dtype=bool)
    respected = np.zeros((B, n_enc), dtype=np.int64)
    for b in range(B):
        for i in range(n_pred):
            top, left, pred[b, i], _ = _ijepa_box(rng, grid, pred_size, [], keep)
            pred_boxes[b, i] = (top, left, *pred_size)
        regions = [] if overlap else [~m for m in pred[b]]
        for i in range(n_enc):
            top, left, enc[b, i], respected[b, i] = _ijepa_box(rng, grid, enc_size, regions, keep)
            enc_boxes[b, i] = (top, left, *enc_size)
    return IJEPAMasks(pred_boxes, enc_boxes, pred, enc, respected)


# ----------------------------------------------------------------------------- collation

def collate_indices(masks, *, max_keep=None) -> np.ndarray:
    """The collators' index lists of ``masks`` (N, ...) bool: row i holds the flattened (row-major)
    positions where masks[i] is True, increasing, truncated to the smallest count over the N masks
    (and to ``max_keep``, if given). Returns (N, K) int64. For I-JEPA's per-block lists pass
    ``pred.reshape(B * npred, H, W)`` (their minimum runs over every sample and block)."""
    masks = np.asarray(masks)
    if masks.dtype != bool or masks.ndim < 2 or masks.shape[0] == 0:
        raise ValueError(f"masks must be a bool array (N, ...) with N >= 1; got {masks.dtype} {masks.shape}")
    flat = masks.reshape(masks.shape[0], -1)
    keep = int(flat.sum(axis=1).min())
    if max_keep is not None:
        keep = min(keep, positive_int("max_keep", max_keep))
    return np.stack([np.flatnonzero(row)[:keep] for row in flat]).astype(np.int64)
