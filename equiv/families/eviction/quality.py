"""The quality sweeps: each policy's error against full attention, against the budget fraction
(the report's plots), and ``quality_series`` to compute one at any length."""

from __future__ import annotations

import functools
import zlib

import numpy as np

from seqcheck.equiv.check import replay_claim
from seqcheck.equiv.families.eviction.forms import FORM_STATEMENTS, NO_ROPE_SHIFT
from seqcheck.equiv.families.eviction.measures import evicted_mass, value_max, weight_error
from seqcheck.equiv.registry import Claim, Sweep, register_claim
from seqcheck.properties.eviction import POLICY_NAMES, decode_inputs, eviction_data
from seqcheck.reference.eviction import decode

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
        verdict = replay_claim(f"eviction.quality.{policy}", args)
        series["error"].append(verdict.max_error)
        series["budget"].append(verdict.budget)
    return series


def _quality(impl, args):
    res = impl(**args)
    vmax = value_max(args) or 1.0
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
