"""The mask samplers of facebookresearch/jepa (src/masks/multiblock3d.py, ``_MaskGenerator``) and
facebookresearch/ijepa (src/masks/multiblock.py, ``MaskCollator``), ported to torch as they draw:
the block sizes from a ``torch.Generator`` (one ``torch.rand`` per scale, the same one for I-JEPA's
scale and aspect ratio), the positions from torch's global RNG with ``torch.randint``'s exclusive
upper bound (ijepa's ``randint(0, H - h)``: PR #40 not applied unless ``pr40``). Written from the
originals' semantics, not copied; the adapters return seqcheck's named tuples so the claims can
judge them.
"""

import math

import numpy as np

from seqcheck.reference.jepa import IJEPAMasks, Multiblock3D


def _uniform(generator) -> float:
    import torch

    return torch.rand(1, generator=generator).item()


def _randint(high: int) -> int:
    import torch

    return int(torch.randint(0, high, (1,)))


def vjepa_block_size(generator, grid, spatial_scale, temporal_scale, aspect_ratio):
    """(t, h, w) as ``_MaskGenerator._sample_block_size`` draws it."""
    T, H, W = grid
    t = max(1, int(T * (temporal_scale[0] + _uniform(generator) * (temporal_scale[1] - temporal_scale[0]))))
    keep = int(H * W * (spatial_scale[0] + _uniform(generator) * (spatial_scale[1] - spatial_scale[0])))
    ratio = aspect_ratio[0] + _uniform(generator) * (aspect_ratio[1] - aspect_ratio[0])
    return t, min(int(round(math.sqrt(keep * ratio))), H), min(int(round(math.sqrt(keep / ratio))), W)


def vjepa_torch(grid, *, blocks, spatial_scale, temporal_scale=(1.0, 1.0), aspect_ratio=(0.75, 1.5), batch=1, seed):
    """multiblock3d's collator for one generator: one size per call, each block's top, left and
    start drawn with ``randint(0, n - s + 1)``, all blocks redrawn while the context is empty."""
    import torch

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    T, H, W = grid
    t, h, w = vjepa_block_size(generator, grid, spatial_scale, temporal_scale, aspect_ratio)
    boxes = np.zeros((batch, blocks, 6), dtype=np.int64)
    target = np.zeros((batch, T, H, W), dtype=bool)
    for b in range(batch):
        while True:
            context = torch.ones((T, H, W), dtype=torch.int32)
            for i in range(blocks):
                top, left, start = _randint(H - h + 1), _randint(W - w + 1), _randint(T - t + 1)
                context[start:start + t, top:top + h, left:left + w] = 0
                boxes[b, i] = (start, top, left, t, h, w)
            if context.sum() > 0:
                break
        target[b] = context.numpy() == 0
    return Multiblock3D(boxes, ~target, target)


def ijepa_block_size(generator, grid, scale, aspect_ratio):
    """(h, w) as ``MaskCollator._sample_block_size`` draws it: one uniform for scale and ratio,
    sides shrunk below the grid's."""
    H, W = grid
    u = _uniform(generator)
    keep = int(H * W * (scale[0] + u * (scale[1] - scale[0])))
    ratio = aspect_ratio[0] + u * (aspect_ratio[1] - aspect_ratio[0])
    h, w = int(round(math.sqrt(keep * ratio))), int(round(math.sqrt(keep / ratio)))
    while h >= H:
        h -= 1
    while w >= W:
        w -= 1
    return h, w


def _ijepa_box(grid, size, regions, min_keep, pr40):
    """(top, left, mask, regions kept) as ``_sample_block_mask``: redrawn until more than min_keep
    patches remain, one exclusion fewer every 20 failures."""
    H, W = grid
    h, w = size
    tries, timeout = 0, 20
    while True:
        top, left = _randint(H - h + pr40), _randint(W - w + pr40)
        mask = np.zeros(grid, dtype=bool)
        mask[top:top + h, left:left + w] = True
        kept = max(len(regions) - tries, 0)
        for region in regions[:kept]:
            mask &= region
        if mask.sum() > min_keep:
            return top, left, mask, kept
        timeout -= 1
        if timeout == 0:
            tries, timeout = tries + 1, 20


def ijepa_torch(grid, *, batch=1, seed, pred_scale=(0.15, 0.2), enc_scale=(0.85, 1.0), aspect_ratio=(0.75, 1.5),
                npred=4, nenc=1, min_keep=10, allow_overlap=False, pr40=False):
    """I-JEPA's collator: the prediction size, then the context size, from the generator; per
    sample the prediction boxes, then the context boxes restricted to their complements."""
    import torch

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    pred_size = ijepa_block_size(generator, grid, pred_scale, aspect_ratio)
    enc_size = ijepa_block_size(generator, grid, enc_scale, (1.0, 1.0))
    pred_boxes, enc_boxes = np.zeros((batch, npred, 4), dtype=np.int64), np.zeros((batch, nenc, 4), dtype=np.int64)
    pred, enc = np.zeros((batch, npred, *grid), dtype=bool), np.zeros((batch, nenc, *grid), dtype=bool)
    respected = np.zeros((batch, nenc), dtype=np.int64)
    for b in range(batch):
        for i in range(npred):
            top, left, pred[b, i], _ = _ijepa_box(grid, pred_size, [], min_keep, pr40)
            pred_boxes[b, i] = (top, left, *pred_size)
        regions = [] if allow_overlap else [~m for m in pred[b]]
        for i in range(nenc):
            top, left, enc[b, i], respected[b, i] = _ijepa_box(grid, enc_size, regions, min_keep, pr40)
            enc_boxes[b, i] = (top, left, *enc_size)
    return IJEPAMasks(pred_boxes, enc_boxes, pred, enc, respected)
