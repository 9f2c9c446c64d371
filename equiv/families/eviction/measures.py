"""The float64 bounds of the eviction forms and claims, and the quantities they read.

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

import numpy as np

from seqcheck.reference.arith import U64
from seqcheck.reference.eviction import POLICY_OPTIONS, make_policy, simulate_decoding, topk_lowest_index
from seqcheck.reference.positional import apply_rope

RUN_OPTIONS = ("budget", "prefill_len", "rope", "rope_base", "position_offset", "scale")


def run_options(args: dict) -> dict:
    return {name: args[name] for name in RUN_OPTIONS if name in args}


def policy_options(args: dict) -> dict:
    return {name: args[name] for name in POLICY_OPTIONS if name in args}


# ----------------------------------------------------------------------------- bounds

def paired(x, rope):
    """|x|, plus the RoPE pair partner's |x| ("half" pairing) when rotated."""
    a = np.abs(np.asarray(x, dtype=np.float64))
    if rope is None:
        return a
    half = a.shape[-1] // 2
    return a + np.concatenate([a[..., half:], a[..., :half]], axis=-1)


def score_scale(args: dict) -> float:
    return args.get("scale") or 1.0 / np.sqrt(np.shape(args["q"])[-1])


def score_magnitude(args: dict) -> np.ndarray:
    """sigma_t (T,): scale * max_{b,h} sum_d |q~_td| max_{j<=t} |k~_jd| (module docstring)."""
    q, k = np.asarray(args["q"]), np.asarray(args["k"])
    qa = paired(q, args.get("rope")).reshape((-1,) + q.shape[-3:])
    ka = paired(k, args.get("rope")).reshape((-1,) + k.shape[-3:])
    running = np.repeat(np.maximum.accumulate(ka, axis=1), q.shape[-2] // k.shape[-2], axis=2)
    return score_scale(args) * np.einsum("bthd,bthd->bth", qa, running).max(axis=(0, 2))


def weight_error(args: dict, extra_sigma=0.0) -> np.ndarray:
    """w_t (T,): two correct computations of an attention weight of row t differ by at most this."""
    q = np.asarray(args["q"])
    T, D = q.shape[-3], q.shape[-1]
    t = np.arange(T)
    sigma = score_magnitude(args) + extra_sigma
    rotations = {None: 0, "post": 12, "pre_shift": 24}[args.get("rope")]
    a = D + 3 + rotations * (args.get("position_offset", 0) + t + 1)
    return 2 * U64 * (4 * a * sigma + 4 * (t + 1) + 8)


def value_max(args: dict) -> float:
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
    out, kept = value_max(args) * w, np.zeros(len(w))
    out[start + 1:] = np.inf
    kept[start:] = np.inf
    return out, kept


TRAJECTORY_RULE = ("outputs: derived float64 bound vmax w_t, w_t = 2u (4 a_t sigma_t + 4(t+1) + 8), a_t = D + 3 "
                   "(+ 12(theta_t + 1) with RoPE, 24(theta_t + 1) with pre_shift); kept: exact; both unbounded "
                   "from the first step whose selection margin <= delta_t (an ambiguous near-tie; docs/eviction.md)")
OUTPUT_RULE = "derived float64 bound vmax w_t, w_t = 2u (4 a_t sigma_t + 4(t+1) + 8) (a_t: module docstring)"


# ----------------------------------------------------------------------------- helpers of the claims

def at_positions(x, args: dict):
    """x rotated at the absolute positions position_offset + t (RoPE "post"; none without RoPE)."""
    if args.get("rope") is None:
        return np.asarray(x, dtype=np.float64)
    positions = args.get("position_offset", 0) + np.arange(np.shape(x)[1])
    return apply_rope(x, positions, base=args.get("rope_base", 10000.0))


def head_groups(args: dict, groups: int):
    H, Hkv = np.shape(args["q"])[2], np.shape(args["k"])[2]
    return np.arange(H) // (H // groups), np.arange(H) // (H // Hkv)


def logsumexp(s, mask, axis=-1):
    top = np.where(mask, s, -np.inf).max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return (np.log(np.exp(np.where(mask, s - top, -np.inf)).sum(axis=axis, keepdims=True)) + top)[..., 0]


def full_scores(args: dict, rows=slice(None)):
    """scale * q~_t . k~_j at absolute positions, (B, H, rows, keys): the keys j < rows.stop (all
    when rows.stop is None), the only ones a causal row t < rows.stop sees."""
    q, k = at_positions(args["q"], args), at_positions(args["k"], args)
    _, kv = head_groups(args, 1)
    qh = q[:, rows].transpose(0, 2, 1, 3)
    kh = k[:, :rows.stop][:, :, kv].transpose(0, 2, 3, 1)
    return score_scale(args) * (qh @ kh)


def renormalised_outputs(args: dict, kept: np.ndarray) -> np.ndarray:
    """Row t's full causal softmax p_tj, renormalised over the attended set C_t, applied to v."""
    T = np.shape(args["q"])[1]
    group, kv = head_groups(args, kept.shape[2])
    sets = attended(kept, args.get("prefill_len", 0))[:, :, group].transpose(0, 2, 1, 3)  # (B, H, T, T)
    s = full_scores(args)
    logp = s - logsumexp(s, np.tri(T, dtype=bool))[..., None]
    weights = np.exp(np.where(sets, logp - logsumexp(logp, sets)[..., None], -np.inf))
    return np.einsum("bhts,bshd->bthd", weights, np.asarray(args["v"], dtype=np.float64)[:, :, kv])


def evicted_mass(args: dict, kept: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """eps (B, T, H), the full causal softmax mass of row t outside its attended set C_t, and the
    full causal attention output (B, T, H, Dv), keys at absolute positions; rows in blocks.

    With e_tj = exp(s_tj - max_j s_tj) over j <= t: eps_t = sum_{j not in C_t} e_tj / sum_j e_tj
    (a ratio of sums of positive terms: no cancellation), out_t = sum_j e_tj v_j / sum_j e_tj.
    """
    B, T = np.shape(args["q"])[:2]
    group, kv = head_groups(args, kept.shape[2])
    v = np.asarray(args["v"], dtype=np.float64)[:, :, kv].transpose(0, 2, 1, 3)  # (B, H, T, Dv)
    sets = attended(kept, args.get("prefill_len", 0))
    eps, full = np.zeros((B, T, len(group))), np.zeros((B, T, len(group), v.shape[-1]))
    for start in range(0, T, block):
        rows = slice(start, min(start + block, T))
        s = full_scores(args, rows)  # (B, H, r, rows.stop)
        causal = np.arange(rows.stop)[None, :] <= np.arange(start, rows.stop)[:, None]
        s = np.where(causal, s, -np.inf)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        total = e.sum(axis=-1)
        seen = sets[:, rows, :, :rows.stop][:, :, group].transpose(0, 2, 1, 3)
        outside = np.where(seen, 0.0, e).sum(axis=-1)
        eps[:, rows] = (outside / total).transpose(0, 2, 1)
        full[:, rows] = ((e @ v[:, :, :rows.stop]) / total[..., None]).transpose(0, 2, 1, 3)
    return eps, full


def valid_selection(keep, scores, count, delta) -> bool:
    """A kept set of the right size whose every score is >= every evicted score - delta."""
    if keep.sum() != count:
        return False
    if keep.all() or not keep.any():
        return True
    return scores[keep].min() >= scores[~keep].max() - delta


def replayed(kept_t, cand, scores, count, delta):
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
    if ranked[count - 1] - ranked[count] <= delta and inside and valid_selection(kept_t[idx] > 0, scores, count, delta):
        return kept_t.astype(np.float64)
    return expected
