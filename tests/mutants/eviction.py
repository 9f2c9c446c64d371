"""Deliberately wrong KV-cache eviction implementations: each must be rejected by its claim.

A policy mutant is the reference simulator with one policy subclassed the way a bug would look
(evicting the argmax, a window one token off, sinks not protected, scores summed over the batch);
a simulator mutant reruns the reference and recomputes its outputs over the wrong keys or at the
wrong positions (evicting before attending, forgetting the newest token, RoPE slots off by one).
Each takes the signature of the claim's implementation and changes only the policy it names.
"""

import numpy as np

from seqcheck.equiv.families.eviction import attended
from seqcheck.reference.eviction import POLICY_OPTIONS, decode, decode_layers, tova_select
from seqcheck.reference.eviction import H2O, TOVA, StreamingLLM, Window, simulate_decoding, simulate_layers
from seqcheck.reference.positional import apply_rope


def _run(policy, q, k, v, options, layers=False):
    """The reference simulator with ``policy`` (an object), the run options of ``options``."""
    run = {name: value for name, value in options.items() if name not in POLICY_OPTIONS}
    return (simulate_layers if layers else simulate_decoding)(q, k, v, policy=policy, **run)


def _parameters(options):
    return {name: options[name] for name in POLICY_OPTIONS if name in options}


# ----------------------------------------------------------------------------- policy mutants


class _ArgmaxTOVA(TOVA):
    def scores(self, state, t, cand, budget):
        return -super().scores(state, t, cand, budget)


def tova_evicts_the_argmax(q, k, v, *, policy, **options):
    """TOVA ranking by the negated score: a single eviction removes the most attended token."""
    if policy != "tova":
        return decode(q, k, v, policy=policy, **options)
    return _run(_ArgmaxTOVA(), q, k, v, options)


class _WindowPlusOne(Window):
    def select(self, state, t, cand, budget, prefill):
        return cand >= t - budget, np.full(cand.shape[:-1], np.inf)


def window_keeps_one_extra(q, k, v, *, policy, **options):
    """A sliding window off by one: keeps j >= t - budget, budget + 1 tokens."""
    if policy != "window":
        return decode(q, k, v, policy=policy, **options)
    return _run(_WindowPlusOne(), q, k, v, options)


class _UnprotectedSinks(StreamingLLM):
    def select(self, state, t, cand, budget, prefill):
        return cand > t - budget, np.full(cand.shape[:-1], np.inf)


def streaming_sinks_not_protected(q, k, v, *, policy, **options):
    """StreamingLLM whose sinks fall out of the window like any other token."""
    if policy != "streaming_llm":
        return decode(q, k, v, policy=policy, **options)
    return _run(_UnprotectedSinks(**_parameters(options)), q, k, v, options)


class _BatchH2O(H2O):
    def observe(self, state, t0, probs, visible):
        state[..., :probs.shape[-1]] += probs.sum(axis=2).sum(axis=0, keepdims=True)
        return state


def h2o_scores_accumulated_over_the_batch(q, k, v, *, policy, **options):
    """H2O adding every batch element's attention to every element's scores (H2O issue #14)."""
    if policy != "h2o":
        return decode(q, k, v, policy=policy, **options)
    return _run(_BatchH2O(**_parameters(options)), q, k, v, options)


class _BatchTOVA(TOVA):
    def scores(self, state, t, cand, budget):
        shared = np.broadcast_to(state.mean(axis=(0, 1))[None, None], (cand.shape[0], 1, state.shape[-1]))
        return np.take_along_axis(shared, cand, axis=-1)


def scores_shared_across_the_batch(q, k, v, *, policy, **options):
    """Layers of TOVA with one index set for the whole batch (scores averaged over the batch, as the
    authors' gather expands one set) and H2O with scores summed over the batch."""
    mutated = {"tova": lambda: _BatchTOVA(), "h2o": lambda: _BatchH2O(**_parameters(options))}
    if policy not in mutated:
        return decode_layers(q, k, v, policy=policy, **options)
    return _run(mutated[policy](), q, k, v, options, layers=True)


class _H2ORecentPlusOne(H2O):
    def scores(self, state, t, cand, budget):
        accumulated = super().scores(state, t, cand, budget)
        return np.where(cand >= t - (budget - self.heavy), np.inf, accumulated)


def h2o_recent_window_off_by_one(q, k, v, *, policy, **options):
    """H2O protecting one token too many as recent (j >= t - recent): with no heavy hitters every
    candidate ties at +inf and the tie rule evicts the newest."""
    if policy != "h2o":
        return decode(q, k, v, policy=policy, **options)
    with np.errstate(invalid="ignore"):  # its margins subtract inf from inf
        return _run(_H2ORecentPlusOne(**_parameters(options)), q, k, v, options)


# ----------------------------------------------------------------------------- simulator mutants


def _softmax(s):
    p = np.exp(s - s.max())
    return p / p.sum()


def _naive_softmax(s):
    with np.errstate(over="ignore", invalid="ignore"):
        p = np.exp(s)
        return p / p.sum()


def _outputs_over(q, k, v, sets, options, *, key_positions, query_position, softmax=_softmax):
    """Row t of head h attends over ``sets[b, t, g]``; with RoPE keys at ``key_positions(t, idx)``
    and the query at ``query_position(t, idx)``."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    B, T, H, D = q.shape
    G, Hkv = sets.shape[2], k.shape[2]
    scale = options.get("scale") or 1 / np.sqrt(D)
    base = options.get("rope_base", 10000.0)
    out = np.zeros((B, T, H, v.shape[3]))
    for b in range(B):
        for t in range(T):
            for h in range(H):
                idx = np.flatnonzero(sets[b, t, h // (H // G)])
                keys, query = k[b, idx, h // (H // Hkv)], q[b, t, h]
                if options.get("rope") is not None:
                    keys = apply_rope(keys[None, :, None], key_positions(t, idx), base=base)[0, :, 0]
                    query = apply_rope(query[None, None, None], np.array([query_position(t, idx)]), base=base)[0, 0, 0]
                out[b, t, h] = softmax(scale * keys @ query) @ v[b, idx, h // (H // Hkv)]
    return out


def _absolute(options):
    offset = options.get("position_offset", 0)
    return dict(key_positions=lambda t, idx: offset + idx, query_position=lambda t, idx: offset + t)


def evict_before_attending(q, k, v, *, policy, **options):
    """Each decoded token attends over the cache after its own step's eviction (trim, then attend)."""
    res = decode(q, k, v, policy=policy, **options)
    P = options.get("prefill_len", 0)
    sets = attended(res.kept, P)
    sets[:, P:] = res.kept[:, P:]
    return res._replace(outputs=_outputs_over(q, k, v, sets, options, **_absolute(options)))


def newest_token_not_attended(q, k, v, *, policy, **options):
    """Each decoded token attends over the cache without itself (unless the cache is empty)."""
    res = decode(q, k, v, policy=policy, **options)
    P, T = options.get("prefill_len", 0), np.shape(q)[1]
    sets = attended(res.kept, P)
    for t in range(P, T):
        alone = sets[:, t].sum(axis=-1) == 1
        sets[:, t, :, t] = alone
    return res._replace(outputs=_outputs_over(q, k, v, sets, options, **_absolute(options)))


def _slotted(res, q, k, v, options, *, keys_absolute=False, query_late=0):
    offset = options.get("position_offset", 0)
    sets = attended(res.kept, options.get("prefill_len", 0))
    return _outputs_over(q, k, v, sets, options,
                         key_positions=lambda t, idx: offset + (idx if keys_absolute else np.arange(idx.size)),
                         query_position=lambda t, idx: offset + idx.size - 1 + query_late)


def pre_shift_keys_at_absolute_positions(q, k, v, *, policy, **options):
    """A position shift that rotates the query to its cache slot but leaves the cached keys at their
    absolute positions (mixing "post" keys with a "pre_shift" query)."""
    res = decode(q, k, v, policy=policy, **options)
    if options.get("rope") != "pre_shift":
        return res
    return res._replace(outputs=_slotted(res, q, k, v, options, keys_absolute=True))


def pre_shift_query_one_slot_late(q, k, v, *, policy, **options):
    """StreamingLLM's position shift with the query one slot past the newest key (slot n, not n - 1)
    on decoded rows."""
    res = decode(q, k, v, policy=policy, **options)
    if options.get("rope") != "pre_shift":
        return res
    P = options.get("prefill_len", 0)
    late = _slotted(res, q, k, v, options, query_late=1)
    outputs = res.outputs.copy()
    outputs[:, P:] = late[:, P:]
    return res._replace(outputs=outputs)


def softmax_without_max_subtraction(q, k, v, *, policy, **options):
    """Attention weights exp(s) / sum exp(s) without subtracting the row maximum: large logits overflow."""
    res = decode(q, k, v, policy=policy, **options)
    sets = attended(res.kept, options.get("prefill_len", 0))
    return res._replace(outputs=_outputs_over(q, k, v, sets, options, softmax=_naive_softmax,
                                              **_absolute(options)))


# ----------------------------------------------------------------------------- other implementations


def cache_attention_zeroes_evicted_weights(q, k, v, *, keep, scale=None):
    """Evicted tokens' weights set to zero after a softmax over every key, without renormalising."""
    group = q.shape[2] // k.shape[2]
    D = q.shape[3]
    s = (scale or 1 / np.sqrt(D)) * np.einsum("bthd,bshd->bhts", q, np.repeat(k, group, axis=2))
    p = np.exp(s - s.max(axis=-1, keepdims=True))
    p = p / p.sum(axis=-1, keepdims=True) * keep[:, None, None, :]
    return np.einsum("bhts,bshd->bthd", p, np.repeat(v, group, axis=2))


def tova_select_first_head_only(probs, positions, *, budget):
    """TOVA scoring the first head's attention instead of the mean over the heads."""
    return tova_select(np.asarray(probs)[:, :1], positions, budget=budget)


def rope_negative_offsets_as_absolute(x, positions=None, **options):
    """RoPE taking the magnitude of its positions: a backward re-rotation R(i - p), i < p, turns forward."""
    return apply_rope(x, None if positions is None else np.abs(positions), **options)


MUTANTS = {
    "eviction.cache_size": window_keeps_one_extra,
    "eviction.full_budget_exact": pre_shift_query_one_slot_late,
    "eviction.renormalised": evict_before_attending,
    "eviction.mass_bound": newest_token_not_attended,
    "eviction.remove_one": cache_attention_zeroes_evicted_weights,
    "eviction.tova.argmin": tova_evicts_the_argmax,
    "eviction.tova.permutation": tova_select_first_head_only,
    "eviction.window_equivalences": h2o_recent_window_off_by_one,
    "eviction.streaming_sinks": streaming_sinks_not_protected,
    "eviction.pre_shift_translation": pre_shift_keys_at_absolute_positions,
    "eviction.rerotation": rope_negative_offsets_as_absolute,
    "eviction.h2o_scores": h2o_scores_accumulated_over_the_batch,
    "eviction.batch_independent": scores_shared_across_the_batch,
    "eviction.logit_shift": softmax_without_max_subtraction,
    **{f"eviction.quality.{name}": newest_token_not_attended
       for name in ("window", "streaming_llm", "tova", "tova_kvpress", "h2o", "scissorhands", "snapkv")},
}
"""The mutant each claim of the family must reject, by claim key."""
