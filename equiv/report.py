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
from seqcheck.equiv.check import check, run_claim
from seqcheck.equiv.engine import compare
from seqcheck.equiv.metrics import error_per_position
from seqcheck.equiv.registry import Claim, all_claims, as_outputs
from seqcheck.equiv.report_render import write_report
from seqcheck.gpu.backend import gpu_name
from seqcheck.gpu.registry import implementations, use_simulator_without_gpu, where
from seqcheck.properties import profiles


def claim_seed(key: str) -> int:
    return zlib.crc32(key.encode())


def run_report(out="report", profile="dev", only=None, progress=print) -> dict:
    """Run the claims whose key contains ``only`` (all when None) and write the report to ``out``."""
    use_simulator_without_gpu()
    profiles.load(profile)
    claims = [claim for claim in all_claims() if only is None or only in claim.key]
    kernels = [(impl, dtype) for impl in implementations() for dtype in impl.dtypes
               if only is None or only in gpu_key(impl, dtype)]
    if not claims and not kernels:
        raise ValueError(f"only: no claim or GPU implementation key contains {only!r}")
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    jobs = [(claim.key, lambda claim=claim: claim_record(claim)) for claim in claims]
    jobs += [(gpu_key(impl, dtype), lambda impl=impl, dtype=dtype: gpu_record(impl, dtype)) for impl, dtype in kernels]
    records = []
    for number, (key, run) in enumerate(jobs, 1):
        record = run()
        records.append(record)
        progress(f"[{number}/{len(jobs)}] {record['status'].upper():7} {key}: "
                 f"{_summary(record)} ({record['seconds']:.1f} s)")
    meta = {"profile": profile, "seqcheck_version": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "started": started.isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - clock, "devices": sorted({record["device"] for record in records})}
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
    started = time.perf_counter()
    sweeps = [sweep_record(claim, sweep, record["seed"]) for sweep in claim.sweeps]
    return {**record, "status": "passed" if result.passed else "failed",
            "reason": None if result.passed else result.counterexample.message, "examples": result.examples,
            "shapes": result.shapes, "budget": {"rule": claim.rule, "value": result.budget},
            "max_error": result.max_error, "worst_ratio": result.worst_ratio, "counterexample": _counterexample(result),
            "sweeps": sweeps, "seconds": result.seconds + time.perf_counter() - started}


def gpu_key(impl, dtype: str) -> str:
    return f"gpu.{impl.name}[{dtype}]"


def gpu_record(impl, dtype: str) -> dict:
    """A GPU implementation checked with ``equiv.check``, as a user's kernel would be; under the
    simulator (or NumPy, for CuPy code without a GPU) with tiny inputs and the rows say so."""
    place = where(impl.runtime)
    key = gpu_key(impl, dtype)
    result = check(impl.load(), impl.form, dtype=dtype, inputs=impl.inputs(place == "simulator"),
                   seed=claim_seed(key), max_examples=5 if place == "simulator" else None)
    return {"key": key, "family": "gpu", "claim": f"{impl.runtime} {impl.name} computes {impl.form}",
            "exactness": "float64 bound" if dtype == "float64" else f"{dtype} baseline budget", "dtype": dtype, "backend": impl.runtime,
            "device": place if place != "gpu" else gpu_name(), "seed": result.seed,
            "status": "passed" if result.passed else "failed",
            "reason": None if result.passed else result.counterexample.message, "examples": result.examples,
            "shapes": result.shapes, "budget": {"rule": result.rule, "value": result.budget},
            "max_error": result.max_error, "worst_ratio": result.worst_ratio, "counterexample": _counterexample(result),
            "sweeps": [], "seconds": result.seconds}


def sweep_record(claim: Claim, sweep, seed: int) -> dict:
    """At each value: the worst error against its budget, and the mean over positions of the first
    output's error (how a whole sequence fares, not only its worst row)."""
    errors, budgets, means = [], [], []
    for value in sweep.values:
        args = sweep.make_args(value, np.random.default_rng(seed))
        lhs, rhs = (as_outputs(side) for side in claim.relation(claim.default_impl, args))
        verdict = compare(lhs, rhs, Budget(as_outputs(claim.bound(args, rhs)), claim.rule), claim.outputs,
                          claim.time_axis)
        errors.append(verdict.max_error)
        budgets.append(verdict.budget)
        means.append(float(np.mean(error_per_position(lhs[0], rhs[0], claim.time_axis))))
    return {"param": sweep.param, "label": sweep.label, "values": list(sweep.values), "error": errors,
            "budget": budgets, "mean_error": means}


def _counterexample(result) -> dict | None:
    found = result.counterexample
    if found is None:
        return None
    return {"args": _describe(found.args), "message": found.message, "reproducer": found.reproducer}


def _summary(record: dict) -> str:
    if record["status"] == "not run":
        return record["reason"]
    return (f"{record['examples']} examples, worst error {record['max_error']:.2g} "
            f"against budget {record['budget']['value']:.2g}")


def _describe(args: dict) -> str:
    return ", ".join(f"{name}=array{tuple(np.shape(value))}" if isinstance(value, np.ndarray) else f"{name}={value!r}"
                     for name, value in args.items())
