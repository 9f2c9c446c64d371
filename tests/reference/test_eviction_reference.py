"""Unit tests of the KV-cache eviction references: cache invariants, each policy's decision replayed
from the recorded attention rows by a plain loop, full attention when nothing is evicted, RoPE
position handling, the tie rule and bad inputs."""

import numpy as np
import pytest

from seqcheck.reference.attention import softmax_attention
from seqcheck.reference.eviction import (
    H2O,
    POLICIES,
    TOVA,
    Scissorhands,
    SnapKV,
    StreamingLLM,
    TOVAKVPress,
    Window,
    argmin_highest_index,
    simulate_decoding,
    simulate_layers,
    topk_lowest_index,
)
from seqcheck.reference.positional import apply_rope, rope_matrix

EPS = np.finfo(np.float64).eps
B, T, H, HKV, D = 2, 24, 4, 2, 8
BUDGET = 6

POLICY_CASES = {
    "window": Window(),
    "streaming_llm": StreamingLLM(sinks=2),
    "tova": TOVA(),
    "tova_kvpress": TOVAKVPress(),
    "h2o": H2O(heavy=3),
    "scissorhands": Scissorhands(recent=2, history=4),
    "scissorhands_position": Scissorhands(recent=2, history=4, threshold="position"),
    "snapkv": SnapKV(window=2, kernel_size=3),
    "snapkv_kv_maxpool": SnapKV(window=2, kernel_size=3, pooling="maxpool", heads="kv"),
}
BOUNDED = [name for name in POLICY_CASES if not name.startswith("snapkv")]
PREFILLS = [0, 1, 4, 11]


def qkv(seed=0, batch=B, length=T, heads=H, kv_heads=HKV, d=D, sharp=2.0):
    """Random projections; ``sharp`` scales q so that attention rows are far from uniform."""
    rng = np.random.default_rng(seed)
    return (sharp * rng.standard_normal((batch, length, heads, d)),
            rng.standard_normal((batch, length, kv_heads, d)),
            rng.standard_normal((batch, length, kv_heads, d)))


def run(policy, prefill=4, budget=BUDGET, rope="post", seed=0, **kw):
    return simulate_decoding(*qkv(seed), policy=policy, budget=budget, prefill_len=prefill, rope=rope, **kw)


def candidates(res, t, prefill):
    """C_t as a bool (B, G, T) mask: the prefix for the prefill's selection, else kept_{t-1} ∪ {t}."""
    if t == prefill - 1:
        mask = np.zeros(res.kept[:, t].shape, dtype=bool)
        mask[..., :prefill] = True
        return mask
    mask = res.kept[:, t - 1].copy() if t else np.zeros(res.kept[:, t].shape, dtype=bool)
    mask[..., t] = True
    return mask


def decision_steps(prefill):
    return range(max(prefill - 1, 0), T)


def group_sum(x, groups):
    return x.reshape(x.shape[0], groups, -1, *x.shape[2:]).sum(axis=2)


# ----------------------------------------------------------------------------- cache invariants


@pytest.mark.parametrize("prefill", PREFILLS)
@pytest.mark.parametrize("name", BOUNDED)
def test_cache_holds_min_of_seen_and_budget(name, prefill):
    sizes = run(POLICY_CASES[name], prefill).kept.sum(axis=-1)
    for t in range(T):
        expected = t + 1 if t < prefill - 1 else min(t + 1, BUDGET)
        assert (sizes[:, t] == expected).all(), (t, sizes[:, t])


@pytest.mark.parametrize("prefill", [0, 4, 11])
def test_snapkv_compresses_the_prompt_only(prefill):
    sizes = run(POLICY_CASES["snapkv"], prefill).kept.sum(axis=-1)
    after_prefill = min(prefill, BUDGET)
    for t in range(prefill, T):
        assert (sizes[:, t] == after_prefill + t - prefill + 1).all()


@pytest.mark.parametrize("prefill", PREFILLS)
@pytest.mark.parametrize("name", list(POLICY_CASES))
def test_no_resurrection(name, prefill):
    res = run(POLICY_CASES[name], prefill)
    for t in range(1, T):
        assert not (res.kept[:, t] & ~candidates(res, t, prefill)).any(), t


@pytest.mark.parametrize("rope", [None, "post", "pre_shift"])
@pytest.mark.parametrize("prefill", [0, 5, T])
@pytest.mark.parametrize("name", list(POLICY_CASES))
def test_budget_of_t_gives_causal_attention(name, prefill, rope):
    res = run(POLICY_CASES[name], prefill, budget=T, rope=rope, position_offset=3)
    assert res.kept[:, -1].all() and np.isinf(res.margins).all()
    expected = softmax_attention(apply_rope(qkv()[0], 3 + np.arange(T)) if rope else qkv()[0],
                                 apply_rope(qkv()[1], 3 + np.arange(T)) if rope else qkv()[1],
                                 qkv()[2], causal=True)
    np.testing.assert_allclose(res.outputs, expected, rtol=0, atol=8 * T * EPS)


@pytest.mark.parametrize("name", list(POLICY_CASES))
def test_rows_are_distributions_over_the_candidates(name):
    prefill = 4
    res = run(POLICY_CASES[name], prefill)
    groups = res.kept.shape[2]
    np.testing.assert_allclose(res.rows.sum(axis=-1), 1.0, rtol=0, atol=4 * T * EPS)
    for t in range(prefill, T):
        visible = candidates(res, t, prefill)[:, np.arange(H) // (H // groups)]
        assert (res.rows[:, t] > 0).sum() == visible.sum() and not res.rows[:, t][~visible].any()


def test_batch_elements_are_independent():
    q, k, v = qkv(3, batch=3)
    for policy in POLICY_CASES.values():
        whole = simulate_decoding(q, k, v, policy=policy, budget=BUDGET, prefill_len=4, rope="pre_shift")
        for b in range(3):
            one = simulate_decoding(q[b:b + 1], k[b:b + 1], v[b:b + 1], policy=policy, budget=BUDGET,
                                    prefill_len=4, rope="pre_shift")
            np.testing.assert_array_equal(whole.kept[b:b + 1], one.kept)
            np.testing.assert_allclose(whole.outputs[b:b + 1], one.outputs, rtol=0, atol=4 * EPS)


def test_inputs_are_not_mutated():
    q, k, v = qkv()
    copies = [x.copy() for x in (q, k, v)]
    simulate_decoding(q, k, v, policy=H2O(heavy=2), budget=BUDGET, prefill_len=5, rope="pre_shift")
    for x, c in zip((q, k, v), copies):
        np.testing.assert_array_equal(x, c)


def test_layers_are_independent_runs():
    layers = [qkv(seed) for seed in range(3)]
    q, k, v = (np.stack(x) for x in zip(*layers))
    results = simulate_layers(q, k, v, policy=TOVA(), budget=BUDGET, prefill_len=4)
    for res, (ql, kl, vl) in zip(results, layers):
        one = simulate_decoding(ql, kl, vl, policy=TOVA(), budget=BUDGET, prefill_len=4)
        np.testing.assert_array_equal(res.kept, one.kept)
        np.testing.assert_array_equal(res.outputs, one.outputs)


# ----------------------------------------------------------------------------- decisions replayed


@pytest.mark.parametrize("prefill", [0, 4, 11])
def test_tova_evicts_the_argmin_of_the_head_averaged_row(prefill):
    res = run(TOVA(), prefill)
    assert res.kept.shape[2] == 1
    for t in decision_steps(prefill):
        for b in range(B):
            cand = np.flatnonzero(candidates(res, t, prefill)[b, 0])
            score = res.rows[b, t].mean(axis=0)[cand]
            kept = np.flatnonzero(res.kept[b, t, 0])
            if len(cand) > BUDGET:
                np.testing.assert_array_equal(kept, cand[topk_lowest_index(score, BUDGET)])
                ranked = np.sort(score)[::-1]
                assert res.margins[b, t, 0] == ranked[BUDGET - 1] - ranked[BUDGET]
            if len(cand) == BUDGET + 1:
                assert list(set(cand) - set(kept)) == [cand[argmin_highest_index(score)]]
                assert cand[np.argmax(score)] in kept
            patterns = res.rows[b, t] > 0
            assert (patterns == patterns[0]).all()


def test_tova_kvpress_always_keeps_the_newest():
    res = run(TOVAKVPress(), 0)
    plain = run(TOVA(), 0)
    assert all(res.kept[:, t, 0, t].all() for t in range(T))
    assert not all(plain.kept[:, t, 0, t].all() for t in range(T))


class PositionTOVA(TOVA):
    """TOVA's selection machinery with the score replaced by the token's index."""

    def scores(self, state, t, cand, budget):
        return cand.astype(np.float64)


@pytest.mark.parametrize("rope", [None, "pre_shift"])
@pytest.mark.parametrize("prefill", PREFILLS)
def test_window_equals_position_scored_tova_and_h2o_without_heavy(prefill, rope):
    window = run(Window(), prefill, rope=rope)
    for other in (PositionTOVA(), H2O(heavy=0), StreamingLLM(sinks=0)):
        res = run(other, prefill, rope=rope)
        np.testing.assert_array_equal(res.kept, np.broadcast_to(window.kept, res.kept.shape))
        np.testing.assert_array_equal(res.outputs, window.outputs)


@pytest.mark.parametrize("prefill", PREFILLS)
def test_streaming_llm_keeps_sinks_and_recent(prefill):
    sinks = 2
    res = run(StreamingLLM(sinks=sinks), prefill)
    for t in decision_steps(prefill):
        expected = [j for j in range(t + 1) if j < sinks or j > t - (BUDGET - sinks)]
        assert (res.kept[:, t, 0, expected]).all() and res.kept[:, t, 0].sum(axis=-1).tolist() == [len(expected)] * B


@pytest.mark.parametrize("prefill", [0, 4, 11])
@pytest.mark.parametrize("heavy", [0, 2, BUDGET])
def test_h2o_replays_from_accumulated_rows(prefill, heavy):
    res = run(H2O(heavy=heavy), prefill)
    assert (res.rows >= 0).all()  # so every token's accumulated score is non-decreasing
    accumulated = np.cumsum(res.rows, axis=1)  # (B, T, H, T): A after each step, evicted tokens frozen
    np.testing.assert_allclose(res.state, accumulated[:, -1], rtol=0, atol=T * EPS)
    np.testing.assert_allclose(res.state.sum(axis=-1), T, rtol=0, atol=T * T * EPS)  # one per query row
    recent = BUDGET - heavy
    for t in decision_steps(prefill):
        cand = candidates(res, t, prefill)
        score = group_sum(accumulated[:, t], HKV)
        for b in range(B):
            for g in range(HKV):
                c = np.flatnonzero(cand[b, g])
                if len(c) <= BUDGET:
                    continue
                young, old = c[c > t - recent], c[c <= t - recent]
                heavy_kept = old[topk_lowest_index(score[b, g, old], BUDGET - len(young))]
                np.testing.assert_array_equal(np.flatnonzero(res.kept[b, t, g]), np.sort(np.r_[heavy_kept, young]))


def low_counts(rows, visible, t, history, threshold):
    """Per-head count of rows in (t - history, t] where a visible token scored below tau."""
    counts = np.zeros(rows.shape[:1] + rows.shape[2:], dtype=int)
    for s in range(max(0, t - history + 1), t + 1):
        tau = 1 / visible[:, s].sum(axis=-1, keepdims=True) if threshold == "uniform" else 1 / (s + 1)
        counts += visible[:, s] & (rows[:, s] < tau)
    return counts


@pytest.mark.parametrize("threshold", ["uniform", "position"])
@pytest.mark.parametrize("drop", [1, 3])
@pytest.mark.parametrize("prefill", [0, 11])
def test_scissorhands_replays_from_low_importance_counts(prefill, drop, threshold):
    policy = Scissorhands(recent=2, history=4, drop=drop, threshold=threshold)
    res = run(policy, prefill, seed=1)
    visible = res.rows > 0
    for t in decision_steps(prefill):
        cand = candidates(res, t, prefill)
        low = group_sum(low_counts(res.rows, visible, t, 4, threshold), HKV)
        for b in range(B):
            for g in range(HKV):
                c = np.flatnonzero(cand[b, g])
                kept = np.flatnonzero(res.kept[b, t, g])
                if len(c) <= BUDGET:
                    np.testing.assert_array_equal(kept, c)
                    continue
                young, old = c[c > t - 2], c[c <= t - 2]
                n_keep = min(BUDGET, len(c) - drop)
                chosen = old[topk_lowest_index(-low[b, g, old].astype(float), n_keep - len(young))]
                np.testing.assert_array_equal(kept, np.sort(np.r_[chosen, young]))


def test_scissorhands_drops_several_at_once():
    sizes = run(Scissorhands(recent=2, history=4, drop=3), 0).kept.sum(axis=-1)[0, :, 0]
    assert sizes.max() == BUDGET and sizes[BUDGET:].min() == BUDGET + 1 - 3


def torch_pool(x, kernel_size, pooling):
    torch = pytest.importorskip("torch")
    pool = torch.nn.functional.avg_pool1d if pooling == "avgpool" else torch.nn.functional.max_pool1d
    return pool(torch.from_numpy(x), kernel_size=kernel_size, padding=kernel_size // 2, stride=1).numpy()


@pytest.mark.parametrize("heads", ["query", "kv"])
@pytest.mark.parametrize("pooling", ["avgpool", "maxpool"])
def test_snapkv_replays_observation_window_pooling(pooling, heads):
    prefill, window, kernel = 14, 3, 5
    policy = SnapKV(window=window, kernel_size=kernel, pooling=pooling, heads=heads)
    res = run(policy, prefill)
    observed = res.rows[:, prefill - window:prefill].sum(axis=1)[..., :prefill - window]  # (B, H, P - W)
    pooled = torch_pool(observed, kernel, pooling)
    if heads == "kv":
        pooled = group_sum(pooled, HKV) / (H // HKV)
    for b in range(B):
        for g in range(pooled.shape[1]):
            prefix = topk_lowest_index(pooled[b, g], BUDGET - window)
            expected = np.r_[prefix, np.arange(prefill - window, prefill)]
            np.testing.assert_array_equal(np.flatnonzero(res.kept[b, prefill - 1, g]), expected)
            assert res.kept[b, -1, g, prefill:].all()


PROTECTED = {"window": BUDGET, "streaming_llm": BUDGET - 2, "h2o": BUDGET - 3, "scissorhands": 2,
             "scissorhands_position": 2, "tova_kvpress": 1}


@pytest.mark.parametrize("prefill", [0, 4, 11])
@pytest.mark.parametrize("name", list(PROTECTED))
def test_recent_tokens_are_always_kept(name, prefill):
    res = run(POLICY_CASES[name], prefill)
    for t in decision_steps(prefill):
        assert res.kept[:, t, :, max(t - PROTECTED[name] + 1, 0):t + 1].all(), t


# ----------------------------------------------------------------------------- RoPE positions


@pytest.mark.parametrize("rope", ["post", "pre_shift"])
@pytest.mark.parametrize("name", ["streaming_llm", "h2o", "tova"])
def test_outputs_invariant_to_translating_positions(name, rope):
    base = run(POLICY_CASES[name], 4, rope=rope)
    moved = run(POLICY_CASES[name], 4, rope=rope, position_offset=1000)
    np.testing.assert_array_equal(moved.kept, base.kept)
    np.testing.assert_allclose(moved.outputs, base.outputs, rtol=0, atol=1e-11)


def test_pre_shift_output_depends_only_on_cache_contents():
    prefill = 4
    q, k, v = qkv()
    res = simulate_decoding(q, k, v, policy=StreamingLLM(sinks=2), budget=BUDGET, prefill_len=prefill, rope="pre_shift")
    for t in range(prefill, T):
        cache = np.flatnonzero(candidates(res, t, prefill)[0, 0])
        slots = np.arange(len(cache))
        out = softmax_attention(apply_rope(q[:, [t]], slots[-1:]), apply_rope(k[:, cache], slots), v[:, cache])
        np.testing.assert_allclose(res.outputs[:, t], out[:, 0], rtol=0, atol=16 * EPS)


def test_post_keys_sit_at_absolute_positions():
    prefill = 4
    q, k, v = qkv()
    res = simulate_decoding(q, k, v, policy=StreamingLLM(sinks=2), budget=BUDGET, prefill_len=prefill, rope="post")
    qa, ka = apply_rope(q, np.arange(T)), apply_rope(k, np.arange(T))
    for t in range(prefill, T):
        cache = np.flatnonzero(candidates(res, t, prefill)[0, 0])
        out = softmax_attention(qa[:, [t]], ka[:, cache], v[:, cache])
        np.testing.assert_allclose(res.outputs[:, t], out[:, 0], rtol=0, atol=16 * EPS)


@pytest.mark.parametrize("i,p", [(7, 3), (100, 99), (5, 0), (2, 9)])
def test_rerotation_composes(i, p):
    key = np.random.default_rng(i).standard_normal(D)
    np.testing.assert_allclose(rope_matrix(i - p, D) @ rope_matrix(p, D) @ key, rope_matrix(i, D) @ key,
                               rtol=0, atol=64 * EPS)
    stored = apply_rope(key[None, None, None], np.array([p]))
    np.testing.assert_allclose(apply_rope(stored, np.array([i - p])), apply_rope(key[None, None, None], np.array([i])),
                               rtol=0, atol=64 * EPS)


# ----------------------------------------------------------------------------- tie rule


def test_tie_rule_helpers():
    np.testing.assert_array_equal(topk_lowest_index([1.0, 2.0, 1.0, 1.0, 0.0], 3), [0, 1, 2])
    np.testing.assert_array_equal(topk_lowest_index([[3, 3, 3], [0, 5, 5]], 1), [[0], [1]])
    assert argmin_highest_index([0.0, 1.0, 0.0, 2.0]) == 2
    scores = np.random.default_rng(0).integers(0, 3, size=(50, 7)).astype(float)
    for row in scores:
        left_out = set(range(7)) - set(topk_lowest_index(row, 6))
        assert left_out == {argmin_highest_index(row)}


@pytest.mark.parametrize("policy,protected", [(TOVA(), 0), (TOVAKVPress(), 1), (Scissorhands(recent=2, history=4), 2)])
def test_exact_ties_keep_the_lowest_indices(policy, protected):
    q, _, v = qkv()
    k = np.zeros((B, T, HKV, D))  # every score equal: uniform rows, every unprotected candidate ties
    res = simulate_decoding(q, k, v, policy=policy, budget=BUDGET, prefill_len=0)
    for t in range(BUDGET, T):
        newest = list(range(t - protected + 1, t + 1))
        expected = np.r_[np.arange(BUDGET - protected), newest].astype(int)
        for g in range(res.kept.shape[2]):
            np.testing.assert_array_equal(np.flatnonzero(res.kept[0, t, g]), expected)
    assert (res.margins[:, BUDGET:] == 0).all()


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(budget=0), ValueError, "budget"),
    (dict(budget=2.0), TypeError, "budget"),
    (dict(prefill_len=T + 1), ValueError, "prefill_len"),
    (dict(rope="pre"), ValueError, "rope"),
    (dict(rope_base=-1.0), ValueError, "rope_base"),
    (dict(scale=0.0), ValueError, "scale"),
    (dict(position_offset=-1), ValueError, "position_offset"),
    (dict(return_rows=1), TypeError, "return_rows"),
    (dict(policy="tova"), TypeError, "policy"),
    (dict(policy=StreamingLLM(sinks=7)), ValueError, "sinks"),
    (dict(policy=H2O(heavy=7)), ValueError, "heavy"),
    (dict(policy=Scissorhands(recent=7, history=2)), ValueError, "recent"),
    (dict(policy=Scissorhands(recent=2, history=2, drop=6)), ValueError, "drop"),
    (dict(policy=SnapKV(window=6)), ValueError, "window"),
])
def test_bad_options(kwargs, error, match):
    options = dict(policy=TOVA(), budget=BUDGET, prefill_len=2, rope="post") | kwargs
    with pytest.raises(error, match=match):
        simulate_decoding(*qkv(), **options)


def test_bad_arrays():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="q must have shape"):
        simulate_decoding(q[0], k, v, policy=TOVA(), budget=BUDGET)
    with pytest.raises(ValueError, match="k must have shape"):
        simulate_decoding(q, k[:, :-1], v, policy=TOVA(), budget=BUDGET)
    with pytest.raises(ValueError, match="v must have shape"):
        simulate_decoding(q, k, v[:, :, :1], policy=TOVA(), budget=BUDGET)
    with pytest.raises(ValueError, match="multiple of k's head count"):
        simulate_decoding(q[:, :, :3], k, v, policy=TOVA(), budget=BUDGET)
    with pytest.raises(TypeError, match="q must hold real numbers"):
        simulate_decoding(q.astype(complex), k, v, policy=TOVA(), budget=BUDGET)
    with pytest.raises(ValueError, match="k must be finite"):
        simulate_decoding(q, np.where(k > 2, np.nan, k), v, policy=TOVA(), budget=BUDGET)
    with pytest.raises(ValueError, match="even head dimension"):
        simulate_decoding(q[..., :7], k[..., :7], v, policy=TOVA(), budget=BUDGET, rope="post")
    with pytest.raises(ValueError, match="same number of layers"):
        simulate_layers([q, q], [k], [v], policy=TOVA(), budget=BUDGET)


@pytest.mark.parametrize("make,error,match", [
    (lambda: StreamingLLM(sinks=-1), ValueError, "sinks"),
    (lambda: H2O(heavy=1.5), TypeError, "heavy"),
    (lambda: Scissorhands(recent=1, history=0), ValueError, "history"),
    (lambda: Scissorhands(recent=1, history=2, threshold="mean"), ValueError, "threshold"),
    (lambda: SnapKV(kernel_size=4), ValueError, "kernel_size"),
    (lambda: SnapKV(pooling="sum"), ValueError, "pooling"),
    (lambda: SnapKV(heads="all"), ValueError, "heads"),
    (lambda: topk_lowest_index([1.0, np.nan], 1), ValueError, "scores"),
    (lambda: topk_lowest_index([1.0, 2.0], 3), ValueError, "k"),
    (lambda: argmin_highest_index(np.array([], dtype=float)), ValueError, "scores"),
])
def test_bad_policy_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_registry_names():
    assert sorted(POLICIES) == sorted(["window", "streaming_llm", "tova", "tova_kvpress", "h2o", "scissorhands",
                                       "snapkv"])
    assert all(POLICIES[name].name == name for name in POLICIES)
