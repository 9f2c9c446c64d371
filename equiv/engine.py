"""The one checking path: run a relation under Hypothesis, compare per position, shrink failures.

``check`` (a user's candidate against a form) and the registered claims (one form against
another, or a property) both end in :func:`verify`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, reject, seed as hypothesis_seed, settings
from hypothesis.errors import HypothesisException

from seqcheck.equiv.budget import Budget, OutOfRange
from seqcheck.equiv.metrics import error_per_position


@dataclass
class Comparison:
    """The verdict on one example: worst error relative to its budget, and where it occurred."""

    passed: bool
    max_error: float
    budget: float
    worst_ratio: float
    where: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass
class Counterexample:
    """The shrunk failing arguments, what went wrong on them, and a runnable reproducer."""

    args: dict
    message: str
    reproducer: str

    def __str__(self) -> str:
        return f"{self.message}\n\nreproducer:\n{self.reproducer}"


@dataclass
class Result:
    """What ``check`` (or a claim) found: verdict, worst error against its budget, examples run."""

    key: str
    passed: bool
    max_error: float
    budget: float
    worst_ratio: float
    examples: int
    seed: int
    dtype: str
    backend: str
    rule: str
    where: str = ""
    shapes: dict = field(default_factory=dict)
    counterexample: Counterexample | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"{verdict} {self.key} [{self.dtype}, {self.backend}] after {self.examples} examples (seed {self.seed})",
            f"  worst error {self.max_error:.3g} against budget {self.budget:.3g} "
            f"(ratio {self.worst_ratio:.3g}){' in ' + self.where if self.where else ''}",
            f"  budget rule: {self.rule}",
        ]
        if self.counterexample is not None:
            lines += ["", "counterexample: " + str(self.counterexample)]
        return "\n".join(lines)


def compare(actual: tuple, expected: tuple, budget: Budget, names: tuple, time_axis: int) -> Comparison:
    """Per-position comparison of every output against its budget; NaN/Inf never pass."""
    if len(actual) != len(expected):
        return _broken(f"returned {len(actual)} output(s), expected {len(expected)}")
    worst = Comparison(True, 0.0, 0.0, 0.0, "", "")
    for index, (got, want, allowed) in enumerate(zip(actual, expected, budget.per_output)):
        name = names[index] if index < len(names) else f"output {index}"
        if np.shape(got) != np.shape(want):
            return _broken(f"output {name!r} has shape {np.shape(got)}, expected {np.shape(want)}")
        errors = error_per_position(got, want, time_axis)
        if np.isinf(errors).any():
            t = int(np.argmax(np.isinf(errors)))
            return _broken(f"output {name!r} is NaN/Inf at position {t} where the reference is "
                           f"{_finiteness(want, t, time_axis)}", where=f"{name!r}, position {t}")
        allowed = np.broadcast_to(np.asarray(allowed, dtype=np.float64), errors.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(errors == 0, 0.0, errors / allowed)
        if ratios.size and (not worst.where or ratios.max() > worst.worst_ratio):
            t = int(np.argmax(ratios))
            worst = Comparison(bool(ratios[t] <= 1), float(errors[t]), float(allowed[t]), float(ratios[t]),
                               f"{name!r}, position {t} of {errors.size}", "")
    worst.message = (f"worst error {worst.max_error:.3g} against budget {worst.budget:.3g} "
                     f"(ratio {worst.worst_ratio:.3g}) in {worst.where}")
    return worst


def verify(
    *,
    key: str,
    relation: Callable[[dict], tuple[tuple, tuple]],
    tolerance: Callable[[dict, tuple], Budget],
    strategy,
    names: tuple,
    time_axis: int,
    max_examples: int | None,
    seed: int | None,
    dtype: str,
    backend: str,
    reproducer: Callable[[dict], str],
    rule: str,
) -> Result:
    """Run ``relation`` on examples from ``strategy`` until one breaks its budget; shrink it."""
    seed = secrets.randbits(32) if seed is None else int(seed)
    state = {"examples": 0, "worst": None, "failure": None}

    def judge(args: dict) -> Comparison:
        try:
            actual, expected = relation(args)
            budget = tolerance(args, expected)
        except OutOfRange:
            reject()
        except Exception as error:  # a crash of the implementation under test is a failure
            tail = "".join(traceback.format_exception(error)[-3:]).strip()
            return _broken(f"raised {type(error).__name__}: {error}\n{tail}")
        return compare(actual, expected, budget, names, time_axis)

    @settings(
        max_examples=max_examples if max_examples is not None else settings().max_examples,
        deadline=None,
        database=None,
        derandomize=False,
        report_multiple_bugs=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis_seed(seed)
    @given(strategy)
    def holds(args):
        state["examples"] += 1
        outcome = judge(args)
        worst = state["worst"]
        if worst is None or outcome.worst_ratio > worst[0].worst_ratio:
            state["worst"] = (outcome, _shapes(args))
        if not outcome.passed:
            state["failure"] = (args, outcome)
            raise _Broken(outcome.message)

    started = time.perf_counter()
    try:
        with _no_local_constants():
            holds()
    except (_Broken, HypothesisException):
        pass
    seconds = time.perf_counter() - started
    worst, shapes = state["worst"] or (Comparison(True, 0.0, 0.0, 0.0, "", ""), {})
    counterexample = None
    if state["failure"] is not None:
        args, outcome = state["failure"]
        worst, shapes = outcome, _shapes(args)
        counterexample = Counterexample(args, outcome.message, reproducer(args))
    return Result(key=key, passed=counterexample is None, max_error=worst.max_error,
                  budget=worst.budget, worst_ratio=worst.worst_ratio, examples=state["examples"],
                  seed=seed, dtype=dtype, backend=backend, rule=rule, where=worst.where,
                  shapes=shapes, counterexample=counterexample, seconds=seconds)


class _Broken(AssertionError):
    pass


@contextlib.contextmanager
def _no_local_constants():
    """Hypothesis (6.131 on) mixes literals from the source of every local module loaded so far into
    its draws, so one seed gave different examples in a script, a report worker or an xdist worker,
    depending on what each had imported. A seeded check must not depend on that: while it runs the
    pool of local constants is empty (Hypothesis's own small constants stay). A Hypothesis without
    the pool needs nothing."""
    try:
        from hypothesis.internal.conjecture import providers
        pool, cache = providers._get_local_constants, providers.CONSTANTS_CACHE
        empty = providers.Constants()
    except (ImportError, AttributeError):
        yield
        return
    providers._get_local_constants = lambda: empty
    cache.cache.clear()
    try:
        yield
    finally:
        providers._get_local_constants = pool
        cache.cache.clear()


def _broken(message: str, where: str = "") -> Comparison:
    return Comparison(False, float("inf"), 0.0, float("inf"), where, message)


def _shapes(args: dict) -> dict:
    return {name: list(np.shape(value)) for name, value in args.items() if isinstance(value, np.ndarray)}


def _finiteness(want: np.ndarray, position: int, time_axis: int) -> str:
    row = np.take(want, position, axis=time_axis % np.ndim(want)) if np.ndim(want) else want
    finite = np.isfinite(row)
    return "finite" if finite.all() else ("partly finite" if finite.any() else "also non-finite")
