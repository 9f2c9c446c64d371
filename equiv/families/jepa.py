"""JEPA masks: V-JEPA's multi-block 3D sampler and I-JEPA's 2D one; structure and coverage claims.

The structure claims are exact: every block in the grid, the target the union of the blocks and
the context its complement (never empty), one block size per call within the sizes the scale and
aspect ranges allow (each side's range from the ranges' ends: round and sqrt are monotone), the
same seed giving the same masks.

The coverage claims are statistical, with derived binomial bounds. Over ``DRAWS`` calls from
independent seeds, the number of draws c_p in which grid position p is masked is Binomial(DRAWS,
pi_p). Given a block size s (one per call, of probability P(s): ``multiblock3d_sizes``), the n
starts are independent and uniform, so p escapes every block with probability (1 - a_p(s))^n,
a_p(s) the product over the axes of the share of starts whose block covers p's coordinate.
V-JEPA redraws the starts while the context is empty (the event E, within {p covered} for every
p), so

    pi_p = sum_s P(s) (P(p covered | s) - P(E | s)) / (1 - P(E | s)),

with P(E | s) = 0 where the n blocks hold fewer patches than the grid, computed exactly by
enumerating the starts where there are few, and otherwise bounded: a block shorter than an axis
covers at most one of its two ends, so E needs each of the 2^m corners (m axes longer than the
block) covered by its own block: P(E | s) <= n! / (n - 2^m)! / Q^(2^m), Q the starts per block
along those axes; pi_p then lies between the value at that bound and at 0. The count must lie in
[F^-1(delta'), G^-1(delta')] of Binomial(DRAWS, pi_lo) and Binomial(DRAWS, pi_hi), delta' =
``DELTA`` / (2 cells + 2) (Bonferroni over cells, both tails and the fraction): a correct
sampler fails an example with probability below ``DELTA``. The mean masked fraction lies within
[mean pi_lo, mean pi_hi] widened by Hoeffding's (f_max - f_min) sqrt(log(2 / delta') / (2 DRAWS)).
A sampler that never masks the last row or column (facebookresearch/ijepa PR #40) has c_p = 0
there, below the lower bound at the papers' grids.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math

import numpy as np
from hypothesis import strategies as st
from scipy.stats import binom

from seqcheck.equiv.registry import Claim, register_claim
from seqcheck.properties.jepa import SEEDS, ijepa_inputs, multiblock3d_inputs
from seqcheck.reference import jepa as ref

DRAWS = 1000
DELTA = 1e-9
ENUMERATION_LIMIT = 2 * 10**7  # start tuples x cells enumerated exactly


def _ones(shape) -> np.ndarray:
    return np.ones(shape)


def _float(*arrays) -> tuple:
    return tuple(np.asarray(a, dtype=np.float64) for a in arrays)


def _with_defaults(sampler, args: dict) -> dict:
    """The arguments with the reference sampler's defaults filled in."""
    bound = inspect.signature(sampler).bind(**args)
    bound.apply_defaults()
    return dict(bound.arguments)


# ----------------------------------------------------------------------------- size rules

def _side_range(cells, scale, aspect, longest, side: str) -> tuple:
    """(smallest, largest) side a block can have: h = round(sqrt(k a)), w = round(sqrt(k / a)) at
    the ranges' ends (k = int(cells s)), clamped to ``longest``."""
    k_lo, k_hi = int(cells * scale[0]), int(cells * scale[1])
    if side == "h":
        ends = (math.sqrt(k_lo * aspect[0]), math.sqrt(k_hi * aspect[1]))
    else:
        ends = (math.sqrt(k_lo / aspect[1]), math.sqrt(k_hi / aspect[0]))
    return min(round(ends[0]), longest), min(round(ends[1]), longest)


def _within(value, bounds) -> np.ndarray:
    return (value >= bounds[0]) & (value <= bounds[1])


def _size_rules_3d(sizes, args) -> np.ndarray:
    a = _with_defaults(ref.multiblock3d, args)
    T, H, W = a["grid"]
    frames = (max(1, int(T * a["temporal_scale"][0])), max(1, int(T * a["temporal_scale"][1])))
    return (_within(sizes[..., 0], frames)
            & _within(sizes[..., 1], _side_range(H * W, a["spatial_scale"], a["aspect_ratio"], H, "h"))
            & _within(sizes[..., 2], _side_range(H * W, a["spatial_scale"], a["aspect_ratio"], W, "w")))


def _size_rules_2d(sizes, grid, scale, aspect) -> np.ndarray:
    H, W = grid
    return (_within(sizes[..., 0], _side_range(H * W, scale, aspect, H - 1, "h"))
            & _within(sizes[..., 1], _side_range(H * W, scale, aspect, W - 1, "w")))


def _boxes_in_grid(starts, sizes, grid) -> np.ndarray:
    return ((starts >= 0) & (sizes >= 1) & (starts + sizes <= np.asarray(grid))).all(axis=-1)


def _rectangles(starts, sizes, grid) -> np.ndarray:
    """(..., *grid) bool: the box of each (start, size) (..., d), clipped to the grid."""
    index = np.indices(grid)
    expand = (Ellipsis,) + (None,) * len(grid)
    return np.logical_and.reduce([(index[i] >= starts[..., i][expand]) & (index[i] < (starts + sizes)[..., i][expand])
                                  for i in range(len(grid))])


# ----------------------------------------------------------------------------- V-JEPA structure

def _multiblock3d_structure(impl, args: dict) -> tuple:
    """Per block: in the grid, of the call's one size, within the size rules; per sample: the
    target is the union of the boxes, the context its complement and not empty; the same seed
    gives the same boxes and target."""
    first, again = impl(**args), impl(**args)
    grid = tuple(args["grid"])
    boxes = np.asarray(first.boxes)
    starts, sizes = boxes[..., :3], boxes[..., 3:]
    target, context = np.asarray(first.target), np.asarray(first.context)
    union = _rectangles(starts, sizes, grid).any(axis=1)
    per_block = boxes.shape[:2]
    lhs = _float(_boxes_in_grid(starts, sizes, grid), (sizes == sizes[0, 0]).all(axis=-1),
                 _size_rules_3d(sizes, args), target, context, context.any(axis=(1, 2, 3)), again.boxes, again.target)
    rhs = _float(_ones(per_block), _ones(per_block), _ones(per_block), union, ~union, _ones(len(boxes)), boxes, target)
    return lhs, rhs


STRUCTURE_3D = ("in_grid", "one_size", "size_rules", "target", "context", "context_nonempty", "same_seed_boxes",
                "same_seed_target")

register_claim(Claim(
    key="jepa.multiblock3d.structure",
    statement="V-JEPA's multi-block 3D mask: every block inside the grid, one block size per call within what the "
              "spatial scale, temporal scale and aspect ranges allow, the target the union of the blocks, the "
              "context its complement and never empty, the same seed the same masks",
    subject="jepa.multiblock3d",
    default_impl=ref.multiblock3d,
    relation=_multiblock3d_structure,
    inputs=multiblock3d_inputs,
    bound=None,
    rule="exact",
    exactness="exact",
    outputs=STRUCTURE_3D,
    time_axis=0,
))


# ----------------------------------------------------------------------------- coverage bounds

def _axis_share(n: int, size: int) -> np.ndarray:
    """Per coordinate of an axis of n: the share of the n - size + 1 starts whose block covers it."""
    i = np.arange(n)
    return (np.minimum(i, n - size) - np.maximum(0, i - size + 1) + 1) / (n - size + 1)


def _block_share(grid, size) -> np.ndarray:
    share = np.ones(())
    for n, s in zip(grid, size):
        share = np.multiply.outer(share, _axis_share(n, s))
    return share


def _empty_context(grid, size, blocks):
    """(lo, hi) per position of P(p covered | size, context not empty): equal where no draw can
    cover the grid or the start tuples are few enough to enumerate, otherwise the values at the
    corner bound on P(empty | size) and at 0 (module docstring)."""
    covered = 1 - (1 - _block_share(grid, size)) ** blocks
    cells = math.prod(grid)
    if blocks * math.prod(size) < cells:
        return covered, covered
    starts = list(itertools.product(*(range(n - s + 1) for n, s in zip(grid, size))))
    if len(starts) ** blocks * cells <= ENUMERATION_LIMIT:
        each = np.stack([_rectangles(np.asarray(start), np.asarray(size), grid).ravel() for start in starts])
        union = each
        for _ in range(blocks - 1):
            union = (union[:, None, :] | each[None, :, :]).reshape(-1, cells)
        kept = union[~union.all(axis=1)]
        exact = kept.mean(axis=0).reshape(grid)
        return exact, exact
    free = [(n, s) for n, s in zip(grid, size) if s < n]
    corners = 2 ** len(free)
    places = math.prod(n - s + 1 for n, s in free)
    empty = 0.0 if blocks < corners else math.perm(blocks, corners) / float(places) ** corners
    if empty >= 1:
        return np.zeros(grid), covered
    return np.maximum((covered - empty) / (1 - empty), 0.0), covered


@functools.lru_cache(maxsize=64)
def _multiblock3d_coverage(grid, spatial, temporal, aspect, blocks):
    """(pi_lo, pi_hi) per position and (f_min, f_max) of one draw's masked fraction."""
    sizes = ref.multiblock3d_sizes(grid, spatial_scale=spatial, temporal_scale=temporal, aspect_ratio=aspect)
    lo, hi = np.zeros(grid), np.zeros(grid)
    for size, p in sizes.items():
        size_lo, size_hi = _empty_context(grid, size, blocks)
        lo, hi = lo + p * size_lo, hi + p * size_hi
    cells = math.prod(grid)
    fraction = (min(math.prod(s) for s in sizes) / cells,
                min(max(blocks * math.prod(s) for s in sizes), cells - 1) / cells)
    return lo, hi, fraction


def _count_bounds(lo, hi, fraction):
    """(count midpoint, count half-width, fraction midpoint, fraction half-width) (module docstring)."""
    tail = DELTA / (2 * lo.size + 2)
    low, high = binom.ppf(tail, DRAWS, np.clip(lo, 0, 1)), binom.isf(tail, DRAWS, np.clip(hi, 0, 1))
    spread = (fraction[1] - fraction[0]) * math.sqrt(math.log(2 / tail) / (2 * DRAWS))
    f_low, f_high = lo.mean() - spread, hi.mean() + spread
    return (low + high) / 2, (high - low) / 2, (f_low + f_high) / 2, (f_high - f_low) / 2


def _counts(impl, args: dict, masked, model) -> tuple:
    """How often each position is masked (``masked(result)``, a bool grid) over DRAWS calls from
    seeds derived from args["seed"], and the mean masked fraction; against the middle of their
    allowed ranges (``model(args)``: pi_lo, pi_hi, fraction range)."""
    counts, fractions = np.zeros(args["grid"]), []
    for seed in np.random.default_rng(args["seed"]).choice(2**32, DRAWS, replace=False):  # distinct: independent
        mask = np.asarray(masked(impl(**{**args, "batch": 1, "seed": int(seed)})))
        counts += mask
        fractions.append(mask.mean())
    midpoint, _, f_midpoint, _ = _count_bounds(*model(args))
    return _float(counts, np.mean(fractions)), _float(midpoint, f_midpoint)


COVERAGE_RULE = (f"binomial: over {DRAWS} draws each position's count within Binomial({DRAWS}, pi) quantiles at "
                 f"{DELTA:g} / (2 cells + 2), pi derived per block size (the empty-context redraw exact or bounded); "
                 "the mean masked fraction within Hoeffding's bound")


def _register_coverage(key: str, statement: str, sampler, inputs, masked, model) -> None:
    register_claim(Claim(
        key=key,
        statement=statement,
        subject=f"jepa.{sampler.__name__}",
        default_impl=sampler,
        relation=lambda impl, args: _counts(impl, args, masked, model),
        inputs=inputs,
        bound=lambda args, rhs: tuple(np.asarray(h) for h in _count_bounds(*model(args))[1::2]),
        rule=COVERAGE_RULE,
        exactness=f"statistical (false alarm < {DELTA:g})",
        outputs=("coverage", "masked_fraction"),
        time_axis=0,
    ))


def _vjepa_model(args: dict):
    a = _with_defaults(ref.multiblock3d, args)
    shapes = (tuple(a[name]) for name in ("grid", "spatial_scale", "temporal_scale", "aspect_ratio"))
    return _multiblock3d_coverage(*shapes, a["blocks"])


@st.composite
def _vjepa_coverage_inputs(draw):
    """V-JEPA's two masks on its grids at 224 and 384 pixels, and on two small grids."""
    grid = draw(st.sampled_from([ref.VJEPA_GRID, (8, 24, 24), (2, 10, 12), (1, 9, 9)]))
    return {"grid": grid, **draw(st.sampled_from(ref.VJEPA_MASKS)), "seed": draw(SEEDS)}


_register_coverage(
    "jepa.multiblock3d.coverage",
    f"V-JEPA's multi-block masks cover every grid position as often as their definition says: over {DRAWS} seeded "
    f"draws each position's count and the mean masked fraction lie within derived binomial bounds (a correct sampler "
    f"fails with probability below {DELTA:g}); no row or column is never masked",
    ref.multiblock3d, _vjepa_coverage_inputs, lambda masks: masks.target[0], _vjepa_model)


# ----------------------------------------------------------------------------- I-JEPA

def _ijepa_structure(impl, args: dict) -> tuple:
    """Per box: in the grid (sides at most H - 1, W - 1), of the call's one size per kind, within
    the size rules; the prediction masks are their boxes; each context mask is its box less the
    prediction boxes it respects, the first ``respected`` of them: none with allow_overlap, all
    where no draw can fail (the context box keeps more than min_keep patches even with every
    prediction box inside it), else any number; every mask more than min_keep patches; the same
    seed gives the same masks."""
    first, again = impl(**args), impl(**args)
    a = _with_defaults(ref.ijepa_multiblock, args)
    grid = tuple(a["grid"])
    pred_boxes, enc_boxes = np.asarray(first.pred_boxes), np.asarray(first.enc_boxes)
    pred, enc, respected = np.asarray(first.pred), np.asarray(first.enc), np.asarray(first.respected)
    boxes = np.concatenate([pred_boxes, enc_boxes], axis=1)
    starts, sizes = boxes[..., :2], boxes[..., 2:]
    in_grid = _boxes_in_grid(starts, sizes, grid) & (sizes[..., 0] < grid[0]) & (sizes[..., 1] < grid[1])
    one_size = np.concatenate([(pred_boxes[..., 2:] == pred_boxes[0, 0, 2:]).all(axis=-1),
                               (enc_boxes[..., 2:] == enc_boxes[0, 0, 2:]).all(axis=-1)], axis=1)
    rules = np.concatenate([_size_rules_2d(pred_boxes[..., 2:], grid, a["pred_scale"], a["aspect_ratio"]),
                            _size_rules_2d(enc_boxes[..., 2:], grid, a["enc_scale"], (1.0, 1.0))], axis=1)
    pred_rects = _rectangles(pred_boxes[..., :2], pred_boxes[..., 2:], grid)
    n_pred = pred.shape[1]
    first_preds = np.arange(n_pred)[None, None, :] < respected[..., None]  # (B, nenc, npred)
    excluded = (pred_rects[:, None] & first_preds[..., None, None]).any(axis=2)
    context = _rectangles(enc_boxes[..., :2], enc_boxes[..., 2:], grid) & ~excluded
    enc_area, pred_area = enc_boxes[..., 2] * enc_boxes[..., 3], pred_boxes[:, :1, 2] * pred_boxes[:, :1, 3]
    never_fails = enc_area - n_pred * pred_area > a["min_keep"]  # (B, nenc)
    fewest = 0 if a["allow_overlap"] else np.where(never_fails, n_pred, 0)
    most = 0 if a["allow_overlap"] else n_pred
    counts = np.concatenate([pred.sum(axis=(2, 3)), enc.sum(axis=(2, 3))], axis=1)
    per_box = boxes.shape[:2]
    lhs = _float(in_grid, one_size, rules, pred, enc, respected, counts > a["min_keep"],
                 again.pred_boxes, again.enc_boxes, again.enc)
    rhs = _float(_ones(per_box), _ones(per_box), _ones(per_box), pred_rects, context,
                 np.clip(respected, fewest, most), _ones(per_box), pred_boxes, enc_boxes, enc)
    return lhs, rhs


register_claim(Claim(
    key="jepa.ijepa.structure",
    statement="I-JEPA's multi-block masks: every block inside the grid with sides below the grid's, one prediction "
              "size and one context size per call within what the scale and aspect ranges allow, the prediction "
              "masks their boxes, each context mask its box less the prediction boxes it respects (all of them where "
              "no draw can fail, none with allow_overlap), every mask more than min_keep patches, the same seed the "
              "same masks",
    subject="jepa.ijepa_multiblock",
    default_impl=ref.ijepa_multiblock,
    relation=_ijepa_structure,
    inputs=ijepa_inputs,
    bound=None,
    rule="exact",
    exactness="exact",
    outputs=("in_grid", "one_size", "size_rules", "pred", "enc", "respected", "min_keep", "same_seed_pred_boxes",
             "same_seed_enc_boxes", "same_seed_enc"),
    time_axis=0,
))


@functools.lru_cache(maxsize=16)
def _ijepa_coverage(grid, scale, aspect, npred):
    """(pi, pi, (f_min, f_max)) of the union of the prediction blocks: no redraw conditions it."""
    sizes = ref.ijepa_sizes(grid, scale=scale, aspect_ratio=aspect)
    pi = sum(p * (1 - (1 - _block_share(grid, size)) ** npred) for size, p in sizes.items())
    cells = math.prod(grid)
    fraction = (min(math.prod(s) for s in sizes) / cells, min(max(npred * math.prod(s) for s in sizes), cells) / cells)
    return pi, pi, fraction


def _ijepa_model(args: dict):
    a = _with_defaults(ref.ijepa_multiblock, args)
    return _ijepa_coverage(tuple(a["grid"]), tuple(a["pred_scale"]), tuple(a["aspect_ratio"]), a["npred"])


@st.composite
def _ijepa_coverage_inputs(draw):
    """I-JEPA's config on its grids: 224 pixels in patches of 16 and of 14, 448 in patches of 16."""
    return {"grid": draw(st.sampled_from([ref.IJEPA_GRID, (16, 16), (28, 28)])), "seed": draw(SEEDS)}


_register_coverage(
    "jepa.ijepa.coverage",
    f"I-JEPA's prediction blocks cover every grid position as often as their definition says: over {DRAWS} seeded "
    f"draws each position's count in the union of the blocks and the mean masked fraction lie within derived "
    f"binomial bounds; the last row and column are masked too (facebookresearch/ijepa PR #40)",
    ref.ijepa_multiblock, _ijepa_coverage_inputs, lambda masks: masks.pred[0].any(axis=0), _ijepa_model)
