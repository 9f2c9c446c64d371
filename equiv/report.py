"""``seqcheck report``: run every registered claim, then write index.html, report.json, report.md.

Each claim runs under the chosen Hypothesis profile with a seed fixed by its key, so two runs of
the same profile give the same report. A failing claim is recorded with its counterexample and
the run goes on; a claim whose optional dependency is missing is recorded as not run. A job that
raises, outlives its time limit or whose worker process dies is recorded as an error of that job
and the report goes on: it always completes.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import importlib.util
import multiprocessing
import os
import traceback
import platform
import time
import zlib
from datetime import datetime, timezone

import numpy as np

from seqcheck import __version__
from seqcheck.equiv.budget import Budget
from seqcheck.equiv.check import check_implementation, run_claim
from seqcheck.equiv.engine import compare
from seqcheck.equiv.metrics import error_per_position
from seqcheck.equiv.registry import Claim, all_claims, as_outputs, get_claim, implementations
from seqcheck.equiv.report_records import Found, Point, Record, Series
from seqcheck.equiv.report_render import write_report
from seqcheck.gpu.backend import gpu_name, use_simulator_without_gpu, where
from seqcheck.properties import profiles


JOB_TIMEOUT = 900.0
"""Seconds one job (a claim, a sweep point, a GPU row) may run before it is recorded as an error."""


class ReportArgumentError(ValueError):
    """``run_report`` was called with an argument it cannot use (before any claim runs)."""


def claim_seed(key: str) -> int:
    return zlib.crc32(key.encode())


def run_report(out="report", profile="dev", only=None, progress=print, workers=None,
               job_timeout=JOB_TIMEOUT) -> dict:
    """Run the claims whose key contains ``only`` (all when None) and write the report to ``out``.

    The claims, each point of their sweeps and the GPU rows are independent jobs, run on
    ``workers`` processes (default: every CPU this process may use; 1 runs them here). Seeds are
    fixed by key, so the report does not depend on the number of workers. A job running longer
    than ``job_timeout`` seconds (on worker processes) is stopped and recorded as an error.
    """
    use_simulator_without_gpu()
    profiles.load(profile)
    workers = _workers(workers)
    claims = [claim for claim in all_claims() if only is None or only in claim.key]
    kernels = [(impl, dtype) for impl in implementations() for dtype in impl.dtypes
               if only is None or only in gpu_key(impl.name, dtype)]
    if not claims and not kernels:
        raise ReportArgumentError(f"only: no claim or GPU implementation key contains {only!r}")
    started, clock = datetime.now(timezone.utc), time.perf_counter()
    jobs = [("sweep", claim.key, s, v) for claim in claims if not _missing(claim)
            for s, sweep in enumerate(claim.sweeps) for v in range(len(sweep.values))]  # the longest jobs first
    jobs += [("claim", claim.key) for claim in claims] + [("gpu", impl.name, dtype) for impl, dtype in kernels]
    done = {}
    for number, (job, result) in enumerate(_run_jobs(jobs, workers, profile, job_timeout), 1):
        done[job] = result
        progress(f"[{number}/{len(jobs)}] {_progress_line(job, result)}")
    records = [_with_sweeps(done[("claim", claim.key)], claim, done) for claim in claims]
    records += [done[("gpu", impl.name, dtype)] for impl, dtype in kernels]
    meta = {"profile": profile, "seqcheck_version": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "started": started.isoformat(timespec="seconds"),
            "seconds": time.perf_counter() - clock, "workers": workers,
            "devices": sorted({record.device for record in records})}
    paths = write_report(records, out, meta)
    progress(f"wrote {paths['html']}, {paths['json']}, {paths['md']}")
    return {"paths": paths, "records": records}


def _workers(workers) -> int:
    if workers is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ReportArgumentError(f"workers must be a positive int; got {workers!r}")
    return workers


def _run_jobs(jobs: list, workers: int, profile: str, job_timeout: float, run=None):
    """(job, result) pairs as they finish; in fresh processes with one BLAS thread each (pebble's
    pool, which stops a job past its time limit and replaces a worker that dies). A job that
    raises, times out or loses its worker gives an error record. ``run`` (default ``run_job``)
    computes one job's (job, record)."""
    run = run_job if run is None else run
    if workers == 1:
        for job in jobs:
            try:
                yield run(job)
            except Exception as error:
                yield job, job_error(job, f"raised {type(error).__name__}: {error}", traceback.format_exc())
        return
    import pebble

    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold CUDA or BLAS threads
    with _one_blas_thread(), pebble.ProcessPool(min(workers, len(jobs)), initializer=_start_worker,
                                                initargs=(profile,), context=context) as pool:
        futures = {pool.schedule(run, args=(job,), timeout=job_timeout): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            try:
                yield future.result()
            except concurrent.futures.TimeoutError:
                yield job, job_error(job, f"did not finish within {job_timeout:g} s and was stopped")
            except pebble.ProcessExpired as error:
                yield job, job_error(job, f"its worker process died ({error}; exit code {error.exitcode})")
            except Exception as error:
                yield job, job_error(job, f"raised {type(error).__name__}: {error}",
                                     getattr(error, "traceback", "") or "")


def job_error(job: tuple, reason: str, details: str = "") -> Record | Point:
    """The record of a job that could not finish: an error, with the reason."""
    if job[0] == "sweep":
        return Point(error=float("nan"), budget=float("nan"), mean_error=float("nan"), seconds=0.0, job_error=reason)
    kind, key, *rest = job
    head = _claim_head(get_claim(key)) if kind == "claim" else _gpu_head(_implementation(key), rest[0])
    return dataclasses.replace(head, **_unmeasured("error", f"the job {reason}", "", details.strip()))


@contextlib.contextmanager
def _one_blas_thread():
    """The environment the workers start with: one BLAS/OpenMP thread each (the workers are the parallelism)."""
    names = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: "1" for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def _start_worker(profile: str) -> None:
    import seqcheck.equiv  # noqa: F401  (registers every family's forms and claims)

    use_simulator_without_gpu()
    profiles.load(profile)


def run_job(job: tuple) -> tuple:
    """One job of the report: ("claim", key), ("sweep", key, sweep index, value index) or
    ("gpu", implementation name, dtype). Returns (job, its record)."""
    kind, key, *rest = job
    if kind == "claim":
        return job, claim_record(get_claim(key))
    if kind == "sweep":
        claim = get_claim(key)
        return job, sweep_point(claim, claim.sweeps[rest[0]], rest[1], claim_seed(key))
    return job, gpu_record(_implementation(key), rest[0])


def _implementation(name: str):
    return next(impl for impl in implementations() if impl.name == name)


def _progress_line(job: tuple, result: Record | Point) -> str:
    if job[0] == "sweep" and result.job_error is not None:
        return f"ERROR   {job[1]}: sweep point {job[3]}: the job {result.job_error}"
    if job[0] == "sweep":
        sweep = get_claim(job[1]).sweeps[job[2]]
        return (f"swept   {job[1]}: {sweep.label} = {sweep.values[job[3]]:g}: error {result.error:.2g} "
                f"against budget {result.budget:.2g} ({result.seconds:.1f} s)")
    key = job[1] if job[0] == "claim" else gpu_key(job[1], job[2])
    return f"{result.status.upper():7} {key}: {_summary(result)} ({result.seconds:.1f} s)"


def _with_sweeps(record: Record, claim: Claim, done: dict) -> Record:
    """The claim's record with its sweeps gathered from their points (and their time added)."""
    sweeps, seconds = [], record.seconds
    for s, sweep in enumerate(claim.sweeps if record.status != "not run" else ()):
        points = [done[("sweep", claim.key, s, v)] for v in range(len(sweep.values))]
        seconds += sum(point.seconds for point in points)
        sweeps.append(Series(param=sweep.param, label=sweep.label, values=tuple(sweep.values), seed=sweep.seed,
                             error=tuple(p.error for p in points), budget=tuple(p.budget for p in points),
                             mean_error=tuple(p.mean_error for p in points)))
        broken = [f"{sweep.param} = {value:g}: the job {point.job_error}"
                  for value, point in zip(sweep.values, points) if point.job_error is not None]
        if broken and record.status == "passed":
            record = dataclasses.replace(record, status="error", reason="sweep point " + "; ".join(broken))
    return dataclasses.replace(record, sweeps=tuple(sweeps), seconds=seconds)


def _missing(claim: Claim) -> list[str]:
    """The claim's optional dependencies that are not installed."""
    return [name for name in claim.requires if importlib.util.find_spec(name) is None]


def _claim_head(claim: Claim) -> Record:
    """What a claim's record says before it runs."""
    return Record(key=claim.key, family=claim.family, claim=claim.statement, exactness=claim.exactness,
                  dtype="float64", backend="numpy", device="cpu", seed=claim_seed(claim.key))


def claim_record(claim: Claim) -> Record:
    record = _claim_head(claim)
    if missing := _missing(claim):
        return dataclasses.replace(record, **_not_run(missing, claim.rule))
    return dataclasses.replace(record, **_outcome(run_claim(claim, seed=record.seed), claim.rule))


def gpu_key(name: str, dtype: str) -> str:
    return f"gpu.{name}[{dtype}]"


def gpu_record(impl, dtype: str) -> Record:
    """A GPU implementation checked with ``equiv.check``, as a user's kernel would be; under the
    simulator (or NumPy, for CuPy code without a GPU) with tiny inputs, and then its status says
    so ("passed (simulator)"), so no row reads as verified on a GPU that was not."""
    place = where(impl.runtime)
    record = _gpu_head(impl, dtype)
    if missing := impl.missing():
        return dataclasses.replace(record, **_not_run(missing, ""))
    result = check_implementation(impl, dtype, seed=record.seed)
    outcome = _outcome(result, result.rule)
    if place != "gpu" and outcome["status"] in ("passed", "failed"):
        outcome["status"] = f"{outcome['status']} ({place})"
    return dataclasses.replace(record, **outcome)


def _gpu_head(impl, dtype: str) -> Record:
    """What a GPU row's record says before it runs."""
    place, key = where(impl.runtime), gpu_key(impl.name, dtype)
    return Record(key=key, family="gpu", claim=f"{impl.runtime} {impl.name} computes {'the gradients of ' if impl.backward else ''}{impl.form}",
                  exactness="float64 bound" if dtype == "float64" else f"{dtype} baseline budget", dtype=dtype,
                  backend=impl.runtime, device=place if place != "gpu" else gpu_name(), seed=claim_seed(key))


def _not_run(missing: list[str], rule: str) -> dict:
    return _unmeasured("not run", f"{', '.join(missing)} is not installed", rule)


def _unmeasured(status: str, reason: str, rule: str, hint: str = "") -> dict:
    """The outcome fields of a record with nothing measured: not run, or a job that broke."""
    return {"status": status, "reason": reason, "hint": hint, "budget_rule": rule}


def _outcome(result, rule: str) -> dict:
    """The outcome fields of a record from a check's Result."""
    measured = result.status in ("passed", "failed")
    reason = result.counterexample.message if result.status == "failed" else (result.reason or None)
    return {"status": result.status, "reason": reason, "hint": result.hint, "examples": result.examples,
            "shapes": result.shapes, "budget_rule": rule, "budget": result.budget if measured else None,
            "max_error": result.max_error if measured else None,
            "worst_ratio": result.worst_ratio if measured else None, "counterexample": _counterexample(result),
            "seconds": result.seconds}


def sweep_point(claim: Claim, sweep, index: int, seed: int) -> Point:
    """The sweep at its ``index``-th value: the worst error against its budget, and the mean over
    positions of the first output's error (how a whole sequence fares, not only its worst row).
    The data come from ``sweep.seed`` when the sweep fixes one, else from the claim's ``seed``."""
    started = time.perf_counter()
    args = sweep.make_args(sweep.values[index], np.random.default_rng(seed if sweep.seed is None else sweep.seed))
    lhs, rhs = (as_outputs(side) for side in claim.relation(claim.default_impl, args))
    verdict = compare(lhs, rhs, Budget(as_outputs(claim.bound(args, rhs)), claim.rule), claim.outputs, claim.time_axis)
    return Point(error=verdict.max_error, budget=verdict.budget,
                 mean_error=float(np.mean(error_per_position(lhs[0], rhs[0], claim.time_axis))),
                 seconds=time.perf_counter() - started)


def _counterexample(result) -> Found | None:
    found = result.counterexample
    if found is None:
        return None
    return Found(args=_describe(found.args), message=found.message, reproducer=found.reproducer)


def _summary(record: Record) -> str:
    if record.status in ("not run", "error"):
        return record.reason
    return f"{record.examples} examples, worst error {record.max_error:.2g} against budget {record.budget:.2g}"


def _describe(args: dict) -> str:
    return ", ".join(f"{name}=array{tuple(np.shape(value))}" if isinstance(value, np.ndarray) else f"{name}={value!r}"
                     for name, value in args.items())
