"""Deliberately wrong JEPA mask samplers: each must be rejected by a claim. Each is the reference
module (``seqcheck.reference.jepa.masks``) with one edit to its source: a V-JEPA block that may
start one past its last fitting position (numpy's slicing then clips it silently), V-JEPA's
starts with ijepa's exclusive bound (the last row and column never masked), an I-JEPA context
restricted to the prediction blocks instead of their complements or not restricted at all, and
I-JEPA as its code stood
before facebookresearch/ijepa PR #40 (``torch.randint(0, H - h)``: the last row and column never
in a prediction block)."""

import functools

from mutants import mutate

JEPA = "seqcheck.reference.jepa.masks"
STARTS = "            starts = np.stack([rng.integers(0, d - s + 1, n) for d, s in zip(grid, size)], axis=1)\n"


def _sampler(function: str, name: str, *edits):
    @functools.cache
    def mutated():
        return mutate(JEPA, name, list(edits))[function]

    def candidate(*args, **kwargs):
        return mutated()(*args, **kwargs)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


multiblock3d_start_past_the_edge = _sampler(
    "multiblock3d", "multiblock3d_start_past_the_edge",
    (STARTS, STARTS.replace("d - s + 1", "d - s + 2")))

multiblock3d_last_row_never_masked = _sampler(
    "multiblock3d", "multiblock3d_last_row_never_masked",
    (STARTS, STARTS.replace("d - s + 1", "max(d - s, 1)")))

multiblock3d_aspect_inverted = _sampler(
    "multiblock3d", "multiblock3d_aspect_inverted",
    ("    return min(round(math.sqrt(k * a)), H), min(round(math.sqrt(k / a)), W)\n",
     "    return min(round(math.sqrt(k / a)), H), min(round(math.sqrt(k * a)), W)\n"))

multiblock3d_without_redraw = _sampler(
    "multiblock3d", "multiblock3d_without_redraw",
    ("            if not covered.all():\n                break\n", "            break\n"))

ijepa_context_inside_the_targets = _sampler(
    "ijepa_multiblock", "ijepa_context_inside_the_targets",
    ("        regions = [] if overlap else [~m for m in pred[b]]\n",
     "        regions = [] if overlap else [m for m in pred[b]]\n"))

ijepa_before_pr40 = _sampler(
    "ijepa_multiblock", "ijepa_before_pr40",
    ("        top, left = int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1))\n",
     "        top, left = int(rng.integers(0, H - h)), int(rng.integers(0, W - w))\n"))

ijepa_context_ignores_the_targets = _sampler(
    "ijepa_multiblock", "ijepa_context_ignores_the_targets",
    ("        regions = [] if overlap else [~m for m in pred[b]]\n", "        regions = []\n"))

MUTANTS = {
    "jepa.multiblock3d.structure": multiblock3d_start_past_the_edge,
    "jepa.multiblock3d.coverage": multiblock3d_last_row_never_masked,
    "jepa.ijepa.structure": ijepa_context_inside_the_targets,
    "jepa.ijepa.coverage": ijepa_before_pr40,
}
"""The mutant each claim of the family must reject, by claim key."""
