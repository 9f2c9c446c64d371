"""KV-cache eviction: one decoding form per policy, derived float64 bounds, claims, quality sweeps.

Forms. ``eviction.<policy>.decode`` (window, streaming_llm, tova, tova_kvpress, h2o, scissorhands,
snapkv) takes ``simulate_decoding``'s arguments, with the policy's parameters as keywords
(``sinks``, ``heavy``, ...), and returns two outputs along time: ``out`` (B, T, H, Dv), the
attention over the bounded cache, and ``kept`` (B, T, G, T) as float (1 = token j is in group
g's cache after step t). A batched GPU selection (CuPy, torch) is checked with
``equiv.check(candidate, "eviction.tova.decode")`` like any other form (docs/eviction.md).

Float64 bound of the outputs (u = 2**-53). Row t attends over at most n_t = t + 1 keys; its
scores are bounded by sigma_t = scale * max_{b,h} sum_d |q~_td| max_{j<=t} |k~_jd|, where x~ is
|x| with RoPE's pair partner added (|x_d| + |x_d'| bounds either rotation of the pair). A score
is computed within u sigma_t a_t with a_t = D + 3 (the dot product, as in attention's bound)
plus, with RoPE at angles up to theta_t = position_offset + t, 12 (theta_t + 1) for rotating q
and k (each rotated pair within u (6 theta + 6) of exact, docs/tolerance.md), doubled under
``pre_shift`` (a candidate may re-rotate cached keys, R(i - p) R(p) k: two rotations). As for
attention, two correct computations of an attention weight of row t then differ by at most

    w_t = 2u (4 a_t sigma_t + 4 n_t + 8)

and of an output by vmax w_t (vmax = max |v|).

Selections and near-ties. ``kept`` is compared exactly, except after an ambiguous step: a step
whose selection margin (``DecodeResult.margins``: last kept score minus first evicted score, per
batch element and group) is <= delta_t, where delta_t is twice the most two correct computations
of a score can differ (delta_t > 0 required; with delta_t = 0 the scores are exact and the tie
rule decides):

- TOVA (and kvpress's): the head mean of weights, delta_t = 2 (w_t + 2 H u);
- H2O: (H/G) sums of t + 1 accumulated rows (each add rounds by at most u (t + 1)),
  delta_t = 2 ((H/G) (sum_{s<=t} w_s + 2 (t + 1)^2 u) + (H/G)^2 (t + 1) u);
- Scissorhands: integer counts; a count is uncertain by the number of indicators P[h, s, j] <
  tau_s in its window whose weight lies within w_s + 2u tau_s of tau_s, delta_t = 2 * the largest
  such uncertainty (0 when no weight is that close);
- SnapKV: the pooled sums of the window's rows, delta = 2 (sum_window w_s + (W + kernel + H) W u);
- Window and StreamingLLM: no score (margin inf), never ambiguous.

A candidate may resolve an ambiguous step either way, and its cache then legitimately differs
from the reference's, so from the first ambiguous step t* on ``kept`` is unbounded, and ``out``
after it (out[t*] is computed before the selection at t*). Nothing else is loosened.

Claims whose bound depends on the implementation's own kept sets (the evicted attention mass)
return that quantity as an extra output on both sides, compared exactly with itself, so that
``bound(args, rhs)`` can read it.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.budget import Budget
from seqcheck.equiv.engine import compare
from seqcheck.equiv.registry import (Claim, Form, Implementation, Sweep, register_claim, register_form,
                                     register_implementation, without)
from seqcheck.properties.eviction import (POLICY_NAMES, decode_inputs, eviction_data, form_inputs, layered_inputs,
                                          remove_one_inputs, rerotation_inputs, selection_inputs)
from seqcheck.properties.arrays import generators
from seqcheck.reference.attention import softmax_attention
from seqcheck.reference.arith import U64
from seqcheck.reference.eviction import POLICIES, TOVA, simulate_decoding, simulate_layers, topk_lowest_index
from seqcheck.reference.positional import apply_rope

POLICY_OPTIONS = ("sinks", "heavy", "recent", "history", "drop", "threshold", "window", "kernel_size", "pooling",
                  "heads")
RUN_OPTIONS = ("budget", "prefill_len", "rope", "rope_base", "position_offset", "scale")
NO_ROPE_SHIFT = st.sampled_from([None, "post"])


class TOVAByPosition(TOVA):
    """TOVA's selection machinery scored by the token index (the newest win): Window's rule."""

    name = "tova_by_position"

    def scores(self, state, t, cand, budget):
        return cand.astype(np.float64)


_POLICIES = {**POLICIES, TOVAByPosition.name: TOVAByPosition}


def make_policy(name: str, **options):
    """The policy ``name`` (``POLICIES``, or "tova_by_position") with its parameters."""
    try:
        return _POLICIES[name](**options)
    except KeyError:
        raise ValueError(f"policy: expected one of {sorted(_POLICIES)}, got {name!r}") from None


def decode(q, k, v, *, policy, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
           return_rows=True, **options):
    """``simulate_decoding`` with the policy given by name and parameters (reproducers stay literal)."""
    return simulate_decoding(q, k, v, policy=make_policy(policy, **options), budget=budget, prefill_len=prefill_len,
                             rope=rope, rope_base=rope_base, position_offset=position_offset, scale=scale,
                             return_rows=return_rows)


def decode_layers(q, k, v, *, policy, **args):
    """``simulate_layers`` (q (L, B, T, H, D)) with the policy given by name and parameters."""
    options = {name: args.pop(name) for name in POLICY_OPTIONS if name in args}
    return simulate_layers(q, k, v, policy=make_policy(policy, **options), **args)


def cache_attention(q, k, v, *, keep, scale=None):
    """Every query row (B, Tq, H, D) attending over the kept keys (``keep`` (B, n) bool) of one cache."""
    return softmax_attention(q, k, v, scale=scale, key_padding_mask=keep)


def tova_select(probs, positions, *, budget):
    """TOVA's selection from a cache stored in any slot order: ``probs`` (B, H, n) the last query's
    attention over the slots, ``positions`` (B, n) their token indices; keep (B, n) as float, in slot
    order. Built on ``TOVA.select`` (index order, ties to the lowest token index)."""
    probs, positions = np.asarray(probs, dtype=np.float64), np.asarray(positions)
    B, H, n = probs.shape
    state = np.zeros((B, H, int(positions.max()) + 1))
    np.put_along_axis(state, np.broadcast_to(positions[:, None], probs.shape), probs, axis=-1)
    order = np.argsort(positions, axis=-1, kind="stable")
    cand = np.take_along_axis(positions, order, axis=-1)[:, None]
    keep_sorted, _ = TOVA().select(state, state.shape[-1] - 1, cand, budget, False)
    keep = np.zeros((B, n))
    np.put_along_axis(keep, order, keep_sorted[:, 0].astype(np.float64), axis=-1)
    return keep


def run_options(args: dict) -> dict:
    return {name: args[name] for name in RUN_OPTIONS if name in args}


def policy_options(args: dict) -> dict:
    return {name: args[name] for name in POLICY_OPTIONS if name in args}


# ----------------------------------------------------------------------------- bounds

def _paired(x, rope):
    """|x|, plus the RoPE pair partner's |x| ("half" pairing) when rotated."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    if rope is None:
        return a
    half = a.shape[-1] // 2
    return a + np.concatenate([a[..., half:], a[..., :half]], axis=-1)


def _scale(args: dict) -> float:
    return args.get("scale") or 1.0 / np.sqrt(np.shape(args["q"])[-1])


def score_magnitude(args: dict) -> np.ndarray:
    """sigma_t (T,): scale * max_{b,h} sum_d |q~_td| max_{j<=t} |k~_jd| (module docstring)."""
    q, k = np.asarray(args["q"]), np.asarray(args["k"])
    qa = _paired(q, args.get("rope")).reshape((-1,) + q.shape[-3:])
    ka = _paired(k, args.get("rope")).reshape((-1,) + k.shape[-3:])
    running = np.repeat(np.maximum.accumulate(ka, axis=1), q.shape[-2] // k.shape[-2], axis=2)
    return _scale(args) * np.einsum("bthd,bthd->bth", qa, running).max(axis=(0, 2))


def weight_error(args: dict, extra_sigma=0.0) -> np.ndarray:
    """w_t (T,): two correct computations of an attention weight of row t differ by at most this."""
    q = np.asarray(args["q"])
    T, D = q.shape[-3], q.shape[-1]
    t = np.arange(T)
    sigma = score_magnitude(args) + extra_sigma
    rotations = {None: 0, "post": 12, "pre_shift": 24}[args.get("rope")]
    a = D + 3 + rotations * (args.get("position_offset", 0) + t + 1)
    return 2 * U64 * (4 * a * sigma + 4 * (t + 1) + 8)


def _vmax(args: dict) -> float:
    return float(np.abs(args["v"]).max(initial=0.0))


def attended(kept: np.ndarray, prefill: int) -> np.ndarray:
    """The keys each row t attended to, (B, T, G, T) bool: the prefix 0..t for prompt rows (t < P),
    C_t = kept_{t-1} ∪ {t} for decoded rows (the candidates of step t's selection)."""
    B, T, G, _ = kept.shape
    sets = np.zeros(kept.shape, dtype=bool)
    sets[:, :prefill] = np.tri(T, dtype=bool)[:prefill][None, :, None, :]
    start = max(prefill, 1)
    sets[:, start:] = kept[:, start - 1:T - 1]
    rows = np.arange(prefill, T)
    sets[:, rows, :, rows] = True
    return sets


def score_error(name: str, options: dict, args: dict, res, w: np.ndarray) -> np.ndarray:
    """delta (B, T, G): twice the most two correct computations of a selection score differ by."""
    B, T, G = res.margins.shape
    H = np.shape(args["q"])[2]
    per = H // G
    t = np.arange(T)
    if name in ("window", "streaming_llm"):
        return np.zeros((B, T, G))
    if name in ("tova", "tova_kvpress", "tova_by_position"):
        return np.broadcast_to(2 * (w + 2 * H * U64)[None, :, None], (B, T, G))
    if name == "h2o":
        error = per * (np.cumsum(w) + 2 * (t + 1) ** 2 * U64) + per ** 2 * (t + 1) * U64
        return np.broadcast_to((2 * error)[None, :, None], (B, T, G))
    if name == "scissorhands":
        return 2 * _count_uncertainty(options, args, res, w)
    if name == "snapkv":
        P, W = args.get("prefill_len", 0), options.get("window", 32)
        delta = np.zeros((B, T, G))
        if P >= 1:
            window = w[max(P - W, 0):P].sum()
            delta[:, P - 1] = 2 * (window + (W + options.get("kernel_size", 5) + H) * W * U64)
        return delta
    raise ValueError(f"policy: no score-error rule for {name!r}")


def _count_uncertainty(options: dict, args: dict, res, w: np.ndarray) -> np.ndarray:
    """Scissorhands: per step and group, the most indicators of one token, within its history
    window, whose weight lies within w_s + 2u tau_s of the threshold tau_s."""
    rows, kept = res.rows, res.kept
    B, T, G, _ = kept.shape
    H = rows.shape[2]
    P = args.get("prefill_len", 0)
    sets = attended(kept, P)[:, :, np.arange(H) // (H // G)]  # (B, T, H, T)
    s = np.arange(T)
    if options.get("threshold", "uniform") == "uniform":
        tau = 1.0 / sets.sum(axis=-1, keepdims=True)
    else:
        tau = (1.0 / (s + 1))[None, :, None, None]
    near = sets & (np.abs(rows - tau) <= w[None, :, None, None] + 2 * U64 * tau)
    counts = near.reshape(B, T, G, H // G, T).sum(axis=3)  # (B, T, G, T)
    history = options["history"]
    running = np.concatenate([np.zeros((B, 1, G, T)), np.cumsum(counts, axis=1)], axis=1)
    windowed = running[:, 1:] - running[:, np.maximum(s + 1 - history, 0)]
    return windowed.max(axis=-1)


def ambiguous_steps(name: str, args: dict, res=None, w=None) -> np.ndarray:
    """(T,) bool: steps whose reference selection margin is <= delta_t (> 0) for some batch element
    and group. ``args`` are the run's (policy parameters included, ``policy`` ignored)."""
    options = policy_options(args)
    if res is None or (name == "scissorhands" and res.rows is None):
        res = simulate_decoding(args["q"], args["k"], args["v"], policy=make_policy(name, **options),
                                return_rows=name == "scissorhands", **run_options(args))
    w = weight_error(args) if w is None else w
    delta = score_error(name, options, args, res, w)
    return ((delta > 0) & (res.margins <= delta)).any(axis=(0, 2))


def onset(ambiguous: np.ndarray) -> int:
    """The first ambiguous step (T when there is none)."""
    hits = np.flatnonzero(ambiguous)
    return int(hits[0]) if hits.size else len(ambiguous)


def trajectory_bound(name: str, args: dict, *, extra_sigma=0.0) -> tuple:
    """(out bound, kept bound) per step: vmax w_t and 0 up to the first ambiguous step t*; kept
    unbounded from t*, out after it."""
    w = weight_error(args, extra_sigma)
    start = onset(ambiguous_steps(name, args, w=w))
    out, kept = _vmax(args) * w, np.zeros(len(w))
    out[start + 1:] = np.inf
    kept[start:] = np.inf
    return out, kept


TRAJECTORY_RULE = ("outputs: derived float64 bound vmax w_t, w_t = 2u (4 a_t sigma_t + 4(t+1) + 8), a_t = D + 3 "
                   "(+ 12(theta_t + 1) with RoPE, 24(theta_t + 1) with pre_shift); kept: exact; both unbounded "
                   "from the first step whose selection margin <= delta_t (an ambiguous near-tie; docs/eviction.md)")
OUTPUT_RULE = "derived float64 bound vmax w_t, w_t = 2u (4 a_t sigma_t + 4(t+1) + 8) (a_t: module docstring)"


# ----------------------------------------------------------------------------- forms

def _form_fn(name: str):
    def fn(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
           **options):
        res = simulate_decoding(q, k, v, policy=POLICIES[name](**options), budget=budget, prefill_len=prefill_len,
                                rope=rope, rope_base=rope_base, position_offset=position_offset, scale=scale,
                                return_rows=False)
        return res.outputs, res.kept.astype(np.float64)

    fn.__name__ = fn.__qualname__ = f"{name}_decode"
    fn.__doc__ = (f"{name} decoding (``simulate_decoding`` with ``POLICIES[{name!r}](**options)``): "
                  "(out (B, T, H, Dv), kept (B, T, G, T) as float).")
    return fn


FORM_STATEMENTS = {
    "window": "sliding-window cache: the newest budget tokens",
    "streaming_llm": "StreamingLLM: attention sinks plus the recent window",
    "tova": "TOVA: keep the top budget by the head-averaged last attention row",
    "tova_kvpress": "kvpress's TOVA: TOVA with the newest token always kept",
    "h2o": "H2O: heavy hitters by accumulated attention plus the recent window, per kv head",
    "scissorhands": "Scissorhands: evict the tokens most often below the threshold in the history window",
    "snapkv": "SnapKV: compress the prompt once by its observation window's pooled attention",
}

for _name in POLICY_NAMES:
    _fn = _form_fn(_name)
    globals()[_fn.__name__] = _fn
    register_form(Form(
        key=f"eviction.{_name}.decode",
        fn=_fn,
        inputs=form_inputs(_name),
        bound=functools.partial(lambda name, args, expected: trajectory_bound(name, args), _name),
        rule=TRAJECTORY_RULE,
        statement=f"{FORM_STATEMENTS[_name]}; outputs over the bounded cache and the kept sets, step by step",
        data_args=("q", "k", "v"),
        outputs=("out", "kept"),
    ))


# ----------------------------------------------------------------------------- helpers of the claims

def _at_positions(x, args: dict):
    """x rotated at the absolute positions position_offset + t (RoPE "post"; none without RoPE)."""
    if args.get("rope") is None:
        return np.asarray(x, dtype=np.float64)
    positions = args.get("position_offset", 0) + np.arange(np.shape(x)[1])
    return apply_rope(x, positions, base=args.get("rope_base", 10000.0))


def _heads(args: dict, groups: int):
    H, Hkv = np.shape(args["q"])[2], np.shape(args["k"])[2]
    return np.arange(H) // (H // groups), np.arange(H) // (H // Hkv)


def _logsumexp(s, mask, axis=-1):
    top = np.where(mask, s, -np.inf).max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.exp(np.where(mask, s - top, -np.inf)).sum(axis=axis, keepdims=True)) + top)[..., 0]


def _full_scores(args: dict, rows=slice(None)):
    """scale * q~_t . k~_j at absolute positions, (B, H, rows, keys): the keys j < rows.stop (all
    when rows.stop is None), the only ones a causal row t < rows.stop sees."""
    q, k = _at_positions(args["q"], args), _at_positions(args["k"], args)
    _, kv = _heads(args, 1)
    qh = q[:, rows].transpose(0, 2, 1, 3)
    kh = k[:, :rows.stop][:, :, kv].transpose(0, 2, 3, 1)
    return _scale(args) * (qh @ kh)


def renormalised_outputs(args: dict, kept: np.ndarray) -> np.ndarray:
    """Row t's full causal softmax p_tj, renormalised over the attended set C_t, applied to v."""
    T = np.shape(args["q"])[1]
    group, kv = _heads(args, kept.shape[2])
    sets = attended(kept, args.get("prefill_len", 0))[:, :, group].transpose(0, 2, 1, 3)  # (B, H, T, T)
    s = _full_scores(args)
    logp = s - _logsumexp(s, np.tri(T, dtype=bool))[..., None]
    weights = np.exp(np.where(sets, logp - _logsumexp(logp, sets)[..., None], -np.inf))
    return np.einsum("bhts,bshd->bthd", weights, np.asarray(args["v"], dtype=np.float64)[:, :, kv])


def evicted_mass(args: dict, kept: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """eps (B, T, H), the full causal softmax mass of row t outside its attended set C_t, and the
    full causal attention output (B, T, H, Dv), keys at absolute positions; rows in blocks.

    With e_tj = exp(s_tj - max_j s_tj) over j <= t: eps_t = sum_{j not in C_t} e_tj / sum_j e_tj
    (a ratio of sums of positive terms: no cancellation), out_t = sum_j e_tj v_j / sum_j e_tj.
    """
    B, T = np.shape(args["q"])[:2]
    group, kv = _heads(args, kept.shape[2])
    v = np.asarray(args["v"], dtype=np.float64)[:, :, kv].transpose(0, 2, 1, 3)  # (B, H, T, Dv)
    sets = attended(kept, args.get("prefill_len", 0))
    eps, full = np.zeros((B, T, len(group))), np.zeros((B, T, len(group), v.shape[-1]))
    for start in range(0, T, block):
        rows = slice(start, min(start + block, T))
        s = _full_scores(args, rows)  # (B, H, r, rows.stop)
        causal = np.arange(rows.stop)[None, :] <= np.arange(start, rows.stop)[:, None]
        s = np.where(causal, s, -np.inf)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        total = e.sum(axis=-1)
        seen = sets[:, rows, :, :rows.stop][:, :, group].transpose(0, 2, 1, 3)
        outside = np.where(seen, 0.0, e).sum(axis=-1)
        eps[:, rows] = (outside / total).transpose(0, 2, 1)
        full[:, rows] = ((e @ v[:, :, :rows.stop]) / total[..., None]).transpose(0, 2, 1, 3)
    return eps, full


def _valid(keep, scores, count, delta) -> bool:
    """A kept set of the right size whose every score is >= every evicted score - delta."""
    if keep.sum() != count:
        return False
    if keep.all() or not keep.any():
        return True
    return scores[keep].min() >= scores[~keep].max() - delta


def _replayed(kept_t, cand, scores, count, delta):
    """The top ``count`` of ``scores`` over ``cand`` (tie rule), or ``kept_t`` itself when the
    reference's margin is <= delta and ``kept_t`` is a valid selection within delta."""
    expected = np.zeros(kept_t.shape)
    idx = np.flatnonzero(cand)
    if count >= idx.size:
        expected[idx] = 1.0
        return expected
    expected[idx[topk_lowest_index(scores, count)]] = 1.0
    ranked = np.sort(scores)[::-1]
    inside = not np.asarray(kept_t)[~cand].any()
    if ranked[count - 1] - ranked[count] <= delta and inside and _valid(kept_t[idx] > 0, scores, count, delta):
        return kept_t.astype(np.float64)
    return expected


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
    full = softmax_attention(_at_positions(args["q"], args), _at_positions(args["k"], args), args["v"],
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
    bound=lambda args, rhs: (_vmax(args) * weight_error(args), 0.0),
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
    bound=lambda args, rhs: (_vmax(args) * weight_error(args),),
    rule=OUTPUT_RULE,
))


def _mass(impl, args):
    res = impl(**args)
    eps, full = evicted_mass(args, res.kept)
    return (res.outputs, eps), (full, eps)


def mass_bound(args: dict, rhs: tuple) -> tuple:
    """2 vmax (eps_t + w_t) + vmax w_t per step (eps_t: the largest evicted mass of row t over b, h)."""
    w, eps = weight_error(args), np.maximum(rhs[1], 0.0).max(axis=(0, 2))
    return _vmax(args) * (2 * (eps + w) + w), 0.0


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
    _, kv = _heads(args, 1)
    scale = _scale(args)
    o = impl(q, k, v, keep=keep, scale=args["scale"])
    o_minus = impl(q, k, v, keep=fewer, scale=args["scale"])
    b = np.arange(B)
    s = scale * np.einsum("bthd,bshd->bhts", q, k[:, :, kv])  # (B, H, Tq, n)
    s_j = s[b, :, :, j]  # (B, H, Tq)
    ratio = np.exp(s_j - _logsumexp(s, fewer[:, None, None, :]))  # p_j / (1 - p_j)
    v_j = v[b, j][:, kv]  # (B, H, Dv)
    return (o_minus - o,), (ratio.transpose(0, 2, 1)[..., None] * (o - v_j[:, None]),)


def _remove_one_bound(args: dict, rhs: tuple) -> tuple:
    q, k = np.asarray(args["q"]), np.asarray(args["k"])
    D, n = q.shape[-1], k.shape[1]
    _, kv = _heads(args, 1)
    sigma = _scale(args) * np.einsum("bthd,bshd->bts", np.abs(q), np.abs(k[:, :, kv])).max(axis=(0, 2))
    vmax = _vmax(args)
    one = U64 * vmax * (4 * (D + 3) * sigma + 4 * n + 8)
    s = _scale(args) * np.einsum("bthd,bshd->bhts", q, k[:, :, kv])
    b = np.arange(q.shape[0])
    fewer = args["keep"] & (np.arange(n)[None, :] != args["j"][:, None])
    ratio = np.exp(s[b, :, :, args["j"]] - _logsumexp(s, fewer[:, None, None, :])).max(axis=(0, 1))
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
            expected[b, t] = _replayed(kept[b, t], cand, scores, min(cand.sum(), K), delta)
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
            if ranked[count - 1] - ranked[count] <= delta and _valid(np.asarray(moved)[b] > 0, scores[b], count,
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
    group, kv = _heads(args, kept.shape[2])
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
                s = _scale(args) * keys @ query
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
    bound=lambda args, rhs: (_vmax(args) * weight_error(args),),
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
                expected[b, t, g] = _replayed(kept[b, t, g], cand, scores, min(idx.size, K), delta)
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
    scale = _scale(args)
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
    out, kept = _vmax(args) * w, np.zeros(len(w))
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


# ----------------------------------------------------------------------------- quality: error against budget

QUALITY_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
QUALITY_DATA = {"random": "random data", "heavy_sinks": "heavy + sinks"}
QUALITY_T = 4096
"""T of the report's quality sweeps (70 runs of 2 to 11 s each on one core of the development
machine; the report spreads them over its workers); ``quality_series`` computes a series at any T."""


def quality_seed(data: str) -> int:
    """The seed of the quality data ``data``: the same for every policy, so the report's plot of a
    data kind compares the policies on the same tokens."""
    return zlib.crc32(f"eviction.quality.{data}".encode())


def quality_options(policy: str, budget: int) -> dict:
    """The policies' parameters at cache size K: StreamingLLM 4 sinks; H2O K/2 heavy hitters (the
    paper's half and half); Scissorhands recent K/4, history 64; SnapKV window min(32, K/2), kernel 5."""
    return {"streaming_llm": {"sinks": min(4, budget)}, "h2o": {"heavy": budget // 2},
            "scissorhands": {"recent": budget // 4, "history": 64},
            "snapkv": {"window": max(1, min(32, budget // 2)), "kernel_size": 5}}.get(policy, {})


def quality_args(policy: str, data: str, fraction: float, rng, length: int = QUALITY_T) -> dict:
    """One quality run: B=1, H=Hkv=4, D=64, T = ``length``, prompt T/8, budget fraction * T, no
    RoPE; ``data`` "random" (N(0, 1)) or "heavy_sinks" (4 sinks, 2% heavy hitters, eviction_data)."""
    style = "normal" if data == "random" else "heavy_sinks"
    arrays = eviction_data(rng, style, 1, length, 4, 4, 64, 64, sinks=4, heavy_fraction=0.02, boost=4.0)
    budget = max(2, int(round(fraction * length)))
    return {**arrays, "policy": policy, "budget": budget, "prefill_len": length // 8, "rope": None,
            "return_rows": False, **quality_options(policy, budget)}


def quality_series(policy: str, data: str, *, length: int = QUALITY_T, seed: int | None = None) -> dict:
    """The report's quality sweep of ``policy`` on ``data`` at any T: for each budget fraction the
    error against full attention (max over positions, relative to max|v|) and its budget (twice
    the largest evicted mass plus rounding). ``seed`` defaults to the report's (``quality_seed``)."""
    seed = quality_seed(data) if seed is None else seed
    series = {"fraction": list(QUALITY_FRACTIONS), "error": [], "budget": []}
    for fraction in QUALITY_FRACTIONS:
        args = quality_args(policy, data, fraction, np.random.default_rng(seed), length)
        lhs, rhs = _quality(decode, args)
        verdict = compare(lhs, rhs, Budget(quality_bound(args, rhs), "quality"), ("out", "eps"), 1)
        series["error"].append(verdict.max_error)
        series["budget"].append(verdict.budget)
    return series


def _quality(impl, args):
    res = impl(**args)
    vmax = _vmax(args) or 1.0
    eps, full = evicted_mass(args, res.kept)
    return (res.outputs / vmax, eps), (full / vmax, eps)


def quality_bound(args: dict, rhs: tuple) -> tuple:
    """One number per run, relative to max|v|: 2 (max eps + max w) + max w."""
    w, eps = weight_error(args).max(initial=0.0), max(float(np.maximum(rhs[1], 0.0).max(initial=0.0)), 0.0)
    return 2 * (eps + w) + w, 0.0


for _name in POLICY_NAMES:
    register_claim(Claim(
        key=f"eviction.quality.{_name}",
        statement=f"{FORM_STATEMENTS[_name]}: its error against full attention, max over positions relative to "
                  "max|v|, stays within twice the largest evicted attention mass (the report plots both against "
                  "the budget fraction: B=1, H=4, D=64, prompt T/8, no RoPE)",
        subject="eviction simulate_decoding",
        default_impl=decode,
        relation=_quality,
        inputs=functools.partial(decode_inputs, policy=_name, rope=NO_ROPE_SHIFT),
        bound=quality_bound,
        rule="derived bound max|o - o_full| / max|v| <= 2 max eps + 3 max w (eps: evicted attention mass; "
             "w: float64 rounding, module docstring); evicted mass: exact (carried)",
        outputs=("out / max|v|", "evicted mass"),
        sweeps=tuple(
            Sweep(f"budget fraction, {label}",
                  f"budget fraction, {label} (T={QUALITY_T})",
                  QUALITY_FRACTIONS, functools.partial(quality_args, _name, data), seed=quality_seed(data))
            for data, label in QUALITY_DATA.items()),
    ))


# ----------------------------------------------------------------------------- GPU implementations

for _name in ("tova", "h2o", "window"):
    register_implementation(Implementation(
        name=f"cupy.{_name}_select",
        form=f"eviction.{_name}.decode",
        target=f"eviction_cupy:{_name}_decode",
        runtime="cupy",
        dtypes=("float64",),  # selection is compared exactly; the attention stays float64
        inputs=functools.partial(lambda form, simulated: form(), form_inputs(_name)),
    ))
