"""JEPA mask references: the block sizes of the papers' configurations by hand, the samplers'
refusals of what would hang the originals, the collators' truncation, the coverage bounds of
equiv/families/jepa.py against the sampler on small grids (the redraw's conditioning exact, the
corner bound holding), and the originals' samplers ported to torch (tests/peers/jepa_masks.py):
their sizes follow the exact distributions, V-JEPA's passes the claims, I-JEPA's fails coverage
until PR #40."""

import numpy as np
import pytest

from seqcheck.equiv.families import jepa as family
from seqcheck.reference import jepa as ref


def test_short_range_sizes_by_hand():
    """V-JEPA's short-range mask on 14 x 14: k = int(196 * 0.15) = 29 patches; as a runs over
    [0.75, 1.5], h = round(sqrt(29 a)) steps at a = 5.5^2 / 29 and 6.5^2 / 29, w = round(sqrt(29 / a))
    at a = 29 / 5.5^2 and 29 / 4.5^2; every block spans the 8 frames."""
    cuts = [0.75, 29 / 5.5**2, 5.5**2 / 29, 29 / 4.5**2, 6.5**2 / 29, 1.5]
    shapes = [(5, 6), (5, 5), (6, 5), (6, 4), (7, 4)]
    want = {(8, *shape): (hi - lo) / 0.75 for shape, lo, hi in zip(shapes, cuts[:-1], cuts[1:])}
    got = ref.multiblock3d_sizes(ref.VJEPA_GRID, spatial_scale=(0.15, 0.15), aspect_ratio=(0.75, 1.5))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[s] for s in want], list(want.values()), rtol=1e-12)


def test_long_range_blocks_span_the_frames_and_most_rows():
    sizes = ref.multiblock3d_sizes(ref.VJEPA_GRID, spatial_scale=(0.7, 0.7), aspect_ratio=(0.75, 1.5))
    assert sum(sizes.values()) == pytest.approx(1.0, abs=1e-12)
    assert {t for t, _, _ in sizes} == {8}
    assert min(h for _, h, _ in sizes) == 10 and max(h for _, h, _ in sizes) == 14  # round(sqrt(137 * 1.5)) clamped


@pytest.mark.parametrize("grid, side", [((14, 14), 13), ((16, 16), 15)])
def test_ijepa_context_block_is_one_short_of_the_grid(grid, side):
    """enc_scale (0.85, 1.0) with aspect 1: round(sqrt(k)) reaches the grid's side and ijepa's
    ``while h >= H: h -= 1`` takes it back by one."""
    assert ref.ijepa_sizes(grid, scale=(0.85, 1.0), aspect_ratio=(1.0, 1.0)) == {(side, side): 1.0}


def test_ijepa_scale_and_aspect_move_together():
    """One uniform draws both: the smallest scale comes with the smallest aspect ratio, so a tall
    block is always a large one (k = 29 at u = 0 gives 5 x 6; k = 39 at u = 1 gives 8 x 5)."""
    sizes = ref.ijepa_sizes((14, 14), scale=(0.15, 0.2), aspect_ratio=(0.75, 1.5))
    assert (5, 6) in sizes and (8, 5) in sizes and (4, 7) not in sizes


def test_the_same_seed_gives_the_same_masks_and_a_generator_is_taken():
    first = ref.multiblock3d(ref.VJEPA_GRID, batch=2, seed=5, **ref.VJEPA_MASKS[0])
    again = ref.multiblock3d(ref.VJEPA_GRID, batch=2, seed=np.random.default_rng(5), **ref.VJEPA_MASKS[0])
    other = ref.multiblock3d(ref.VJEPA_GRID, batch=2, seed=6, **ref.VJEPA_MASKS[0])
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first.boxes, other.boxes)


def test_an_empty_batch_gives_empty_masks():
    masks = ref.ijepa_multiblock(ref.IJEPA_GRID, batch=0, seed=0)
    assert masks.pred.shape == (0, 4, 14, 14) and masks.enc_boxes.shape == (0, 1, 4)


@pytest.mark.parametrize("call, message", [
    (lambda: ref.multiblock3d((1, 2, 2), blocks=1, spatial_scale=(1.0, 1.0), aspect_ratio=(1.0, 1.0), seed=0),
     "a block filling the grid"),
    (lambda: ref.multiblock3d((1, 3, 3), blocks=1, spatial_scale=(0.05, 0.05), seed=0), "no patches"),
    (lambda: ref.ijepa_multiblock((6, 6), seed=0, min_keep=10), "never accepted"),
    (lambda: ref.multiblock3d((2, 4, 4), blocks=1, spatial_scale=(0.5, 0.2), seed=0), "spatial_scale must be"),
    (lambda: ref.multiblock3d((2, 4), blocks=1, spatial_scale=(0.5, 0.5), seed=0), "grid must be a tuple of 3"),
])
def test_what_would_hang_the_originals_is_refused(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_collate_keeps_the_lowest_indices_of_the_smallest_count():
    masks = np.zeros((2, 2, 3), dtype=bool)
    masks[0, 0, [0, 2]] = masks[0, 1, 1] = True  # flat positions 0, 2, 4
    masks[1, 1, :] = True  # 3, 4, 5
    masks[1, 0, 1] = True  # 1
    np.testing.assert_array_equal(ref.collate_indices(masks), [[0, 2, 4], [1, 3, 4]])
    np.testing.assert_array_equal(ref.collate_indices(masks, max_keep=2), [[0, 2], [1, 3]])
    masks[1, 1, 2] = False
    np.testing.assert_array_equal(ref.collate_indices(masks), [[0, 2, 4], [1, 3, 4]])
    masks[1, 1, 1] = False
    np.testing.assert_array_equal(ref.collate_indices(masks), [[0, 2], [1, 3]])


@pytest.mark.parametrize("grid, blocks, scale", [((1, 2, 3), 2, (0.6, 0.6)), ((2, 2, 3), 2, (0.5, 0.5)),
                                                 ((1, 3, 3), 4, (0.45, 0.45)), ((1, 3, 4), 3, (0.3, 0.5))])
def test_the_coverage_model_matches_the_sampler(grid, blocks, scale):
    """Where the context is often empty (the redraw matters), the derived per-position coverage
    (exact: the redraw's conditioning enumerated) against 10000 draws of the sampler, within 5
    standard deviations; and the corner bound, where it applies, holds around it."""
    args = {"grid": grid, "blocks": blocks, "spatial_scale": scale, "aspect_ratio": (0.75, 1.5)}
    lo, hi, _ = family._multiblock3d_coverage(grid, scale, (1.0, 1.0), (0.75, 1.5), blocks)
    np.testing.assert_array_equal(lo, hi)
    unconditioned = sum(p * (1 - (1 - family._block_share(grid, size)) ** blocks)
                        for size, p in ref.multiblock3d_sizes(grid, spatial_scale=scale).items())
    assert (lo < unconditioned - 0.01).any(), "the case should exercise the redraw"
    draws = 10000
    counts = sum(ref.multiblock3d(**args, seed=seed).target[0] for seed in range(draws))
    sigma = np.sqrt(lo * (1 - lo) / draws)
    assert np.all(np.abs(counts / draws - lo) <= 5 * sigma + 1e-12)
    for size, p in ref.multiblock3d_sizes(grid, spatial_scale=scale, aspect_ratio=(0.75, 1.5)).items():
        exact, _ = family._empty_context(grid, size, blocks)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(family, "ENUMERATION_LIMIT", 0)
            bound_lo, bound_hi = family._empty_context(grid, size, blocks)
        assert np.all(bound_lo <= exact + 1e-12) and np.all(exact <= bound_hi + 1e-12)


@pytest.mark.parametrize("claim, mutant", [("jepa.multiblock3d.structure", "multiblock3d_aspect_inverted"),
                                           ("jepa.multiblock3d.structure", "multiblock3d_without_redraw"),
                                           ("jepa.ijepa.structure", "ijepa_context_ignores_the_targets")])
def test_the_structure_claims_reject_more_wrong_samplers(claim, mutant):
    """h and w swapped in the size rule; the empty-context redraw left out (jepa's while loop); an
    I-JEPA context that does not avoid the prediction blocks (and says it respects none)."""
    from mutants import jepa as mutants
    from seqcheck import equiv

    result = equiv.run_claim(claim, impl=getattr(mutants, mutant), seed=0, max_examples=200)
    assert not result.passed and result.counterexample is not None


# ----------------------------------------------------------------------------- against the originals


def _frequencies(draw, n=20000):
    from collections import Counter

    counts = Counter(draw() for _ in range(n))
    return {size: c / n for size, c in counts.items()}


def _close(frequencies, probabilities, n=20000):
    unlisted = set(frequencies) - set(probabilities)
    assert not unlisted, f"sizes the distribution does not list: {unlisted}"
    for size, p in probabilities.items():
        assert abs(frequencies.get(size, 0.0) - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12, size


@pytest.mark.parametrize("config", [*ref.VJEPA_MASKS, dict(spatial_scale=(0.1, 0.6), temporal_scale=(0.3, 1.0),
                                                           aspect_ratio=(0.3, 3.0))])
def test_the_exact_size_distribution_matches_the_original_v_jepa_draws(config):
    """Sizes drawn as jepa's ``_sample_block_size`` draws them (torch.rand, float32 uniforms)."""
    torch = pytest.importorskip("torch")
    from peers.jepa_masks import vjepa_block_size

    scales = {name: config[name] for name in ("spatial_scale", "temporal_scale", "aspect_ratio")}
    generator = torch.Generator().manual_seed(0)
    frequencies = _frequencies(lambda: vjepa_block_size(generator, ref.VJEPA_GRID, scales["spatial_scale"],
                                                         scales["temporal_scale"], scales["aspect_ratio"]))
    _close(frequencies, ref.multiblock3d_sizes(ref.VJEPA_GRID, **scales))


@pytest.mark.parametrize("grid, scale, aspect", [((14, 14), (0.15, 0.2), (0.75, 1.5)),
                                                 ((28, 28), (0.15, 0.2), (0.75, 1.5)),
                                                 ((14, 14), (0.85, 1.0), (1.0, 1.0)),
                                                 ((11, 13), (0.1, 0.9), (0.3, 3.0))])
def test_the_exact_size_distribution_matches_the_original_i_jepa_draws(grid, scale, aspect):
    torch = pytest.importorskip("torch")
    from peers.jepa_masks import ijepa_block_size

    generator = torch.Generator().manual_seed(0)
    _close(_frequencies(lambda: ijepa_block_size(generator, grid, scale, aspect)),
           ref.ijepa_sizes(grid, scale=scale, aspect_ratio=aspect))


def test_v_jepa_as_the_original_draws_passes_the_claims():
    pytest.importorskip("torch")
    from peers.jepa_masks import vjepa_torch
    from seqcheck import equiv

    for key in ("jepa.multiblock3d.structure", "jepa.multiblock3d.coverage"):
        result = equiv.run_claim(key, impl=vjepa_torch, seed=0, max_examples=4)
        assert result.passed, str(result)


def test_i_jepa_as_the_original_draws_fails_coverage_until_pr40():
    """The original's exclusive randint bound: the structure holds, the coverage claim finds the
    last row and column never masked; with PR #40's + 1 it passes."""
    pytest.importorskip("torch")
    from functools import partial

    from peers.jepa_masks import ijepa_torch
    from seqcheck import equiv

    assert equiv.run_claim("jepa.ijepa.structure", impl=ijepa_torch, seed=0, max_examples=30).passed
    original = equiv.run_claim("jepa.ijepa.coverage", impl=ijepa_torch, seed=0, max_examples=4)
    assert not original.passed and "'coverage'" in original.counterexample.message
    fixed = partial(ijepa_torch, pr40=True)
    fixed.__name__ = "ijepa_torch_pr40"
    assert equiv.run_claim("jepa.ijepa.coverage", impl=fixed, seed=0, max_examples=4).passed
