"""Stateful tests of the KV-cache eviction policies.

A Hypothesis rule-based state machine plays a decoding server: it prefills a prompt, then decodes
token by token through the ``Policy`` protocol (``init``, ``observe``, ``select``) with its own
attention over the cache, and may change the cache budget between steps. After every step it
checks the invariants of the policies: the cache holds what the budget rule says, no evicted token
comes back, sinks and recent tokens stay, TOVA evicts the argmin of the head-averaged row and
never its argmax, H2O's accumulated scores never decrease and each head's sum equals the number
of queries processed. While the budget has not changed it replays the run through
``simulate_decoding`` and compares kept sets and outputs (exactly up to the first ambiguous
near-tie, docs/eviction.md).

Settings come from the active Hypothesis profile (dev, ci, thorough); the number of steps per run
is bounded so that the file runs in seconds.
"""

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from seqcheck.equiv.families.eviction import ambiguous_steps, attended, onset, weight_error
from seqcheck.properties.eviction import DATA_STYLES, POLICY_NAMES, eviction_data, policy_options
from seqcheck.reference.arith import U64
from seqcheck.reference.eviction import POLICIES, argmin_highest_index, simulate_decoding
from seqcheck.reference.positional import apply_rope

STEPS = 20
MAX_PROMPT = 6
PROTECTED_RECENT = {"window": lambda p, K: K, "streaming_llm": lambda p, K: K - p.sinks,
                    "h2o": lambda p, K: K - p.heavy, "scissorhands": lambda p, K: p.recent,
                    "tova_kvpress": lambda p, K: 1}
"""How many of the newest candidates each policy never evicts, at budget K."""


def _keep_count(name, policy, n, budget, prefill):
    if name == "scissorhands":
        return n if n <= budget else min(budget, n - policy.drop)
    if name == "snapkv" and not prefill:
        return n
    return min(n, budget)


def _lowest_budget(name, policy):
    """The smallest budget ``policy.check`` accepts."""
    if name == "streaming_llm":
        return max(policy.sinks, 1)
    if name == "h2o":
        return max(policy.heavy, 1)
    if name == "scissorhands":
        return max(policy.recent, policy.drop - 1 + max(policy.recent, 1), 1)
    return 1


class EvictionCache(RuleBasedStateMachine):
    """One layer's cache under one policy, driven step by step."""

    @initialize(name=st.sampled_from(POLICY_NAMES), data=st.data())
    def prefill(self, name, data):
        self.name = name
        self.B, Hkv = data.draw(st.integers(1, 2), label="batch"), data.draw(st.integers(1, 2), label="kv heads")
        self.H = Hkv * data.draw(st.integers(1, 2), label="group")
        self.rope = data.draw(st.sampled_from([None, "post"]), label="rope")
        D = data.draw(st.integers(1, 2), label="half dim") * 2
        self.budget = data.draw(st.integers(2 if name == "snapkv" else 1, 6), label="budget")
        self.options = data.draw(policy_options(name, self.budget), label="options")
        self.policy = POLICIES[name](**self.options)
        self.P = data.draw(st.integers(0, MAX_PROMPT), label="prompt")
        self.T = self.P + STEPS
        style = data.draw(st.sampled_from(DATA_STYLES), label="style")
        rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
        arrays = eviction_data(rng, style, self.B, self.T, self.H, Hkv, D, data.draw(st.integers(1, 2)))
        self.q, self.k, self.v = arrays["q"], arrays["k"], arrays["v"]
        self.qa, self.ka = (x if self.rope is None else apply_rope(x, np.arange(self.T)) for x in (self.q, self.k))
        self.G = self.policy.groups(self.H, Hkv)
        self.group_of_head = np.arange(self.H) // (self.H // self.G)
        self.kv_of_head = np.arange(self.H) // (self.H // Hkv)
        self.scale = 1 / np.sqrt(D)
        self.state = self.policy.init(self.B, self.H, self.T, self.P)
        self.kept = np.zeros((self.B, self.T, self.G, self.T), dtype=bool)
        self.outputs = np.zeros((self.B, self.T, self.H, self.v.shape[3]))
        self.budget_changed = False
        self.t = self.P
        self.cand = np.zeros((self.B, self.G, 0), dtype=np.int64)
        if self.P:
            s = self.scale * np.einsum("bqhd,bkhd->bhqk", self.qa[:, :self.P], self.ka[:, :self.P, self.kv_of_head])
            visible = np.broadcast_to(np.tri(self.P, dtype=bool), s.shape)
            probs = self._softmax(s, visible)
            self.outputs[:, :self.P] = np.einsum("bhqk,bkhd->bqhd", probs, self.v[:, :self.P, self.kv_of_head])
            self.state = self.policy.observe(self.state, 0, probs, visible)
            cand = np.broadcast_to(np.arange(self.P), (self.B, self.G, self.P))
            self._select(self.P - 1, cand, probs[:, :, -1], prefill=True)
            self.kept[:, :self.P - 1, :, :self.P] = np.tri(self.P - 1, self.P, dtype=bool)[None, :, None]

    @staticmethod
    def _softmax(s, visible):
        m = np.where(visible, s, -np.inf).max(axis=-1, keepdims=True)
        e = np.where(visible, np.exp(np.where(visible, s - m, 0.0)), 0.0)
        return e / e.sum(axis=-1, keepdims=True)

    def _select(self, t, cand, last_row, prefill):
        """Select from ``cand`` (B, G, n) after row t, check the step's invariants, record kept_t."""
        keep, margin = self.policy.select(self.state, t, cand, self.budget, prefill)
        counts = keep.sum(axis=-1)
        assert keep.shape == cand.shape and (counts == counts.flat[0]).all(), "rows keep different counts"
        new = cand[keep].reshape(self.B, self.G, -1)
        n = cand.shape[-1]
        expected = _keep_count(self.name, self.policy, n, self.budget, prefill)
        assert new.shape[-1] == expected, "the cache size breaks the budget rule"
        assert np.isin(new, cand).all(), "a token came back from outside the candidates"
        held = np.zeros((self.B, self.G, self.T), dtype=bool)
        np.put_along_axis(held, new, True, axis=-1)
        if self.name == "streaming_llm":
            assert held[..., :min(self.policy.sinks, t + 1)].all(), "a sink was evicted"
        if self.name in PROTECTED_RECENT:
            recent = PROTECTED_RECENT[self.name](self.policy, self.budget)
            young = cand > t - recent  # a grown budget cannot bring back what a smaller one evicted
            assert np.take_along_axis(held, cand, axis=-1)[young].all(), "a recent token was evicted"
        if self.name == "tova" and n == new.shape[-1] + 1:
            self._check_tova(t, cand, held, last_row)
        self.kept[:, t] = held
        self.cand = new
        return margin

    def _check_tova(self, t, cand, held, last_row):
        """One eviction: the argmin of the head-averaged last row (ties to the highest index) unless
        a near-tie makes the choice ambiguous; never the argmax."""
        score = np.take_along_axis(last_row.mean(axis=1), cand[:, 0], axis=-1)  # (B, n)
        delta = 4 * self.H * U64
        for b in range(self.B):
            gone = cand[b, 0][~held[b, 0, cand[b, 0]]]
            assert gone.size == 1
            expected = cand[b, 0][argmin_highest_index(score[b])]
            ranked = np.sort(score[b])
            if ranked[1] - ranked[0] > delta:
                assert gone[0] == expected, (t, gone, expected)
            if ranked[-1] - ranked[-2] > delta:
                assert gone[0] != cand[b, 0][np.argmax(score[b])], "TOVA evicted its argmax"

    @precondition(lambda self: self.t < self.T)
    @rule()
    def decode(self):
        t = self.t
        cand = np.concatenate([self.cand, np.full((self.B, self.G, 1), t)], axis=-1)
        cand_h = cand[:, self.group_of_head]  # (B, H, n)
        b = np.arange(self.B)[:, None, None]
        keys = self.ka[b, cand_h, self.kv_of_head[:, None]]
        values = self.v[b, cand_h, self.kv_of_head[:, None]]
        probs = self._softmax(self.scale * np.einsum("bhd,bhnd->bhn", self.qa[:, t], keys), True)
        self.outputs[:, t] = np.einsum("bhn,bhnd->bhd", probs, values)
        row = np.zeros((self.B, self.H, t + 1))
        np.put_along_axis(row, cand_h, probs, axis=-1)
        visible = np.zeros(row.shape, dtype=bool)
        np.put_along_axis(visible, cand_h, True, axis=-1)
        before = self.state.copy() if self.name == "h2o" else None
        self.state = self.policy.observe(self.state, t, row[:, :, None], visible[:, :, None])
        if self.name == "h2o":
            assert (self.state >= before).all(), "an H2O score decreased"
            sums = self.state.sum(axis=-1)
            bound = U64 * (t + 1) * (3 * self.T + 4)
            assert np.abs(sums - (t + 1)).max() <= bound, sums
        self._select(t, cand, row, prefill=False)
        self.t += 1

    @precondition(lambda self: self.name != "snapkv")
    @rule(data=st.data())
    def change_budget(self, data):
        self.budget = data.draw(st.integers(_lowest_budget(self.name, self.policy), 8), label="new budget")
        self.policy.check(self.budget)
        self.budget_changed = True

    @precondition(lambda self: not self.budget_changed and self.t > 0)
    @rule()
    def matches_the_simulator(self):
        """The step-by-step run equals simulate_decoding's up to the first ambiguous step."""
        T = self.t
        args = {"q": self.q[:, :T], "k": self.k[:, :T], "v": self.v[:, :T], "budget": self.budget,
                "prefill_len": self.P, "rope": self.rope, **self.options}
        res = simulate_decoding(args["q"], args["k"], args["v"], policy=self.policy, budget=self.budget,
                                prefill_len=self.P, rope=self.rope, return_rows=self.name == "scissorhands")
        assert not (res.kept & ~attended(res.kept, self.P)).any(), "the simulator resurrected a token"
        w = weight_error(args)
        start = onset(ambiguous_steps(self.name, args, res, w))
        np.testing.assert_array_equal(res.kept[:, :start], self.kept[:, :start, :, :T])
        error = np.abs(res.outputs[:, :start + 1] - self.outputs[:, :min(start + 1, T)]).max(axis=(0, 2, 3),
                                                                                             initial=0.0)
        assert (error <= np.abs(self.v).max() * w[:start + 1]).all(), error

    @rule()
    def outputs_are_convex_combinations(self):
        """Every output so far lies between the smallest and the largest value of its kv head."""
        if self.t == 0:
            return
        done = self.outputs[:, :self.t]
        values = self.v[:, :self.t][:, :, self.kv_of_head]  # (B, t, H, Dv)
        slack = 4 * U64 * np.abs(self.v).max() * (self.t + 1)
        assert (done >= values.min(axis=1, keepdims=True) - slack).all()
        assert (done <= values.max(axis=1, keepdims=True) + slack).all()

    @invariant()
    def cache_within_budget(self):
        if not hasattr(self, "cand") or self.t == 0:
            return
        size = self.cand.shape[-1]
        if self.name == "snapkv":
            assert size <= self.t
        elif not self.budget_changed and self.t >= self.P:
            assert size == min(self.t, self.budget) or self.name == "scissorhands" and size <= self.budget


EvictionCache.TestCase.settings = settings(settings(), stateful_step_count=STEPS, deadline=None)
TestEvictionCache = EvictionCache.TestCase
