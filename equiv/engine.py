"""The one checking path: run a relation under Hypothesis, compare per position, shrink failures.

``check`` (a user's candidate against a form) and the registered claims (one form against
another, or a property) both end in :func:`verify`. A verdict is one of four statuses:

- ``passed``: every example within its budget;
- ``failed``: a wrong answer on some input: the shrunk counterexample, the worst example seen;
- ``error``: the candidate cannot run as declared (its signature, the outputs' kind, arity or
  dtype, raising on the first example, a time limit, a missing backend), with a hint;
- ``not run``: an optional dependency is missing, or no example could be drawn.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, reject, seed as hypothesis_seed, settings
from hypothesis.errors import HypothesisException, Unsatisfiable

from seqcheck.equiv.budget import Budget, OutOfRange
from seqcheck.equiv.metrics import abs_error

STATUSES = ("passed", "failed", "error", "not run")
DEFAULT_TIMEOUT = 120.0
"""Seconds one example may take (candidate and reference together) before the check ends in error."""
PROGRESS_AFTER = 5.0
"""Seconds of checking before progress lines start (one every PROGRESS_AFTER seconds)."""


class UsageError(TypeError):
    """The candidate cannot run as declared; ``hint`` names the fix. Raised by ``replay``; ``check``
    turns it into a result with status "error"."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(f"{message}{' (hint: ' + hint + ')' if hint else ''}")
        self.message, self.hint = message, hint


@dataclass
class Comparison:
    """The verdict on one example: worst error relative to its budget, and where it occurred.

    ``kind`` is "ok", "inaccurate" (over budget), "nonfinite" (NaN/Inf where the reference is
    finite), "malformed" (outputs of the wrong number or shape) or "raised". At the worst
    element: its output and full ``index`` (axis name -> position), the ``expected`` and
    ``actual`` values; ``over_budget`` elements of ``elements`` exceed their budget, at the
    ``positions`` listed (along the time axis).
    """

    passed: bool
    max_error: float
    budget: float
    worst_ratio: float
    where: str
    message: str
    kind: str = "ok"
    output: str = ""
    index: dict = field(default_factory=dict)
    expected: object = None
    actual: object = None
    over_budget: int = 0
    elements: int = 0
    positions: tuple = ()
    hint: str = ""
    error: BaseException | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        return self.message


@dataclass
class Counterexample:
    """Failing arguments, what went wrong on them, and a runnable reproducer (it exits 1 while
    the failure reproduces)."""

    args: dict
    message: str
    reproducer: str
    comparison: Comparison | None = None

    def __str__(self) -> str:
        return f"{self.message}\n\nreproducer:\n{self.reproducer}"


@dataclass
class Result:
    """What ``check`` (or a claim) found: status, worst error against its budget, examples run.

    ``counterexample`` is the shrunk failing example (status "failed", or the example that ran
    out of time); ``worst_example`` the example with the largest error-to-budget ratio seen
    before shrinking; ``reason`` and ``hint`` say why a check is "error" or "not run".
    """

    key: str
    status: str
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
    worst_example: Counterexample | None = None
    seconds: float = 0.0
    reason: str = ""
    hint: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __str__(self) -> str:
        lines = [f"{self.status.upper()} {self.key} [{self.dtype}, {self.backend}] after {self.examples} examples "
                 f"(seed {self.seed})"]
        if self.status in ("error", "not run"):
            lines.append(f"  {self.reason}")
            if self.hint:
                lines.append(f"  hint: {self.hint}")
        else:
            if self.status == "passed":
                lines.append(f"  worst error {self.max_error:.3g} against budget {self.budget:.3g} "
                             f"(ratio {self.worst_ratio:.3g}){' in ' + self.where if self.where else ''}")
            lines.append(f"  budget rule: {self.rule}")
        if self.status == "failed":
            found = self.counterexample
            lines += [f"  shrunk counterexample ({_describe_shapes(found.args)}):",
                      "    " + found.message.replace("\n", "\n    ")]
            if found.comparison is not None and found.comparison.hint:
                lines.append(f"  hint: {found.comparison.hint}")
            if self.worst_example is not None:
                lines.append(f"  worst example seen ({_describe_shapes(self.worst_example.args)}): "
                             f"{self.worst_example.message.splitlines()[0]}")
        if self.counterexample is not None:
            lines += ["", "reproducer (exits 1 while it reproduces):", self.counterexample.reproducer]
        return "\n".join(lines)


def compare(actual: tuple, expected: tuple, budget: Budget, names: tuple, time_axis: int,
            axes: tuple = ()) -> Comparison:
    """Per-position comparison of every output against its budget (a scalar, one value per
    position along ``time_axis``, or one per element); NaN/Inf never pass.

    ``axes`` names each output's axes (for the worst element's index)."""
    if len(actual) != len(expected):
        return _broken(f"returned {len(actual)} output(s), expected {len(expected)} "
                       f"({', '.join(names[:len(expected)])})", kind="malformed")
    worst = Comparison(True, 0.0, 0.0, 0.0, "", "")
    over, elements, positions = 0, 0, set()
    for number, (got, want, allowed) in enumerate(zip(actual, expected, budget.per_output)):
        name = names[number] if number < len(names) else f"output {number}"
        if np.shape(got) != np.shape(want):
            return _broken(f"output {name!r} has shape {np.shape(got)}, expected {np.shape(want)}",
                           kind="malformed", hint=_layout_hint(np.shape(got), np.shape(want)))
        errors = np.atleast_1d(abs_error(got, want))
        axis = time_axis % errors.ndim
        allowed = np.asarray(allowed, dtype=np.float64)
        if allowed.ndim > 1 and allowed.shape == errors.shape:  # one budget per element
            allowed_here = allowed
        else:  # one per position along the time axis (or one for all)
            per_position = np.broadcast_to(allowed, (errors.shape[axis],))
            allowed_here = np.expand_dims(per_position, tuple(a for a in range(errors.ndim) if a != axis))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(errors == 0, 0.0, errors / allowed_here)
        exceeded = ratios > 1
        over, elements = over + int(exceeded.sum()), elements + errors.size
        positions |= set(np.nonzero(exceeded.any(axis=tuple(a for a in range(errors.ndim) if a != axis)))[0].tolist())
        if ratios.size and (not worst.where or ratios.max() > worst.worst_ratio):
            flat = int(np.argmax(ratios))
            at = np.unravel_index(flat, errors.shape)
            index = dict(zip(_axis_names(axes, number, errors.ndim, axis), map(int, at)))
            want_at, got_at = np.atleast_1d(want)[at], np.atleast_1d(got)[at]
            worst = Comparison(bool(ratios[at] <= 1), float(errors[at]),
                               float(np.broadcast_to(allowed_here, errors.shape)[at]),
                               float(ratios[at]), f"{name!r} at {_format_index(index)}", "",
                               kind="ok", output=name, index=index, expected=_scalar(want_at), actual=_scalar(got_at))
    worst.over_budget, worst.elements, worst.positions = over, elements, tuple(sorted(positions))
    if np.isinf(worst.worst_ratio) and np.isinf(worst.max_error):
        worst.kind = "nonfinite"
        worst.message = (f"output {worst.output!r} is NaN/Inf ({_value(worst.actual)}) at {_format_index(worst.index)} "
                         f"where the reference is {_value(worst.expected)}; {_over_text(worst)}")
        return worst
    if not worst.passed:
        worst.kind = "inaccurate"
    worst.message = (f"worst error {worst.max_error:.3g} against budget {worst.budget:.3g} "
                     f"(ratio {worst.worst_ratio:.3g}) in {worst.where}")
    if worst.where:
        worst.message += f": expected {_value(worst.expected)}, got {_value(worst.actual)}"
    if not worst.passed:
        worst.message += f"; {_over_text(worst)}"
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
    seed: int,
    dtype: str,
    backend: str,
    reproducer: Callable[[dict], str],
    rule: str,
    axes: tuple = (),
    timeout: float | None = DEFAULT_TIMEOUT,
    progress: Callable[[str], None] | None = None,
    first_example_errors: bool = False,
    hint_for: Callable[[BaseException], str] = lambda error: "",
) -> Result:
    """Run ``relation`` on examples from ``strategy`` until one breaks its budget; shrink it.

    Each example runs within ``timeout`` seconds. ``relation`` raises :class:`UsageError` when
    the implementation cannot run as declared (status "error"); with ``first_example_errors``
    (a user's candidate), raising or malformed outputs on the first example are errors too,
    with ``hint_for(exception)`` as the hint. ``progress`` receives a line every few seconds.
    """
    state = {"examples": 0, "worst": None, "failure": None, "abort": None}
    started = time.perf_counter()
    last_line = [started]

    def judge(args: dict) -> Comparison:
        try:
            actual, expected = relation(args)
            budget = tolerance(args, expected)
        except OutOfRange:
            reject()
        except UsageError:
            raise
        except (Exception, SystemExit) as error:  # a crash of the implementation under test is a failure
            tail = "".join(traceback.format_exception(error)[-3:]).strip()
            return _broken(f"raised {type(error).__name__}: {error}\n{tail}", kind="raised", error=error)
        return compare(actual, expected, budget, names, time_axis, axes)

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
        first = state["examples"] == 1
        try:
            outcome = _within(timeout, judge, args)
        except _TimedOut:
            state["abort"] = ("error", f"example {state['examples']} ({_describe_shapes(args)}) did not finish "
                              f"within {timeout:g} s", "the candidate may hang; if it is only slow, raise the "
                              "limit (timeout=... or --timeout) or narrow the inputs", args)
            raise _Abort() from None
        except UsageError as error:
            state["abort"] = ("error", error.message, error.hint, None)
            raise _Abort() from None
        if first_example_errors and first and outcome.kind in ("raised", "malformed"):
            hint = outcome.hint or (hint_for(outcome.error) if outcome.error is not None else "")
            state["abort"] = ("error", f"on the first example ({_describe_shapes(args)}) the candidate {outcome.message}",
                              hint or "make the candidate run on these arguments, or narrow the inputs "
                              "(inputs_for(key, ...)) to what it supports", None)
            raise _Abort()
        worst = state["worst"]
        if worst is None or outcome.worst_ratio > worst[0].worst_ratio:
            state["worst"] = (outcome, args)
        _report_progress(progress, key, seed, state, started, last_line)
        if not outcome.passed:
            state["failure"] = (args, outcome)
            raise _Broken(outcome.message)

    problem = None
    try:
        with _no_local_constants():
            holds()
    except _Abort:
        problem = state["abort"]
    except Unsatisfiable:
        pass
    except (_Broken, HypothesisException):
        pass
    except Exception as error:  # raised while drawing inputs: the strategy is broken
        problem = ("error", f"drawing the inputs raised {type(error).__name__}: {error}",
                   "the input strategy cannot build this example; check the options given to inputs_for", None)
    seconds = time.perf_counter() - started
    common = dict(key=key, seed=seed, dtype=dtype, backend=backend, rule=rule, seconds=seconds)
    if problem is not None:
        status, reason, hint, args = problem
        example = None if args is None else Counterexample(args, reason, reproducer(args))
        return Result(status=status, max_error=float("nan"), budget=float("nan"), worst_ratio=float("nan"),
                      examples=state["examples"], reason=reason, hint=hint, counterexample=example,
                      shapes=_shapes(args) if args is not None else {}, **common)
    if state["examples"] == 0 or (state["failure"] is None and state["worst"] is None):
        return Result(status="not run", max_error=float("nan"), budget=float("nan"), worst_ratio=float("nan"),
                      examples=0, reason="no example could be drawn: every draw was filtered out",
                      hint="the inputs are too narrow (or every example overflows the dtype); widen them", **common)
    worst, worst_args = state["worst"]
    counterexample = worst_example = None
    if state["failure"] is not None:
        args, outcome = state["failure"]
        counterexample = Counterexample(args, outcome.message, reproducer(args), outcome)
        if worst_args is not args and worst.worst_ratio > outcome.worst_ratio:
            worst_example = Counterexample(worst_args, worst.message, reproducer(worst_args), worst)
        worst, worst_args = outcome, args
    return Result(status="passed" if counterexample is None else "failed", max_error=worst.max_error,
                  budget=worst.budget, worst_ratio=worst.worst_ratio, examples=state["examples"],
                  where=worst.where, shapes=_shapes(worst_args), counterexample=counterexample,
                  worst_example=worst_example, **common)


def print_progress(line: str) -> None:
    """The default progress sink: a line on standard error."""
    print(line, file=sys.stderr, flush=True)


class _Broken(AssertionError):
    pass


class _Abort(BaseException):
    """Ends a check at once: Hypothesis shrinks on an Exception, not on a BaseException."""


class _TimedOut(Exception):
    pass


def _within(limit: float | None, fn, *args):
    """``fn(*args)`` on a daemon thread, given ``limit`` seconds; a hung call is left behind
    (it cannot be killed) and the check ends."""
    if limit is None:
        return fn(*args)
    box = {}

    def target():
        try:
            box["value"] = fn(*args)
        except BaseException as error:  # re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="seqcheck-example", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise _TimedOut()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _report_progress(progress, key, seed, state, started, last_line) -> None:
    now = time.perf_counter()
    if progress is None or now - started < PROGRESS_AFTER or now - last_line[0] < PROGRESS_AFTER:
        return
    last_line[0] = now
    worst = state["worst"][0].worst_ratio if state["worst"] else 0.0
    progress(f"seqcheck {key} (seed {seed}): {state['examples']} examples, worst ratio {worst:.3g} so far, "
             f"{now - started:.0f} s")


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


def _broken(message: str, where: str = "", kind: str = "inaccurate", hint: str = "", error=None) -> Comparison:
    return Comparison(False, float("inf"), 0.0, float("inf"), where, message, kind=kind, hint=hint, error=error)


def _shapes(args: dict) -> dict:
    return {name: list(np.shape(value)) for name, value in args.items() if isinstance(value, np.ndarray)}


def _describe_shapes(args: dict) -> str:
    arrays = [f"{name} {tuple(np.shape(value))}" for name, value in args.items() if isinstance(value, np.ndarray)]
    return ", ".join(arrays) or "no arrays"


_DEFAULT_AXES = {4: ("batch", "time", "head", "channel"), 3: ("batch", "time", "channel")}


def _axis_names(axes: tuple, number: int, ndim: int, time_axis: int) -> tuple:
    """The declared axis names of output ``number``, else (batch, time, ...) by convention for the
    first output when its time axis is 1, else axis numbers."""
    if number < len(axes) and axes[number] is not None and len(axes[number]) == ndim:
        return tuple(axes[number])
    if number == 0 and time_axis == 1 and ndim in _DEFAULT_AXES:
        return _DEFAULT_AXES[ndim]
    return tuple(f"axis {a}" for a in range(ndim))


def _format_index(index: dict) -> str:
    return "(" + ", ".join(f"{name} {value}" for name, value in index.items()) + ")"


def _scalar(value):
    value = np.asarray(value).item()
    return complex(value) if isinstance(value, complex) else (float(value) if isinstance(value, (int, float)) else value)


def _value(value) -> str:
    if isinstance(value, complex):
        return f"{value.real:.9g}{value.imag:+.9g}j"
    return f"{value:.9g}" if isinstance(value, float) else repr(value)


def _over_text(worst: Comparison) -> str:
    return (f"{worst.over_budget} of {worst.elements} elements over budget, at time positions "
            f"{_ranges(worst.positions)}")


def _ranges(values: tuple, limit: int = 8) -> str:
    """1, 2, 3, 7 -> '1-3, 7' (at most ``limit`` runs)."""
    runs = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (f", ... ({len(runs) - limit} more runs)" if len(runs) > limit else "")


def _layout_hint(got: tuple, want: tuple) -> str:
    if len(got) == len(want) and sorted(got) == sorted(want):
        return ("the axes look permuted: seqcheck's layout is batch first, then time, e.g. (B, T, H, D); "
                "transpose the outputs, or wrap the kernel with an adapter (seqcheck.equiv.adapters)")
    return ""
