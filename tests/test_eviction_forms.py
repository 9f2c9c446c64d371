"""The eviction forms beyond the claims: check() accepts every reference and a user's batched
decoding loop, rejects a wrong selection, treats near-ties (and only them) as ambiguous, and the
report's quality sweeps stay within their budgets."""

import functools

import numpy as np
import pytest

from mutants import eviction as wrong_eviction
from seqcheck import equiv
from seqcheck.equiv.families.eviction import measures, quality
from seqcheck.properties import inputs_for
from seqcheck.properties.eviction import POLICY_NAMES
from seqcheck.reference.eviction import TOVA, simulate_decoding


@pytest.mark.parametrize("name", POLICY_NAMES)
def test_every_form_passes_check_against_itself(name):
    key = f"eviction.{name}.decode"
    result = equiv.check(equiv.reference(key), key, seed=0, max_examples=30)
    assert result.passed, str(result)


def tova_loop(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
              ties_to_lowest=True, evict_highest=False):
    """A batched TOVA decoding loop as a kernel author would write it (no prompt, no RoPE)."""
    B, T, H, D = q.shape
    group = H // k.shape[2]
    k, v = np.repeat(k, group, axis=2), np.repeat(v, group, axis=2)
    scale = scale or 1 / np.sqrt(D)
    cache = np.zeros((B, T), dtype=bool)
    out, kept = np.zeros((B, T, H, v.shape[3])), np.zeros((B, T, 1, T))
    for t in range(T):
        cache[:, t] = True
        s = np.where(cache[:, None, :], scale * np.einsum("bhd,bjhd->bhj", q[:, t], k), -np.inf)
        p = np.exp(s - s.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        out[:, t] = np.einsum("bhj,bjhd->bhd", p, v)
        if t + 1 > budget:
            score = np.where(cache, -p.mean(axis=1) if evict_highest else p.mean(axis=1), np.inf)
            lowest = T - 1 - np.argmin(score[:, ::-1], axis=-1) if ties_to_lowest else np.argmin(score, axis=-1)
            cache[np.arange(B), lowest] = False
        kept[:, t, 0] = cache
    return out, kept


PLAIN = dict(prefill_len=0, rope=None)


def test_a_batched_decoding_loop_passes_and_its_argmax_twin_fails():
    inputs = inputs_for("eviction.tova.decode", **PLAIN)
    assert equiv.check(tova_loop, "eviction.tova.decode", inputs=inputs, seed=0, max_examples=60).passed
    wrong = equiv.check(functools.partial(tova_loop, evict_highest=True), "eviction.tova.decode", inputs=inputs,
                        seed=0, max_examples=60)
    assert not wrong.passed and "'kept'" in wrong.counterexample.message


def test_exact_ties_may_resolve_either_way_but_nothing_else_is_loosened():
    """Keys all zero: every row is uniform, every eviction an exact tie. A loop that evicts the
    lowest index among ties (the opposite of the rule) passes; from the first tie on the kept
    sets are unbounded, and before it they are exact."""
    rng = np.random.default_rng(0)
    args = {"q": rng.standard_normal((1, 8, 2, 2)), "k": np.zeros((1, 8, 1, 2)), "v": rng.standard_normal((1, 8, 1, 2)),
            "budget": 3, **PLAIN, "rope_base": 10000.0, "position_offset": 0, "scale": None}
    other_tie = functools.partial(tova_loop, ties_to_lowest=False)
    assert not np.array_equal(other_tie(**args)[1], equiv.reference("eviction.tova.decode")(**args)[1])
    assert equiv.replay(other_tie, "eviction.tova.decode", args).passed
    out_bound, kept_bound = measures.trajectory_bound("tova", args)
    assert (kept_bound[:3] == 0).all() and np.isinf(kept_bound[3:]).all()  # first eviction at t = 3
    assert np.isfinite(out_bound[:4]).all() and np.isinf(out_bound[4:]).all()
    random_keys = {**args, "k": rng.standard_normal((1, 8, 1, 2))}
    assert not measures.ambiguous_steps("tova", random_keys).any()
    assert not equiv.replay(functools.partial(tova_loop, evict_highest=True), "eviction.tova.decode",
                            random_keys).passed


def test_ambiguity_follows_each_policy_score():
    rng = np.random.default_rng(1)
    args = {"q": rng.standard_normal((1, 10, 2, 2)), "k": np.zeros((1, 10, 2, 2)),
            "v": rng.standard_normal((1, 10, 2, 1)), "budget": 4, "prefill_len": 0}
    assert not measures.ambiguous_steps("window", args).any()
    assert not measures.ambiguous_steps("streaming_llm", {**args, "sinks": 1}).any()
    random_keys = {**args, "k": rng.standard_normal((1, 10, 2, 2))}
    assert not measures.ambiguous_steps("h2o", {**random_keys, "heavy": 2}).any()
    # Scissorhands' integer counts: with uniform rows every weight equals the "uniform" threshold
    # (a count that may go either way), never the "position" one (1/(s+1) < 1/n_s after an eviction).
    scissors = {**args, "recent": 1, "history": 3}
    assert measures.ambiguous_steps("scissorhands", {**scissors, "threshold": "uniform"}).any()
    res = simulate_decoding(args["q"], args["k"], args["v"], policy=TOVA(), budget=4, return_rows=True)
    assert measures.ambiguous_steps("tova", args, res).any()


@pytest.mark.parametrize("key", [claim.key for claim in equiv.claims() if claim.key.startswith("eviction.quality")])
def test_the_quality_sweeps_stay_within_their_budgets(key, monkeypatch):
    """The report's sweeps at a smaller T (the report runs T = quality.QUALITY_T)."""
    name = key.rsplit(".", 1)[1]
    for data in quality.QUALITY_DATA:
        series = quality.quality_series(name, data, length=128, seed=0)
        assert all(e <= b for e, b in zip(series["error"], series["budget"])), series
        assert series["error"][-1] < 1e-12  # the whole sequence fits: full attention


def test_a_wrong_quality_run_is_caught_by_its_sweep_relation():
    args = quality.quality_args("tova", "random", 1.0, np.random.default_rng(0), length=64)  # nothing evicted
    lhs, rhs = quality._quality(wrong_eviction.newest_token_not_attended, args)
    assert np.abs(lhs[0] - rhs[0]).max() > quality.quality_bound(args, rhs)[0]
