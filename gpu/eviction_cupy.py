"""Batched KV-cache selection (TOVA, H2O, window) on an array module: one call selects for every
cache of a batch (every batch element and group), with the project's tie rule.

The tie rule (``reference/eviction/policies.py``, docs/eviction.md): keep the top k under one
total order, higher score first and at equal score the lower index first; so one eviction removes
the lowest score and, among equal lowest scores, the highest index. Here that order is a stable
argsort of ``-score`` along the candidates (which are in ascending index order): CuPy's argsort
is always stable (thrust's stable sort), NumPy's with ``kind="stable"``. No raw CUDA kernel is
needed: a sort, a gather and a scatter per step, all batched.

Scores stay in the dtype they arrive in (float64 from the reference simulator, float32 from a
float32 model); candidates are int (B, G, n) in ascending index order as the simulator passes
them. ``GpuTOVA``, ``GpuH2O`` and ``GpuWindow`` are the reference policies with ``select``
replaced by these functions, so ``simulate_decoding`` runs every selection through them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seqcheck.gpu.xp import array_module, to_device, to_host
from seqcheck.reference.eviction import H2O, TOVA, Window, simulate_decoding


def rank(scores, xp):
    """Candidate positions from first kept to first evicted: score descending, index ascending."""
    return _stable_argsort(-scores, xp)


def keep_top(scores, k, xp):
    """Keep mask (..., n) of the top k under the tie rule and the margin (...): the last kept
    score minus the first evicted one (inf when nothing is evicted)."""
    n = scores.shape[-1]
    order = rank(scores, xp)
    keep = xp.zeros(scores.shape, dtype=bool)
    xp.put_along_axis(keep, order[..., :k], True, axis=-1)
    if k >= n:
        return keep, xp.full(scores.shape[:-1], xp.inf, dtype=scores.dtype)
    ranked = xp.take_along_axis(scores, order[..., k - 1:k + 1], axis=-1)
    return keep, ranked[..., 0] - ranked[..., 1]


def topk_lowest_index(scores, k, *, xp=None):
    """``reference.eviction.topk_lowest_index`` for a batch: int (..., k), ascending indices."""
    xp = array_module(xp)
    scores = to_device(scores, xp)
    return to_host(xp.sort(rank(scores, xp)[..., :k], axis=-1))


def argmin_highest_index(scores, *, xp=None):
    """``reference.eviction.argmin_highest_index`` for a batch: the index one eviction removes."""
    xp = array_module(xp)
    scores = to_device(scores, xp)
    return to_host(rank(scores, xp)[..., -1])


def tova_select(probs, positions, *, budget, xp=None):
    """TOVA's selection from a batch of caches stored in slot order (as on a GPU, where an evicted
    slot is refilled): ``probs`` (B, H, n) the last query's attention over the slots, ``positions``
    (B, n) their token indices. Returns keep (B, n) as float, in slot order: the top ``budget`` of
    the head mean, ties to the lowest token index (a stable argsort by position, then a stable
    argsort by -score over that order; the claim "eviction.tova.permutation")."""
    xp = array_module(xp)
    probs, positions = to_device(probs, xp), to_device(positions, xp)
    scores = probs.mean(axis=1)
    by_index = _stable_argsort(positions, xp)
    keep_sorted, _ = keep_top(xp.take_along_axis(scores, by_index, axis=-1), min(budget, scores.shape[-1]), xp)
    keep = xp.zeros(scores.shape, dtype=scores.dtype)
    xp.put_along_axis(keep, by_index, keep_sorted.astype(scores.dtype), axis=-1)
    return to_host(keep)


def _stable_argsort(a, xp):
    """argsort along the last axis, equal keys in their original order (CuPy's is always stable)."""
    return np.argsort(a, axis=-1, kind="stable") if xp is np else xp.argsort(a, axis=-1)


# ----------------------------------------------------------------------------- policy scores

def tova_scores(state, cand, xp):
    """TOVA: the last attention row averaged over every head, at the candidates. state (B, H, T)."""
    return xp.take_along_axis(state.mean(axis=1)[:, None], cand, axis=-1)


def h2o_scores(state, t, cand, budget, heavy, xp):
    """H2O: accumulated attention summed over each group's query heads; the budget - heavy newest
    scored +inf (always kept). state (B, H, T), cand (B, G, n)."""
    b, h = state.shape[:2]
    groups = cand.shape[1]
    summed = state.reshape(b, groups, h // groups, state.shape[-1]).sum(axis=2)
    accumulated = xp.take_along_axis(summed, cand, axis=-1)
    return xp.where(cand > t - (budget - heavy), xp.inf, accumulated)


def select(policy: str, state, t, cand, budget, *, heavy=0, xp=None):
    """One batched selection of ``policy`` ("tova", "h2o", "window") from candidates cand (B, G, n):
    returns NumPy keep (B, G, n) and margin (B, G), as ``Policy.select``."""
    xp = array_module(xp)
    cand = to_device(cand, xp)
    n = cand.shape[-1]
    if policy == "window":
        keep = cand > t - budget
        return to_host(keep), np.full(cand.shape[:-1], np.inf)
    if min(n, budget) == n:
        return np.ones(cand.shape, dtype=bool), np.full(cand.shape[:-1], np.inf)
    state = to_device(state, xp)
    if policy == "tova":
        scores = tova_scores(state, cand, xp)
    elif policy == "h2o":
        scores = h2o_scores(state, t, cand, budget, heavy, xp)
    else:
        raise ValueError(f"policy: expected 'tova', 'h2o' or 'window', got {policy!r}")
    keep, margin = keep_top(scores, budget, xp)
    return to_host(keep), to_host(margin).astype(np.float64)


# ----------------------------------------------------------------------------- policies

@dataclass(frozen=True)
class GpuTOVA(TOVA):
    """TOVA whose selection runs on the array module (``select``)."""

    name: ClassVar[str] = "tova"

    def select(self, state, t, cand, budget, prefill):
        return select("tova", state, t, cand, budget)


@dataclass(frozen=True)
class GpuH2O(H2O):
    """H2O whose selection runs on the array module (``select``)."""

    name: ClassVar[str] = "h2o"

    def select(self, state, t, cand, budget, prefill):
        return select("h2o", state, t, cand, budget, heavy=self.heavy)


@dataclass(frozen=True)
class GpuWindow(Window):
    """The sliding window, its selection on the array module (``select``)."""

    name: ClassVar[str] = "window"

    def select(self, state, t, cand, budget, prefill):
        return select("window", state, t, cand, budget)


GPU_POLICIES = {"tova": GpuTOVA, "h2o": GpuH2O, "window": GpuWindow}


def decode(q, k, v, *, policy, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
           return_rows=True, **options):
    """``simulate_decoding`` with ``policy`` a name ("tova", "h2o", "window") and its parameters,
    every selection batched on the array module; the float64 attention is the reference
    simulator's. The claims' ``decode`` signature (e.g. "eviction.tova.argmin")."""
    if policy not in GPU_POLICIES:
        raise ValueError(f"policy: expected one of {sorted(GPU_POLICIES)}, got {policy!r}")
    return simulate_decoding(q, k, v, policy=GPU_POLICIES[policy](**options), budget=budget,
                             prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                             position_offset=position_offset, scale=scale, return_rows=return_rows)


def _form_candidate(name: str):
    def candidate(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
                  **options):
        res = decode(q, k, v, policy=name, budget=budget, prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                     position_offset=position_offset, scale=scale, return_rows=False, **options)
        return res.outputs, res.kept.astype(np.float64)

    candidate.__name__ = candidate.__qualname__ = f"{name}_decode"
    candidate.__doc__ = f"The form \"eviction.{name}.decode\" with every selection batched on the array module."
    return candidate


tova_decode = _form_candidate("tova")
h2o_decode = _form_candidate("h2o")
window_decode = _form_candidate("window")
