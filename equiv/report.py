"""``seqcheck report``: run every registered claim, then write index.html, report.json, report.md.

Each claim runs under the chosen Hypothesis profile with a seed fixed by its key, so two runs of
the same profile give the same report. A failing claim is recorded with its counterexample and
the run goes on; a claim whose optional dependency is missing is recorded as not run.
"""

from __future__ import annotations

import importlib.util
import platform
import sys
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from seqcheck import __version__
from seqcheck.equiv.budget import Budget
from seqcheck.equiv.check import run_claim
from seqcheck.equiv.engine import compare
from seqcheck.equiv.registry import Claim, all_claims, as_outputs
from seqcheck.equiv.report_render import write_report
from seqcheck.properties import profiles


def claim_seed(key: str) -> int:
    return zlib.crc32(key.encode())


def run_report(out="report", profile="dev", only=None, progress=print) -> dict:
    """Run the claims whose key contains ``only`` (all when None) and write the report to ``out``."""
    profiles.load(profile)
    selected = [claim for claim in all_claims() if only is None or only in claim.key]
    if not selected:
        raise ValueError(f"only: no claim key contains {only!r}")
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    records = []
    for number, claim in enumerate(selected, 1):
        record = claim_record(claim)
        records.append(record)
        progress(f"[{number}/{len(selected)}] {record['status'].upper():7} {claim.key}: "
                 f"{_summary(record)} ({record['seconds']:.1f} s)")
    meta = {"profile": profile, "seqcheck_version": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "started": started.isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - clock, "devices": ["cpu"]}
    paths = write_report(records, out, meta)
    progress(f"wrote {paths['html']}, {paths['json']}, {paths['md']}")
    return {"paths": paths, "records": records}


def claim_record(claim: Claim) -> dict:
    missing = [name for name in claim.requires if importlib.util.find_spec(name) is None]
    record = {"key": claim.key, "family": claim.family, "claim": claim.statement, "exactness": claim.exactness,
              "dtype": "float64", "backend": "numpy", "device": "cpu", "seed": claim_seed(claim.key)}
    if missing:
        return {**record, "status": "not run", "reason": f"{', '.join(missing)} is not installed", "examples": 0,
                "shapes": {}, "budget": {"rule": claim.rule, "value": None}, "max_error": None,
                "worst_ratio": None, "counterexample": None, "sweeps": [], "seconds": 0.0}
    result = run_claim(claim, seed=record["seed"])
    counterexample = None
    if result.counterexample is not None:
        counterexample = {"args": _describe(result.counterexample.args), "message": result.counterexample.message,
                          "reproducer": result.counterexample.reproducer}
    started = time.perf_counter()
    sweeps = [sweep_record(claim, sweep, record["seed"]) for sweep in claim.sweeps]
    return {**record, "status": "passed" if result.passed else "failed",
            "reason": None if result.passed else result.counterexample.message, "examples": result.examples,
            "shapes": result.shapes, "budget": {"rule": claim.rule, "value": result.budget},
            "max_error": result.max_error, "worst_ratio": result.worst_ratio, "counterexample": counterexample,
            "sweeps": sweeps, "seconds": result.seconds + time.perf_counter() - started}


def sweep_record(claim: Claim, sweep, seed: int) -> dict:
    errors, budgets = [], []
    for value in sweep.values:
        args = sweep.make_args(value, np.random.default_rng(seed))
        lhs, rhs = (as_outputs(side) for side in claim.relation(claim.default_impl, args))
        verdict = compare(lhs, rhs, Budget(as_outputs(claim.bound(args, rhs)), claim.rule), claim.outputs,
                          claim.time_axis)
        errors.append(verdict.max_error)
        budgets.append(verdict.budget)
    return {"param": sweep.param, "label": sweep.label, "values": list(sweep.values), "error": errors,
            "budget": budgets}


def _summary(record: dict) -> str:
    if record["status"] == "not run":
        return record["reason"]
    return (f"{record['examples']} examples, worst error {record['max_error']:.2g} "
            f"against budget {record['budget']['value']:.2g}")


def _describe(args: dict) -> str:
    return ", ".join(f"{name}=array{tuple(np.shape(value))}" if isinstance(value, np.ndarray) else f"{name}={value!r}"
                     for name, value in args.items())
