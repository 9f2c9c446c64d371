"""Strategies for the JEPA mask samplers' arguments (reference.jepa).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). About half the draws
are configurations the papers train with (V-JEPA's two masks on 8 x 14 x 14, I-JEPA's on 14
x 14); the rest are small grids with drawn scale and aspect ranges, kept only where the sampler
accepts them (no block of zero patches, none filling the grid, none of at most min_keep patches).
"""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from seqcheck.properties.arrays import fixed_or
from seqcheck.reference.jepa import IJEPA_GRID, VJEPA_GRID, VJEPA_MASKS, ijepa_sizes, multiblock3d_sizes

SEEDS = st.integers(0, 2**32 - 1)


def ranges(low: float, high: float):
    """(lo, hi) with low <= lo <= hi <= high, in steps of 0.05, often a single value."""
    steps = round((high - low) / 0.05)
    return st.tuples(st.integers(0, steps), st.integers(0, steps)).map(
        lambda ij: tuple(round(low + 0.05 * n, 2) for n in sorted(ij)))


@st.composite
def multiblock3d_inputs(draw, *, paper=st.booleans(), frames=st.integers(1, 4), height=st.integers(1, 12),
                        width=st.integers(1, 12), blocks=st.integers(1, 8), spatial_scale=ranges(0.05, 0.9),
                        temporal_scale=ranges(0.3, 1.0), aspect_ratio=ranges(0.3, 3.0), batch=st.integers(1, 3),
                        seed=SEEDS):
    """Keyword arguments of ``multiblock3d``.

    Options:
        paper: V-JEPA's grid (8, 14, 14) with one of its two masks (``VJEPA_MASKS``); otherwise:
        frames, height, width: the grid (T, H, W).
        blocks: boxes per sample.
        spatial_scale, temporal_scale, aspect_ratio: the (lo, hi) ranges.
        batch: samples per call.
        seed: the generator's seed.
    """
    common = {"batch": draw(fixed_or(batch)), "seed": draw(fixed_or(seed))}
    if draw(fixed_or(paper)):
        return {"grid": VJEPA_GRID, **draw(st.sampled_from(VJEPA_MASKS)), **common}
    grid = (draw(fixed_or(frames)), draw(fixed_or(height)), draw(fixed_or(width)))
    scales = {"spatial_scale": draw(fixed_or(spatial_scale)), "temporal_scale": draw(fixed_or(temporal_scale)),
              "aspect_ratio": draw(fixed_or(aspect_ratio))}
    sizes = multiblock3d_sizes(grid, **scales)
    assume(all(min(size) > 0 and size != grid for size in sizes))
    return {"grid": grid, "blocks": draw(fixed_or(blocks)), **scales, **common}


@st.composite
def ijepa_inputs(draw, *, paper=st.booleans(), height=st.integers(3, 16), width=st.integers(3, 16),
                 pred_scale=ranges(0.05, 0.5), enc_scale=ranges(0.4, 1.0), aspect_ratio=ranges(0.3, 3.0),
                 npred=st.integers(1, 4), nenc=st.integers(1, 2), min_keep=st.integers(0, 10),
                 allow_overlap=st.booleans(), batch=st.integers(1, 3), seed=SEEDS):
    """Keyword arguments of ``ijepa_multiblock``.

    Options:
        paper: I-JEPA's grid (14, 14) and config (the function's defaults); otherwise:
        height, width: the grid (H, W).
        pred_scale, enc_scale, aspect_ratio: the (lo, hi) ranges.
        npred, nenc: prediction and context blocks per sample.
        min_keep: a block is kept when more than this many patches remain.
        allow_overlap: context blocks may overlap the prediction blocks.
        batch: samples per call.
        seed: the generator's seed.
    """
    common = {"batch": draw(fixed_or(batch)), "seed": draw(fixed_or(seed))}
    if draw(fixed_or(paper)):
        return {"grid": IJEPA_GRID, **common}
    grid = (draw(fixed_or(height)), draw(fixed_or(width)))
    args = {"grid": grid, "pred_scale": draw(fixed_or(pred_scale)), "enc_scale": draw(fixed_or(enc_scale)),
            "aspect_ratio": draw(fixed_or(aspect_ratio)), "npred": draw(fixed_or(npred)),
            "nenc": draw(fixed_or(nenc)), "min_keep": draw(fixed_or(min_keep)),
            "allow_overlap": draw(fixed_or(allow_overlap)), **common}
    for scale, ratio in ((args["pred_scale"], args["aspect_ratio"]), (args["enc_scale"], (1.0, 1.0))):
        assume(all(h * w > args["min_keep"] for h, w in ijepa_sizes(grid, scale=scale, aspect_ratio=ratio)))
    return args
