"""Decoding by policy name: the registered forms ``eviction.<policy>.decode`` and what the claims
call (a reproducer writes a policy as its name and parameters, so it stays literal).

``<policy>_decode(q, k, v, *, budget, ..., **parameters)`` is ``simulate_decoding`` under
``POLICIES[policy](**parameters)`` returning (out (B, T, H, Dv), kept (B, T, G, T) as float):
one function per policy, so a form key leads to its definition in one step.
``TOVAByPosition`` is a policy only the claims use: TOVA's selection scored by token index,
which must keep what ``Window`` keeps.
"""

import numpy as np

from .._checks import as_real, check_choice, check_layout, check_shape, int_in_range
from ..attention import softmax_attention
from .policies import POLICIES, TOVA
from .simulator import simulate_decoding, simulate_layers

POLICY_OPTIONS = ("sinks", "heavy", "recent", "history", "drop", "threshold", "window", "kernel_size", "pooling",
                  "heads")
"""Every policy's parameters (what ``decode_layers`` passes to the policy, the rest to the simulator)."""


class TOVAByPosition(TOVA):
    """TOVA's selection machinery scored by the token index (the newest win): Window's rule."""

    name = "tova_by_position"

    def scores(self, state, t, cand, budget):
        return cand.astype(np.float64)


_POLICIES = {**POLICIES, TOVAByPosition.name: TOVAByPosition}


def make_policy(policy, **parameters):
    """The policy named ``policy`` (a key of ``POLICIES``, or "tova_by_position") with its parameters."""
    check_choice("policy", policy, sorted(_POLICIES))
    return _POLICIES[policy](**parameters)


def decode(q, k, v, *, policy, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
           return_rows=True, **parameters):
    """``simulate_decoding`` with the policy given by name and parameters (a ``DecodeResult``)."""
    return simulate_decoding(q, k, v, policy=make_policy(policy, **parameters), budget=budget,
                             prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                             position_offset=position_offset, scale=scale, return_rows=return_rows)


def decode_layers(q, k, v, *, policy, **args):
    """``simulate_layers`` (q (L, B, T, H, D)) with the policy given by name and parameters."""
    parameters = {name: args.pop(name) for name in POLICY_OPTIONS if name in args}
    return simulate_layers(q, k, v, policy=make_policy(policy, **parameters), **args)


def _decoded(policy, q, k, v, run, parameters):
    result = decode(q, k, v, policy=policy, **run, return_rows=False, **parameters)
    return result.outputs, result.kept.astype(np.float64)


def window_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
                  **parameters):
    """Sliding-window cache: (out, kept as float) of ``simulate_decoding`` under ``Window(**parameters)``."""
    return _decoded("window", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                                            position_offset=position_offset, scale=scale), parameters)


def streaming_llm_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0,
                         scale=None, **parameters):
    """StreamingLLM: (out, kept as float) under ``StreamingLLM(**parameters)`` (``sinks``)."""
    return _decoded("streaming_llm", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope,
                                                   rope_base=rope_base, position_offset=position_offset, scale=scale),
                    parameters)


def tova_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
                **parameters):
    """TOVA: (out, kept as float) under ``TOVA(**parameters)``."""
    return _decoded("tova", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                                          position_offset=position_offset, scale=scale), parameters)


def tova_kvpress_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0,
                        scale=None, **parameters):
    """kvpress's TOVA: (out, kept as float) under ``TOVAKVPress(**parameters)``."""
    return _decoded("tova_kvpress", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope,
                                                  rope_base=rope_base, position_offset=position_offset, scale=scale),
                    parameters)


def h2o_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
               **parameters):
    """H2O: (out, kept as float) under ``H2O(**parameters)`` (``heavy``)."""
    return _decoded("h2o", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                                         position_offset=position_offset, scale=scale), parameters)


def scissorhands_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0,
                        scale=None, **parameters):
    """Scissorhands: (out, kept as float) under ``Scissorhands(**parameters)``."""
    return _decoded("scissorhands", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope,
                                                  rope_base=rope_base, position_offset=position_offset, scale=scale),
                    parameters)


def snapkv_decode(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0, scale=None,
                  **parameters):
    """SnapKV: (out, kept as float) under ``SnapKV(**parameters)``."""
    return _decoded("snapkv", q, k, v, dict(budget=budget, prefill_len=prefill_len, rope=rope, rope_base=rope_base,
                                            position_offset=position_offset, scale=scale), parameters)


DECODERS = {"window": window_decode, "streaming_llm": streaming_llm_decode, "tova": tova_decode,
            "tova_kvpress": tova_kvpress_decode, "h2o": h2o_decode, "scissorhands": scissorhands_decode,
            "snapkv": snapkv_decode}
"""Policy name -> its decoding form (the same names as ``POLICIES``)."""


def cache_attention(q, k, v, *, keep, scale=None):
    """Every query row (B, Tq, H, D) attending over the kept keys (``keep`` (B, n) bool) of one cache
    (k (B, n, Hkv, D), v (B, n, Hkv, Dv))."""
    k = as_real("k", k)
    keep = np.asarray(keep)
    if keep.dtype != bool:
        raise TypeError(f"keep must be a bool array (B, n), True = kept; got dtype {keep.dtype}")
    check_shape("keep", keep, k.shape[:2], "(B, n)", match="k")
    return softmax_attention(q, k, v, scale=scale, key_padding_mask=keep)


def tova_select(probs, positions, *, budget):
    """TOVA's selection from a cache stored in any slot order: ``probs`` (B, H, n) the last query's
    attention over the slots, ``positions`` (B, n) their token indices; keep (B, n) as float, in slot
    order. Built on ``TOVA.select`` (index order, ties to the lowest token index)."""
    probs = as_real("probs", probs)
    B, H, n = check_layout("probs", probs, "(B, H, n)", may_be_empty=("B",))
    positions = np.asarray(positions)
    if positions.dtype.kind not in "iu":
        raise TypeError(f"positions must be an integer array (B, n) of token indices; got dtype {positions.dtype}")
    check_shape("positions", positions, (B, n), "(B, n)", match="probs")
    if positions.size and (positions.min() < 0 or (np.diff(np.sort(positions, axis=-1), axis=-1) == 0).any()):
        raise ValueError("positions must hold distinct token indices >= 0 in each batch element")
    budget = int_in_range("budget", budget, 1)
    if B == 0:
        return np.zeros((B, n))
    state = np.zeros((B, H, int(positions.max()) + 1))
    np.put_along_axis(state, np.broadcast_to(positions[:, None], probs.shape), probs, axis=-1)
    order = np.argsort(positions, axis=-1, kind="stable")
    cand = np.take_along_axis(positions, order, axis=-1)[:, None]
    keep_sorted, _ = TOVA().select(state, state.shape[-1] - 1, cand, budget, False)
    keep = np.zeros((B, n))
    np.put_along_axis(keep, order, keep_sorted[:, 0].astype(np.float64), axis=-1)
    return keep
