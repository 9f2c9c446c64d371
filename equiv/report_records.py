"""The report's records as typed data: one ``Record`` per claim or GPU row, its ``Series`` (one
per sweep) and its ``Found`` counterexample; and report.json's layout (``SCHEMA_VERSION``).

report.json is ``{"schema_version", "meta", "summary", "claims"}``: ``summary`` counts the
records by status (a GPU row "passed (simulator)" counts as passed), ``claims`` holds each
record's ``to_json()``, its non-finite numbers written "inf", "-inf" or "nan".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from seqcheck.equiv.engine import STATUSES

SCHEMA_VERSION = 1
"""Raised when a field of report.json is renamed, removed or changes meaning (adding one keeps it)."""

def base_status(status: str) -> str:
    """"passed (simulator)" -> "passed"."""
    return status.split(" (")[0]


@dataclass(frozen=True)
class Found:
    """A failed record's shrunk counterexample: its arguments (shapes), the verdict's message and
    a reproducer that runs on its own."""

    args: str
    message: str
    reproducer: str


@dataclass(frozen=True)
class Series:
    """One sweep of a claim: the worst error, the budget at it and the mean error over positions
    at each swept value; ``seed`` is set when several claims' sweeps share their data."""

    param: str
    label: str
    values: tuple
    error: tuple
    budget: tuple
    mean_error: tuple | None = None
    seed: int | None = None


@dataclass(frozen=True)
class Point:
    """One sweep point as a job computes it (``job_error``: why the job could not)."""

    error: float
    budget: float
    mean_error: float
    seconds: float
    job_error: str | None = None


@dataclass(frozen=True)
class Record:
    """One row of the report (its status one of ``STATUSES``, or for a GPU row not run on a GPU
    one of them followed by where it ran: "passed (simulator)", "failed (numpy)"): what was checked (key, claim, exactness, dtype, backend, device,
    seed) and what came of it. Nothing measured (not run, an error) leaves the numbers None."""

    key: str
    family: str
    claim: str
    exactness: str
    dtype: str
    backend: str
    device: str
    seed: int
    status: str = "not run"
    reason: str | None = None
    hint: str = ""
    examples: int = 0
    shapes: dict = field(default_factory=dict)
    budget_rule: str = ""
    budget: float | None = None
    max_error: float | None = None
    worst_ratio: float | None = None
    counterexample: Found | None = None
    sweeps: tuple[Series, ...] = ()
    seconds: float = 0.0

    @property
    def ratio_exceeded(self) -> bool:
        return self.worst_ratio is not None and not self.worst_ratio <= 1

    @property
    def failure_message(self) -> str:
        return (self.counterexample and self.counterexample.message) or self.reason or ""

    def to_json(self) -> dict:
        """The record as report.json writes it (budget as {"rule", "value"}; sweeps as lists)."""
        data = {name: getattr(self, name) for name in ("key", "family", "claim", "exactness", "dtype", "backend",
                                                       "device", "seed", "status", "reason", "hint", "examples",
                                                       "shapes")}
        data["budget"] = {"rule": self.budget_rule, "value": self.budget}
        data.update(max_error=self.max_error, worst_ratio=self.worst_ratio,
                    counterexample=None if self.counterexample is None else asdict(self.counterexample),
                    sweeps=[_series_json(series) for series in self.sweeps], seconds=self.seconds)
        return _json_safe(data)

    @classmethod
    def from_json(cls, data: dict) -> Record:
        """The inverse of ``to_json`` (a report.json record read back)."""
        budget = data.get("budget") or {}
        found = data.get("counterexample")
        return cls(**{name: data[name] for name in ("key", "family", "claim", "exactness", "dtype", "backend",
                                                     "device", "seed", "status")},
                   reason=data.get("reason"), hint=data.get("hint") or "", examples=data.get("examples", 0),
                   shapes=data.get("shapes") or {}, budget_rule=budget.get("rule") or "",
                   budget=_number(budget.get("value")), max_error=_number(data.get("max_error")),
                   worst_ratio=_number(data.get("worst_ratio")), counterexample=found and Found(**found),
                   sweeps=tuple(_series_from_json(s) for s in data.get("sweeps") or ()),
                   seconds=data.get("seconds", 0.0))


def summary(records: list[Record]) -> dict[str, int]:
    """How many records there are, and how many of each status."""
    counts = {status: sum(base_status(record.status) == status for record in records) for status in STATUSES}
    return {"records": len(records), **counts}


def report_json(records: list[Record], meta: dict) -> dict:
    return {"schema_version": SCHEMA_VERSION, "meta": _json_safe(meta), "summary": summary(records),
            "claims": [record.to_json() for record in records]}


def _series_json(series: Series) -> dict:
    data = {"param": series.param, "label": series.label, "values": list(series.values), "seed": series.seed,
            "error": list(series.error), "budget": list(series.budget)}
    if series.mean_error is not None:
        data["mean_error"] = list(series.mean_error)
    return data


def _series_from_json(data: dict) -> Series:
    mean = data.get("mean_error")
    return Series(param=data["param"], label=data["label"], values=tuple(data["values"]),
                  error=tuple(map(_number, data["error"])), budget=tuple(map(_number, data["budget"])),
                  mean_error=None if mean is None else tuple(map(_number, mean)), seed=data.get("seed"))


def _number(value):
    return float(value) if isinstance(value, str) else value


def _json_safe(value):
    """value with every non-finite float written "inf", "-inf" or "nan" (JSON has no literal)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
