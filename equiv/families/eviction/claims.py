"""The eviction claims: cache invariants, outputs over a kept set, TOVA, the rule-based policies,
H2O, batch independence and the logit shift (bounds: measures.py)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.families.eviction.forms import NO_ROPE_SHIFT
from seqcheck.equiv.families.eviction.measures import (OUTPUT_RULE, TRAJECTORY_RULE, ambiguous_steps, at_positions,
                                                       attended, evicted_mass, head_groups, logsumexp, onset,
                                                       policy_options, renormalised_outputs, replayed, score_scale,
                                                       trajectory_bound, valid_selection, value_max, weight_error)
from seqcheck.equiv.registry import Claim, register_claim, without
from seqcheck.properties.arrays import generators
from seqcheck.properties.eviction import (decode_inputs, layered_inputs, remove_one_inputs, rerotation_inputs,
                                          selection_inputs)
from seqcheck.reference.arith import U64
from seqcheck.reference.attention import softmax_attention
from seqcheck.reference.eviction import cache_attention, decode, decode_layers, make_policy, tova_select
from seqcheck.reference.positional import apply_rope

# ----------------------------------------------------------------------------- claims: cache invariants

def _keep_count(name: str, options: dict, n: int, budget: int, prefill: bool) -> int:
    if name == "scissorhands":
        return n if n <= budget else min(budget, n - options.get("drop", 1))
    if name == "snapkv" and not prefill:
        return n
    return min(n, budget)


def expected_sizes(args: dict) -> np.ndarray:
    """|kept_t| by the budget rule alone: t + 1 inside the prompt, then keep_count(|C_t|) with
    |C_t| = |kept_{t-1}| + 1 (min(t + 1, K) for every policy but Scissorhands' drop and SnapKV)."""
    T, P, K = np.shape(args["q"])[1], args.get("prefill_len", 0), args["budget"]
    options, sizes, size = policy_options(args), np.zeros(T), 0
    for t in range(T):
        if t < P - 1:
            size = t + 1
        elif t == P - 1:
            size = _keep_count(args["policy"], options, P, K, True)
        else:
            size = _keep_count(args["policy"], options, size + 1, K, False)
        sizes[t] = size
    return sizes


def _cache_size(impl, args):
    res = impl(**args)
    kept = res.kept
    P = args.get("prefill_len", 0)
    outside = kept & ~attended(kept, P)
    return ((kept.sum(axis=-1).astype(np.float64), outside.sum(axis=-1).astype(np.float64)),
            (np.broadcast_to(expected_sizes(args)[None, :, None], kept.shape[:3]), np.zeros(kept.shape[:3])))


register_claim(Claim(
    key="eviction.cache_size",
    statement="after every step the cache holds min(t + 1, K) tokens (by the budget rule: Scissorhands drops "
              "several at once, SnapKV compresses the prompt only) and no evicted token comes back "
              "(S_t is a subset of S_{t-1} plus {t})",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_cache_size,
    inputs=lambda: decode_inputs(),
    bound=None,
    rule="exact (integer counts)",
    exactness="exact",
    outputs=("cache size", "resurrected tokens"),
))


def _full_budget(impl, args):
    res = impl(**args)
    B, T, H = np.shape(args["q"])[:3]
    full = softmax_attention(at_positions(args["q"], args), at_positions(args["k"], args), args["v"],
                             scale=args.get("scale"), causal=True)
    groups = make_policy(args["policy"], **policy_options(args)).groups(H, np.shape(args["k"])[2])
    everything = np.broadcast_to(np.tri(T)[None, :, None, :], (B, T, groups, T))
    return (res.outputs, res.kept.astype(np.float64)), (full, everything)


register_claim(Claim(
    key="eviction.full_budget_exact",
    statement="with a budget K >= T nothing is evicted and every policy's output equals causal attention at "
              "the absolute positions, to the float64 bound, for every RoPE mode and prefill",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_full_budget,
    inputs=lambda: st.integers(1, 12).flatmap(lambda T: decode_inputs(length=T, budget=st.integers(T, T + 2))),
    bound=lambda args, rhs: (value_max(args) * weight_error(args), 0.0),
    rule=OUTPUT_RULE + "; kept: exact",
    outputs=("out", "kept"),
))


# ----------------------------------------------------------------------------- claims: outputs over a kept set

def _renormalised(impl, args):
    res = impl(**args)
    return (res.outputs,), (renormalised_outputs(args, res.kept),)


register_claim(Claim(
    key="eviction.renormalised",
    statement="the output over a kept set equals the full causal softmax renormalised over that set "
              "(C_t = kept_{t-1} plus t), keys at their absolute positions",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_renormalised,
    inputs=lambda: decode_inputs(rope=NO_ROPE_SHIFT),
    bound=lambda args, rhs: (value_max(args) * weight_error(args),),
    rule=OUTPUT_RULE,
))


def _mass(impl, args):
    res = impl(**args)
    eps, full = evicted_mass(args, res.kept)
    return (res.outputs, eps), (full, eps)


def mass_bound(args: dict, rhs: tuple) -> tuple:
    """2 vmax (eps_t + w_t) + vmax w_t per step (eps_t: the largest evicted mass of row t over b, h)."""
    w, eps = weight_error(args), np.maximum(rhs[1], 0.0).max(axis=(0, 2))
    return value_max(args) * (2 * (eps + w) + w), 0.0


MASS_RULE = ("derived bound |o - o_full| <= 2 eps_t vmax (eps_t the evicted attention mass of row t), plus "
             "vmax (2 w_t + w_t) of float64 rounding (w_t: module docstring); evicted mass: exact (carried)")

register_claim(Claim(
    key="eviction.mass_bound",
    statement="the error against full attention is at most twice the evicted attention mass times max|v|: "
              "|o_t - o_full_t| <= 2 eps_t max|v|, eps_t = 1 - sum over C_t of the full softmax",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_mass,
    inputs=lambda: decode_inputs(rope=NO_ROPE_SHIFT),
    bound=mass_bound,
    rule=MASS_RULE,
    outputs=("out", "evicted mass"),
))


def _remove_one(impl, args):
    q, k, v = (np.asarray(args[n], dtype=np.float64) for n in ("q", "k", "v"))
    keep, j = args["keep"], args["j"]
    B, n = keep.shape
    fewer = keep & (np.arange(n)[None, :] != j[:, None])
    _, kv = head_groups(args, 1)
    scale = score_scale(args)
    o = impl(q, k, v, keep=keep, scale=args["scale"])
    o_minus = impl(q, k, v, keep=fewer, scale=args["scale"])
    b = np.arange(B)
    s = scale * np.einsum("bthd,bshd->bhts", q, k[:, :, kv])  # (B, H, Tq, n)
    s_j = s[b, :, :, j]  # (B, H, Tq)
    ratio = np.exp(s_j - logsumexp(s, fewer[:, None, None, :]))  # p_j / (1 - p_j)
    v_j = v[b, j][:, kv]  # (B, H, Dv)
    return (o_minus - o,), (ratio.transpose(0, 2, 1)[..., None] * (o - v_j[:, None]),)


def _remove_one_bound(args: dict, rhs: tuple) -> tuple:
    q, k = np.asarray(args["q"]), np.asarray(args["k"])
    D, n = q.shape[-1], k.shape[1]
    _, kv = head_groups(args, 1)
    sigma = score_scale(args) * np.einsum("bthd,bshd->bts", np.abs(q), np.abs(k[:, :, kv])).max(axis=(0, 2))
    vmax = value_max(args)
    one = U64 * vmax * (4 * (D + 3) * sigma + 4 * n + 8)
    s = score_scale(args) * np.einsum("bthd,bshd->bhts", q, k[:, :, kv])
    b = np.arange(q.shape[0])
    fewer = args["keep"] & (np.arange(n)[None, :] != args["j"][:, None])
    ratio = np.exp(s[b, :, :, args["j"]] - logsumexp(s, fewer[:, None, None, :])).max(axis=(0, 1))
    return ((2 + ratio) * one + 2 * ratio * vmax * U64 * (2 * (D + 3) * sigma + n + 6),)


register_claim(Claim(
    key="eviction.remove_one",
    statement="removing one token j from a cache changes the output by p_j / (1 - p_j) (o - v_j)",
    subject="eviction cache_attention (softmax_attention over a kept set)",
    default_impl=cache_attention,
    relation=_remove_one,
    inputs=remove_one_inputs,
    bound=_remove_one_bound,
    rule="derived float64 bound (2 + r) e_o + 2 r vmax u (2(D+3) sigma + n + 6), e_o = u vmax (4(D+3) sigma + 4n + 8), "
         "r = p_j / (1 - p_j)",
))


# ----------------------------------------------------------------------------- claims: TOVA

def _tova_replay(impl, args):
    res = impl(**args)
    B, T, H = np.shape(args["q"])[:3]
    P, K = args.get("prefill_len", 0), args["budget"]
    kept = res.kept[:, :, 0] > 0
    sets = attended(res.kept, P)[:, :, 0]
    delta = 4 * H * U64
    expected = np.broadcast_to(np.tri(T), (B, T, T)).copy()
    argmax_kept = np.ones((B, T))
    for b in range(B):
        for t in range(max(P - 1, 0), T):
            cand = sets[b, t]
            scores = res.rows[b, t].mean(axis=0)[cand]
            expected[b, t] = replayed(kept[b, t], cand, scores, min(cand.sum(), K), delta)
            inside = scores[kept[b, t][cand]]
            argmax_kept[b, t] = float(inside.size > 0 and inside.max() >= scores.max() - delta)
    return (res.kept.astype(np.float64), argmax_kept), (expected[:, :, None], np.ones((B, T)))


register_claim(Claim(
    key="eviction.tova.argmin",
    statement="TOVA keeps exactly the top K of the head-averaged last attention row (one eviction: its argmin, "
              "ties to the highest index), never evicts its argmax, and keeps one set for every head (G = 1); "
              "near-ties (gaps <= 4Hu) are ambiguous",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_tova_replay,
    inputs=lambda: decode_inputs(policy="tova"),
    bound=None,
    rule="exact (selection replayed from the recorded rows; a near-tie may resolve either way)",
    exactness="exact",
    outputs=("kept", "argmax kept"),
))


def _tova_permuted(impl, args):
    probs, positions, K = args["probs"], args["positions"], args["budget"]
    heads, slots = args["head_perm"], args["slot_perm"]
    B, H, n = probs.shape
    keep = impl(probs, positions, budget=K)
    moved = impl(probs[:, heads][..., slots], positions[:, slots], budget=K)
    expected = np.asarray(keep, dtype=np.float64)[:, slots].copy()
    scores = probs.mean(axis=1)[:, slots]
    delta, count = 4 * H * U64, min(n, K)
    for b in range(B):
        if count < n:
            ranked = np.sort(scores[b])[::-1]
            if ranked[count - 1] - ranked[count] <= delta and valid_selection(np.asarray(moved)[b] > 0, scores[b], count,
                                                                     delta):
                expected[b] = moved[b]
    return (moved,), (expected,)


register_claim(Claim(
    key="eviction.tova.permutation",
    statement="TOVA's selection does not depend on the order of the heads or of the cache's slots "
              "(slot-ordered cache, token indices carried along); near-ties (gaps <= 4Hu) are ambiguous",
    subject="eviction tova_select",
    default_impl=tova_select,
    relation=_tova_permuted,
    inputs=selection_inputs,
    bound=None,
    rule="exact (a near-tie may resolve either way)",
    exactness="exact",
    outputs=("keep",),
))


# ----------------------------------------------------------------------------- claims: rule-based policies

def _window_family(impl, args):
    base = without(args, ("policy",))
    window = impl(**base, policy="window")
    others = [impl(**base, policy="tova_by_position"), impl(**base, policy="h2o", heavy=0),
              impl(**base, policy="streaming_llm", sinks=0)]
    lhs = tuple(window.outputs for _ in others) + tuple(
        np.broadcast_to(window.kept, o.kept.shape).astype(np.float64) for o in others)
    rhs = tuple(o.outputs for o in others) + tuple(o.kept.astype(np.float64) for o in others)
    return lhs, rhs


register_claim(Claim(
    key="eviction.window_equivalences",
    statement="Window == TOVA scored by position == H2O with no heavy hitters == StreamingLLM with no sinks "
              "(kept sets and outputs, bit for bit)",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_window_family,
    inputs=lambda: decode_inputs(policy="window"),
    bound=None,
    rule="exact (the same kept sets give the same computation)",
    exactness="exact",
    outputs=("out: tova by position", "out: h2o heavy=0", "out: streaming sinks=0", "kept: tova by position",
             "kept: h2o heavy=0", "kept: streaming sinks=0"),
))


def _sinks(impl, args):
    res = impl(**args)
    B, T = np.shape(args["q"])[:2]
    s, K = args["sinks"], args["budget"]
    kept = res.kept[:, :, 0].astype(np.float64)
    j, t = np.arange(T)[None, :], np.arange(T)[:, None]
    sinks = (j < s) & (j <= t)
    recent = (j > t - (K - s)) & (j <= t)
    zero = impl(**{**args, "sinks": 0})
    window = impl(**without(args, ("sinks", "policy")), policy="window")
    return ((np.where(sinks, kept, 1.0), np.where(recent, kept, 1.0), zero.outputs, zero.kept.astype(np.float64)),
            (np.ones((B, T, T)), np.ones((B, T, T)), window.outputs, window.kept.astype(np.float64)))


register_claim(Claim(
    key="eviction.streaming_sinks",
    statement="StreamingLLM never evicts a sink once seen (j < s kept at every t >= j), always keeps the "
              "K - s most recent tokens, and with s = 0 is Window",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_sinks,
    inputs=lambda: decode_inputs(policy="streaming_llm"),
    bound=None,
    rule="exact",
    exactness="exact",
    outputs=("sinks kept", "recent kept", "out (s = 0 vs window)", "kept (s = 0 vs window)"),
))


def cache_content_outputs(args: dict, kept: np.ndarray) -> np.ndarray:
    """Each row's attention recomputed from its cache contents alone: keys rotated to their slots
    0..n-1 in index order, the query to slot n-1 (offset 0, whatever ``position_offset`` is)."""
    q, k, v = (np.asarray(args[n], dtype=np.float64) for n in ("q", "k", "v"))
    B, T, H, _ = q.shape
    group, kv = head_groups(args, kept.shape[2])
    sets = attended(kept, args.get("prefill_len", 0))
    base = args.get("rope_base", 10000.0)
    out = np.zeros(q.shape[:3] + (v.shape[3],))
    for b in range(B):
        for t in range(T):
            for h in range(H):
                idx = np.flatnonzero(sets[b, t, group[h]])
                slots = np.arange(idx.size)
                keys = apply_rope(k[b, idx, kv[h]][None, :, None], slots, base=base)[0, :, 0]
                query = apply_rope(q[b, t, h][None, None, None], slots[-1:], base=base)[0, 0, 0]
                s = score_scale(args) * keys @ query
                p = np.exp(s - s.max())
                out[b, t, h] = (p / p.sum()) @ v[b, idx, kv[h]]
    return out


def _translation(impl, args):
    res = impl(**args)
    return (res.outputs,), (cache_content_outputs(args, res.kept),)


register_claim(Claim(
    key="eviction.pre_shift_translation",
    statement="with StreamingLLM's position shift (rope='pre_shift') every output depends only on the cache's "
              "contents: it equals attention over the cached tokens at slots 0..n-1, whatever the absolute "
              "positions (translation invariance)",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_translation,
    inputs=lambda: decode_inputs(policy="streaming_llm", rope="pre_shift", head_dim=st.integers(1, 3),
                                 position_offset=st.sampled_from([0, 7, 1000, 100000])),
    bound=lambda args, rhs: (value_max(args) * weight_error(args),),
    rule=OUTPUT_RULE,
))


def _rerotation(impl, args):
    k, p, i, base = args["k"], args["p"], args["i"], args["base"]
    return (impl(impl(k, p, base=base), i - p, base=base),), (impl(k, i, base=base),)


register_claim(Claim(
    key="eviction.rerotation",
    statement="re-rotating a key cached at position p to slot i composes: R(i - p) R(p) k = R(i) k, also for "
              "i < p (a key moved to an earlier slot after an eviction)",
    subject="positional apply_rope",
    default_impl=apply_rope,
    relation=_rerotation,
    inputs=rerotation_inputs,
    bound=lambda args, rhs: (4 * U64 * np.abs(args["k"]).max() * (6 * np.maximum(args["p"], args["i"]) + 6),),
    rule="derived float64 bound 4u max|k| (6 theta + 6), theta = max(p, i): three rotations of "
         "u |x| (6 theta + 6) each, the second of a vector up to sqrt(2) larger",
))


# ----------------------------------------------------------------------------- claims: H2O, batch, shift

def _h2o(impl, args):
    res = impl(**args)
    q = np.asarray(args["q"])
    B, T, H = q.shape[:3]
    P, K, heavy = args.get("prefill_len", 0), args["budget"], args["heavy"]
    G = res.kept.shape[2]
    first = max(P - 1, 0)
    A = np.zeros((B, T, H, T))
    for t in range(first, T):
        prefix = {**args, "q": q[:, :t + 1], "k": args["k"][:, :t + 1], "v": args["v"][:, :t + 1]}
        A[:, t, :, :t + 1] = impl(**prefix).state
    previous = np.concatenate([np.zeros((B, 1, H, T)), A[:, :-1]], axis=1)
    previous[:, first] = 0.0
    decrease = np.minimum(A - previous, 0.0)
    steps = np.arange(T) >= first
    sums = np.where(steps[None, :, None], A.sum(axis=-1), 0.0)
    counts = np.where(steps, np.arange(T) + 1.0, 0.0)
    kept = res.kept > 0
    sets = attended(res.kept, P)
    expected = np.broadcast_to(np.tri(T)[None, :, None, :], kept.shape).copy()
    per = H // G
    grouped = A.reshape(B, T, G, per, T).sum(axis=3)
    recent = K - heavy
    for t in range(first, T):
        delta = 4 * per * (t + 1) * T * U64
        for b in range(B):
            for g in range(G):
                cand = sets[b, t, g]
                idx = np.flatnonzero(cand)
                scores = np.where(idx > t - recent, np.inf, grouped[b, t, g, idx])
                expected[b, t, g] = replayed(kept[b, t, g], cand, scores, min(idx.size, K), delta)
    j, tt = np.arange(T)[None, :], np.arange(T)[:, None]
    young = ((j > tt - recent) & (j <= tt))[None, :, None, :]
    return ((decrease, sums, res.kept.astype(np.float64), np.where(young, res.kept, 1.0)),
            (np.zeros(A.shape), np.broadcast_to(counts[None, :, None], sums.shape), expected,
             np.ones(res.kept.shape)))


def _h2o_bound(args: dict, rhs: tuple) -> tuple:
    T = np.shape(args["q"])[1]
    t = np.arange(T)
    return 0.0, U64 * (t + 1) * (3 * T + 4), 0.0, 0.0


register_claim(Claim(
    key="eviction.h2o_scores",
    statement="H2O's accumulated scores never decrease, per head sum over every token ever seen to the number "
              "of queries processed, select the top K by the tie rule after the recent window, which is "
              "always kept",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_h2o,
    inputs=lambda: decode_inputs(policy="h2o"),
    bound=_h2o_bound,
    rule="increments, kept, recent: exact (a near-tie of the replayed selection may resolve either way); "
         "sums: derived bound u (t+1)(3T + 4)",
    outputs=("score decrease", "score sum per head", "kept (replayed)", "recent kept"),
))


def _layer(args: dict, layer: int) -> dict:
    return {**args, "q": args["q"][layer], "k": args["k"][layer], "v": args["v"][layer]}


def _independent(impl, args):
    L, B = np.shape(args["q"])[:2]
    whole = impl(**args)
    single = [[impl(**{**args, **{n: args[n][l:l + 1, b:b + 1] for n in ("q", "k", "v")}})[0] for b in range(B)]
              for l in range(L)]
    stack = lambda results, field: np.stack([np.asarray(getattr(r, field), dtype=np.float64)  # noqa: E731
                                             for r in results])
    singles = lambda field: np.stack([np.concatenate([getattr(r, field) for r in row]).astype(np.float64)  # noqa: E731
                                      for row in single])
    return (stack(whole, "outputs"), stack(whole, "kept")), (singles("outputs"), singles("kept"))


def _independent_bound(args: dict, rhs: tuple) -> tuple:
    bounds = [trajectory_bound(args["policy"], _layer(args, l)) for l in range(np.shape(args["q"])[0])]
    return tuple(np.max([b[i] for b in bounds], axis=0) for i in range(2))


register_claim(Claim(
    key="eviction.batch_independent",
    statement="batch elements and layers are independent: one run over (L, B) equals L * B runs of one",
    subject="eviction simulate_layers",
    default_impl=decode_layers,
    relation=_independent,
    inputs=lambda: layered_inputs(),
    bound=_independent_bound,
    rule=TRAJECTORY_RULE,
    outputs=("out", "kept"),
    time_axis=2,
))


def _shifted(args: dict) -> tuple[dict, dict]:
    """The run, and the same run with one more feature (q: c / scale, k: 1): row t of head h's
    logits gains the constant c[b, t, h] = args["shift"][b, t, h]."""
    scale = score_scale(args)
    base = {**without(args, ("shift",)), "scale": scale}
    q, k = np.asarray(args["q"]), np.asarray(args["k"])
    moved = {**base, "q": np.concatenate([q, (args["shift"] / scale)[..., None]], axis=-1),
             "k": np.concatenate([k, np.ones(k.shape[:3] + (1,))], axis=-1)}
    return base, moved


def _logit_shift(impl, args):
    base, moved = _shifted(args)
    a, b = impl(**moved), impl(**base)
    return (a.outputs, a.kept.astype(np.float64)), (b.outputs, b.kept.astype(np.float64))


def _logit_shift_bound(args: dict, rhs: tuple) -> tuple:
    base, moved = _shifted(args)
    name = args["policy"]
    w = weight_error(moved)
    start = onset(ambiguous_steps(name, base, w=w))
    out, kept = value_max(args) * w, np.zeros(len(w))
    out[start + 1:] = np.inf
    kept[start:] = np.inf
    return out, kept


@st.composite
def _shift_inputs(draw):
    args = draw(decode_inputs(rope=None))
    magnitude = draw(st.sampled_from([1.0, 1e3]))
    args["shift"] = draw(generators()).uniform(-magnitude, magnitude, np.shape(args["q"])[:3])
    return args


register_claim(Claim(
    key="eviction.logit_shift",
    statement="adding a constant to a head's logits (per query row) changes no selection and no output",
    subject="eviction simulate_decoding",
    default_impl=decode,
    relation=_logit_shift,
    inputs=_shift_inputs,
    bound=_logit_shift_bound,
    rule=TRAJECTORY_RULE + ", sigma_t including |c|",
    outputs=("out", "kept"),
))
