"""KV-cache eviction policies: which tokens a cache of bounded size keeps, step by step.

Every policy answers one question, asked by ``simulator.simulate_decoding`` once after the
prefill and once after every decoded token t (0-based absolute index): the attention row of
query t has just been computed over the candidates

    C_t = kept_{t-1} ∪ {t}          (after the prefill: C = {0, ..., P-1})

and the policy returns kept_t ⊆ C_t. Its explicit state (accumulated attention, counters) is
created by ``init``, owned by the simulator and updated by ``observe`` with every attention row.

Groups. A policy selects per batch element and per group: G = 1 (one set per layer, shared by
every head), G = Hkv (one per kv head) or G = H (one per query head); query head h reads group
h // (H / G). ``groups(H, Hkv)`` says which.

Tie rule. Every score-based selection keeps the top k under one total order: higher score
first, and at equal score the lower absolute index first (``topk_lowest_index``). A single
eviction therefore removes the lowest score and, among equal lowest scores, the highest index
(``argmin_highest_index``). The authors' code uses ``torch.topk``, whose order among equal
values is unspecified.

Margin. With every selection comes its margin, the score of the last kept candidate minus the
score of the first evicted one (>= 0; 0 is an exact tie; inf when nothing was evicted or the
rule has no score). A candidate implementation whose kept set differs from the reference only at
a step whose margin is below the comparison's error budget made an ambiguous choice, not an error.
"""

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import numpy as np

from .._checks import as_int, check_choice, int_in_range

# ----------------------------------------------------------------------------- checks


def _scores(name, scores):
    """scores as an array of its own dtype; TypeError unless real, ValueError if empty or NaN."""
    a = np.asarray(scores)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers; got dtype {a.dtype}")
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError(f"{name} must have a non-empty last axis; got shape {a.shape}")
    if np.isnan(a).any():
        raise ValueError(f"{name} must not contain NaN (the tie rule orders real numbers only)")
    return a


# ----------------------------------------------------------------------------- the tie rule


def _rank(scores):
    """Candidates from first kept to first evicted: score descending, then index ascending."""
    return np.argsort(-scores, axis=-1, kind="stable")


def topk_lowest_index(scores, k):
    """Indices of the k highest scores along the last axis, ties to the lowest index; sorted.

    ``scores`` (..., n) real, no NaN; returns int (..., k) in ascending index order. Among equal
    scores the lower index ranks first, so it is the one kept (the tie rule of this module).
    """
    a = _scores("scores", scores)
    n, k = a.shape[-1], as_int("k", k)
    if not 0 <= k <= n:
        raise ValueError(f"k must be an int in [0, {n}] to match scores (n={n} candidates on its last axis); got {k}")
    return np.sort(_rank(a)[..., :k], axis=-1)


def argmin_highest_index(scores):
    """The index a single eviction removes: the lowest score, ties to the highest index.

    The one candidate that ``topk_lowest_index(scores, n - 1)`` leaves out; int (...,).
    """
    a = _scores("scores", scores)
    n = a.shape[-1]
    return n - 1 - np.argmin(a[..., ::-1], axis=-1)


def _keep_top(scores, k):
    """Keep mask (..., n) of the top k under the tie rule, and the margin (...)."""
    order = _rank(scores)
    keep = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :k], True, axis=-1)
    if k >= scores.shape[-1]:
        return keep, np.full(scores.shape[:-1], np.inf)
    ranked = np.take_along_axis(scores, order[..., k - 1:k + 1], axis=-1)
    return keep, ranked[..., 0] - ranked[..., 1]


def _no_margin(cand):
    return np.full(cand.shape[:-1], np.inf)


def _per_group(x, groups):
    """Sum over the query heads of each group: (B, H, ...) -> (B, G, ...)."""
    b, h = x.shape[:2]
    return x.reshape(b, groups, h // groups, *x.shape[2:]).sum(axis=2)


# ----------------------------------------------------------------------------- protocol


class Policy:
    """What the simulator asks of a policy. Subclasses are frozen dataclasses of parameters.

    - ``groups(heads, kv_heads) -> G``: how many kept sets per batch element (1, Hkv or H).
    - ``check(budget)``: raise ValueError if the parameters do not fit the budget.
    - ``init(batch, heads, length, prefill_len) -> state``: the policy's explicit state.
    - ``observe(state, t0, probs, visible) -> state``: take in attention rows t0 .. t0+R-1,
      ``probs`` float (B, H, R, N) over absolute key indices 0 .. N-1 (N = t0 + R), 0 where not
      visible, and ``visible`` bool (B, H, R, N). May update the state's arrays in place.
    - ``select(state, t, cand, budget, prefill) -> (keep, margin)``: ``cand`` int (B, G, n),
      each row the candidates C_t in ascending order (the same count n in every row); ``keep``
      bool (B, G, n) with the same number of True in every row, ``margin`` float (B, G).
    """

    name: ClassVar[str] = ""

    def groups(self, heads, kv_heads):
        return 1

    def check(self, budget):
        pass

    def init(self, batch, heads, length, prefill_len):
        return None

    def observe(self, state, t0, probs, visible):
        return state


# ----------------------------------------------------------------------------- rule-based


@dataclass(frozen=True)
class Window(Policy):
    """Sliding window: keep the newest ``budget`` tokens, kept_t = {j in C_t : j > t - budget}.

    The baseline of the StreamingLLM paper (Xiao et al. 2023, arXiv:2309.17453, "window
    attention"); equals ``StreamingLLM(sinks=0)`` and ``H2O(heavy=0)``. Margin: inf (no score).
    """

    name: ClassVar[str] = "window"

    def select(self, state, t, cand, budget, prefill):
        return cand > t - budget, _no_margin(cand)


@dataclass(frozen=True)
class StreamingLLM(Policy):
    """Attention sinks + recent window: kept_t = {j in C_t : j < sinks or j > t - recent}.

    recent = budget - sinks. StreamingLLM (Xiao et al. 2023, arXiv:2309.17453), matching
    ``mit-han-lab/streaming-llm: streaming_llm/kv_cache.py StartRecentKVCache.__call__`` (keep
    cache entries [0, start_size) and the last recent_size; applied after every forward in
    ``examples/eval_long_ppl.py``, so attention sees budget + 1 keys and the cache is then
    trimmed to budget). Its position shift (``streaming_llm/pos_shift/modify_llama.py``) is the
    simulator's ``rope="pre_shift"``. Not modelled: ``evict_for_space`` (trimming ahead of a new
    prompt). Margin: inf (no score).
    """

    name: ClassVar[str] = "streaming_llm"
    sinks: int = 4

    def __post_init__(self):
        int_in_range("sinks", self.sinks, 0)

    def check(self, budget):
        int_in_range("sinks", self.sinks, 0, budget)

    def select(self, state, t, cand, budget, prefill):
        return (cand < self.sinks) | (cand > t - (budget - self.sinks)), _no_margin(cand)


# ----------------------------------------------------------------------------- score-based


class _Scored(Policy):
    """A policy that scores the candidates and keeps the top ``keep_count`` by the tie rule."""

    def keep_count(self, n, budget, prefill):
        return min(n, budget)

    def select(self, state, t, cand, budget, prefill):
        k = self.keep_count(cand.shape[-1], budget, prefill)
        if k == cand.shape[-1]:
            return np.ones(cand.shape, dtype=bool), _no_margin(cand)
        return _keep_top(self.scores(state, t, cand, budget), k)


@dataclass(frozen=True)
class TOVA(_Scored):
    """TOVA: keep the top ``budget`` by the last query row averaged over every head of the layer.

        score_j = (1/H) sum_h P[h, t, j]      for j in C_t (the newest token t included)

    One selection per layer (G = 1), shared by every kv head; no token is protected. After the
    prefill the cache is reduced once by the last prompt row. Oren et al. 2024, "Transformers
    are Multi-State RNNs" (arXiv:2401.06104), matching ``schwartz-lab-NLP/TOVA:
    src/tova_cache.py TOVACache.reduce`` (``mean(attn_weights[:, :, -1, :], dim=1)``, topk of
    cache_size, called after the attention of every forward, no-op while num_keys <= cache_size)
    with keys at their absolute positions (the simulator's ``rope="post"``: the cached keys are
    re-rotated at their ``cached_input_indexes`` by ``src/convert_models/
    positional_encoding_compression_utils.py`` unless position_encoding_compression is set).
    Differences: the batch is per element (the authors' gather expands one index set over the
    batch, so it runs with batch size 1); ties by this module's rule (torch.topk's order is
    unspecified); ``position_encoding_compression`` is not modelled.
    """

    name: ClassVar[str] = "tova"

    def init(self, batch, heads, length, prefill_len):
        return np.zeros((batch, heads, length))

    def observe(self, state, t0, probs, visible):
        state[..., :probs.shape[-1]] = probs[:, :, -1]
        return state

    def scores(self, state, t, cand, budget):
        return np.take_along_axis(state.mean(axis=1)[:, None], cand, axis=-1)


@dataclass(frozen=True)
class TOVAKVPress(TOVA):
    """kvpress's TOVA: TOVA's score, with the newest token always kept (score +inf).

    Matches ``NVIDIA/kvpress: kvpress/presses/tova_press.py TOVAPress.score``: the last query's
    attention over the older keys (softmax over all keys, newest column dropped), averaged over
    all query heads and repeated for every kv head (so every kv head gets the same selection:
    G = 1 here), then the newest token padded with ``scores.max()``; ``ScorerPress.compress``
    keeps the topk. Differences: kvpress runs a press once, after the prefill
    (``BasePress.forward_hook``), keeping ``max(1, int(P * (1 - compression_ratio)))``; here the
    same rule keeps ``budget`` tokens after the prefill and after every decoded token. kvpress's
    pad value can tie with an older token's score; here the newest is never evicted.
    """

    name: ClassVar[str] = "tova_kvpress"

    def scores(self, state, t, cand, budget):
        return np.where(cand == t, np.inf, super().scores(state, t, cand, budget))


@dataclass(frozen=True)
class H2O(_Scored):
    """H2O: heavy hitters by accumulated attention, plus the recent window; per kv head.

        A[h, j] = sum over every query row s processed so far of P[h, s, j]
        score_j = sum over the query heads h of the group of A[h, j],   +inf if j > t - recent

    keeping the top ``budget`` (= heavy + recent). Zhang et al. 2023, "H2O: Heavy-Hitter Oracle"
    (arXiv:2306.14048), matching ``FMInference/H2O: h2o_hf/utils_real_drop/modify_llama.py
    H2OKVCache_LayerWise`` (``_update_hh_score`` adds every new attention row, prompt rows
    included, before the selection; topk hh_size over the cache minus its last recent_size,
    which are kept). ``H2OLlamaAttention`` caches keys rotated at absolute positions
    (``rope="post"``), ``H2OLlamaAttention_streaming`` uses the position shift (``"pre_shift"``).
    Differences: scores are per batch element (the authors sum over the batch, issue #14); with
    GQA the scores of a kv head's query heads are summed (the authors keep one row per query
    head and assume H == Hkv; identical then). The state A covers every token ever seen (an
    evicted token's score freezes), so A[h].sum() is the number of query rows processed.
    """

    name: ClassVar[str] = "h2o"
    heavy: int = 0

    def __post_init__(self):
        int_in_range("heavy", self.heavy, 0)

    def check(self, budget):
        int_in_range("heavy", self.heavy, 0, budget)

    def groups(self, heads, kv_heads):
        return kv_heads

    def init(self, batch, heads, length, prefill_len):
        return np.zeros((batch, heads, length))

    def observe(self, state, t0, probs, visible):
        state[..., :probs.shape[-1]] += probs.sum(axis=2)
        return state

    def scores(self, state, t, cand, budget):
        accumulated = np.take_along_axis(_per_group(state, cand.shape[1]), cand, axis=-1)
        return np.where(cand > t - (budget - self.heavy), np.inf, accumulated)


class _Counts(NamedTuple):
    low: np.ndarray  # int (B, H, T): rows of the history window in which token j scored low
    ring: np.ndarray  # bool (history, B, H, T): each window row's indicators, row s at s % history


@dataclass(frozen=True)
class Scissorhands(_Scored):
    """Scissorhands: evict the tokens most often unimportant over a history window; per kv head.

    A token j is unimportant in query row s if it was in that row and P[h, s, j] < tau_s, with
    tau_s = 1 / (number of keys of row s) (``threshold="uniform"``, the row's average weight) or
    tau_s = 1 / (s + 1) (``"position"``). Over the last ``history`` rows (the current one
    included)

        low[h, j] = #{s in (t - history, t] : j unimportant in row s for head h}
        score_j   = -(sum over the query heads h of the group of low[h, j]),  +inf if j > t - recent

    When |C_t| > budget the cache keeps the top min(budget, |C_t| - drop): at least ``drop``
    tokens go at once, the ``recent`` newest never. Liu et al. 2023, "Scissorhands: Exploiting
    the Persistence of Importance Hypothesis for LLM KV Cache Compression at Test Time"
    (arXiv:2305.17118), Algorithms 1-2 (budget B, history window w, recent window r, drop amount
    m; the counter of low-importance steps; recent tokens protected). The authors released no
    budgeted cache: ``lzcemma/Scissorhands: Decentralized_FM_alpha/modules/hf_opt_dropkv.py`` only
    masks, for evaluation, the tokens never above a per-row 90th-percentile score within the
    last ``lru_window`` rows, keeping the last ``position_window``. Choices made here: the paper
    thresholds at 1/t, the average weight of an uncompressed row of t keys; a compressed row has
    fewer keys, so "uniform" uses 1/(keys in the row), equal to 1/t until the first eviction, and
    "position" keeps 1/(s + 1) literally. With GQA the counts of a kv head's query heads add up.
    """

    name: ClassVar[str] = "scissorhands"
    recent: int
    history: int
    drop: int = 1
    threshold: str = "uniform"

    def __post_init__(self):
        int_in_range("recent", self.recent, 0)
        int_in_range("history", self.history, 1)
        int_in_range("drop", self.drop, 1)
        check_choice("threshold", self.threshold, ("uniform", "position"))

    def check(self, budget):
        int_in_range("recent", self.recent, 0, budget)
        int_in_range("drop", self.drop, 1, budget + 1 - max(self.recent, 1))

    def groups(self, heads, kv_heads):
        return kv_heads

    def init(self, batch, heads, length, prefill_len):
        return _Counts(np.zeros((batch, heads, length), dtype=np.int64),
                       np.zeros((self.history, batch, heads, length), dtype=bool))

    def observe(self, state, t0, probs, visible):
        rows, n = probs.shape[2], probs.shape[3]
        for r in range(max(0, rows - self.history), rows):
            s = t0 + r
            shown = visible[:, :, r]
            tau = 1 / (shown.sum(axis=-1, keepdims=True) if self.threshold == "uniform" else s + 1)
            low = shown & (probs[:, :, r] < tau)
            slot = state.ring[s % self.history]
            state.low[..., :n] += low.astype(np.int64) - slot[..., :n]
            slot[...] = False
            slot[..., :n] = low
        return state

    def keep_count(self, n, budget, prefill):
        return n if n <= budget else min(budget, n - self.drop)

    def scores(self, state, t, cand, budget):
        low = np.take_along_axis(_per_group(state.low, cand.shape[1]), cand, axis=-1)
        return np.where(cand > t - self.recent, np.inf, -low.astype(np.float64))


class _Observation(NamedTuple):
    sums: np.ndarray  # (B, H, T): attention summed over the observation window's query rows
    first: int  # first row of the window, prefill_len - window
    end: int  # prefill_len


def _pool(x, kernel_size, pooling):
    """Stride-1 pooling along the last axis with kernel_size // 2 padding on each side (odd size).

    "avgpool" pads with 0 and divides by kernel_size (``F.avg_pool1d``, count_include_pad);
    "maxpool" pads with -inf (``F.max_pool1d``).
    """
    pad = kernel_size // 2
    fill = 0.0 if pooling == "avgpool" else -np.inf
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], constant_values=fill)
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel_size, axis=-1)
    return windows.sum(axis=-1) / kernel_size if pooling == "avgpool" else windows.max(axis=-1)


@dataclass(frozen=True)
class SnapKV(_Scored):
    """SnapKV: compress the prompt once, by what its last ``window`` queries attend to.

    After a prefill of P >= budget tokens (nothing happens below the budget), with W = window:

        s[h, j] = sum over the rows i in [P - W, P) of P[h, i, j],   j < P - W
        score   = pool(s) along j (kernel_size, stride 1, padding kernel_size // 2)
        kept    = top (budget - W) of the prefix by score  ∪  {P - W, ..., P - 1}

    per query head (``heads="query"``, G = H) or, as kvpress, the pooled score averaged over each
    kv head's query heads (``heads="kv"``, G = Hkv). Decoded tokens are appended and never
    evicted. Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation"
    (arXiv:2404.14469), matching ``FasterDecoding/SnapKV: snapkv/monkeypatch/snapkv_utils.py
    SnapKVCluster.update_kv`` (keys repeated to the query heads before it, ``mistral_hijack_4_37.py``
    "[SnapKV] move to ahead"; compresses iff q_len >= max_capacity_prompt; avgpool or maxpool)
    and ``NVIDIA/kvpress: kvpress/presses/snapkv_press.py SnapKVPress.score`` (mean over the
    window rows, avg_pool1d, mean per group, SnapKV issue #22). Differences: kernel_size must be
    odd (an even one makes torch's pooled length P - W + 1); kvpress pads the window with the
    maximum score, which can tie with a prefix token, where here the window is always kept.
    """

    name: ClassVar[str] = "snapkv"
    window: int = 32
    kernel_size: int = 5
    pooling: str = "avgpool"
    heads: str = "query"

    def __post_init__(self):
        int_in_range("window", self.window, 1)
        if int_in_range("kernel_size", self.kernel_size, 1) % 2 == 0:
            raise ValueError(f"kernel_size must be odd; got {self.kernel_size}")
        check_choice("pooling", self.pooling, ("avgpool", "maxpool"))
        check_choice("heads", self.heads, ("query", "kv"))

    def check(self, budget):
        if self.window >= budget:
            raise ValueError(f"window must be < budget={budget} (SnapKV keeps the window inside the budget); "
                             f"got window={self.window}")

    def groups(self, heads, kv_heads):
        return heads if self.heads == "query" else kv_heads

    def init(self, batch, heads, length, prefill_len):
        return _Observation(np.zeros((batch, heads, length)), prefill_len - self.window, prefill_len)

    def observe(self, state, t0, probs, visible):
        lo, hi = max(state.first - t0, 0), max(min(state.end - t0, probs.shape[2]), 0)
        if lo < hi:
            state.sums[..., :probs.shape[-1]] += probs[:, :, lo:hi].sum(axis=2)
        return state

    def keep_count(self, n, budget, prefill):
        return min(n, budget) if prefill else n

    def scores(self, state, t, cand, budget):
        pooled = _pool(state.sums[..., :state.end - self.window], self.kernel_size, self.pooling)
        groups = cand.shape[1]
        if groups != pooled.shape[1]:
            pooled = _per_group(pooled, groups) / (pooled.shape[1] // groups)
        window = np.full(pooled.shape[:2] + (self.window,), np.inf)
        return np.take_along_axis(np.concatenate([pooled, window], axis=-1), cand, axis=-1)


POLICIES = {p.name: p for p in (Window, StreamingLLM, TOVA, TOVAKVPress, H2O, Scissorhands, SnapKV)}
