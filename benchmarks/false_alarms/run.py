"""Run the false-alarm benchmark: every entry of ``candidates.ENTRIES`` over seeds 0..N-1.

    .venv/bin/python benchmarks/false_alarms/run.py --seeds 200 --max-examples 100 --jobs 2 \
        --out false_alarms.json [--only SUBSTRING ...] [--expected correct|inaccurate]

For each entry (form, candidate, dtype) it records: the false alarms (a correct entry that
failed: seed, ratio, where, shapes, message), the detection rate (an inaccurate entry: failed
seeds / seeds), the distribution of the worst ratio over seeds (max, 99th percentile, median),
exceptions raised by the engine itself, and seconds. The JSON is rewritten after every finished
entry, so an interrupted run leaves its partial results; the table is printed at the end.
Workers are spawned processes with one thread each (OMP/MKL/torch).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


class EngineVerdict(Exception):
    """A check that ended neither passed nor failed (status "error" or "not run")."""


def _init_worker():
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def run_entry(name: str, seeds: list, max_examples: int) -> dict:
    """Check one entry on each seed; every exception (engine or strategy) is recorded, not raised."""
    import candidates
    from seqcheck import equiv

    entry = candidates.BY_NAME[name]
    runs = []
    started = time.perf_counter()
    for seed in seeds:
        t0 = time.perf_counter()
        record = {"seed": seed}
        try:
            result = equiv.check(entry.candidate, entry.key, dtype=entry.dtype, backend=entry.backend,
                                 inputs=candidates.inputs_of(entry), seed=seed, max_examples=max_examples)
            status = getattr(result, "status", "passed" if result.passed else "failed")
            if status not in ("passed", "failed"):  # "error" / "not run": the engine's verdict, not a budget's
                raise EngineVerdict(f"status {status!r}: {getattr(result, 'reason', '')} "
                                    f"{getattr(result, 'hint', '')}".strip())
            record.update(passed=bool(result.passed), ratio=float(result.worst_ratio), where=result.where,
                          shapes=result.shapes, examples=result.examples, max_error=float(result.max_error),
                          budget=float(result.budget))
            if result.counterexample is not None:
                record["message"] = result.counterexample.message[:600]
                record["options"] = {k: _plain(v) for k, v in result.counterexample.args.items()
                                     if not hasattr(v, "shape")}
        except Exception as error:  # the engine itself raised: recorded, never a crash of the run
            record.update(passed=None, ratio=None, exception=f"{type(error).__name__}: {error}"[:600],
                          traceback="".join(traceback.format_exception(error)[-4:])[-1500:])
        record["seconds"] = round(time.perf_counter() - t0, 3)
        runs.append(record)
    return {"name": name, "runs": runs, "seconds": time.perf_counter() - started}


def _plain(value):
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return repr(value)


def summarise(entry, runs: list, seconds: float) -> dict:
    import numpy as np

    done = [r for r in runs if r.get("passed") is not None]
    failed = [r for r in done if not r["passed"]]
    ratios = np.array([r["ratio"] for r in done], dtype=float)
    finite = ratios[np.isfinite(ratios)]

    def pct(q):  # "higher": an actual ratio, and no inf - inf interpolation
        return float(np.percentile(ratios, q, method="higher")) if ratios.size else None

    summary = {
        "name": entry.name, "form": entry.key, "candidate": entry.candidate.__name__, "dtype": entry.dtype,
        "backend": entry.backend, "inputs": {k: _plain(v) for k, v in entry.inputs.items()},
        "expected": entry.expected, "note": entry.note,
        "seeds": len(runs), "checked": len(done), "failed": len(failed),
        "exceptions": [{"seed": r["seed"], "exception": r["exception"], "traceback": r["traceback"]}
                       for r in runs if r.get("passed") is None],
        "ratio_max": float(ratios.max()) if ratios.size else None,
        "ratio_p99": pct(99), "ratio_median": pct(50),
        "ratio_max_finite": float(finite.max()) if finite.size else None,
        "seconds": round(seconds, 2),
        "seconds_per_seed": round(seconds / max(len(runs), 1), 3),
    }
    failures = [{k: r.get(k) for k in ("seed", "ratio", "where", "shapes", "max_error", "budget", "options", "message")}
                for r in failed]
    if entry.expected == "correct":
        summary["false_alarms"] = failures
    else:
        summary["detection_rate"] = len(failed) / len(done) if done else None
        summary["missed_seeds"] = [r["seed"] for r in done if r["passed"]]
        summary["detections"] = failures[:5]
    return summary


def _json_safe(x):
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else "nan")
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout
        except Exception as error:  # noqa: BLE001
            return f"({error})"
    return {"head": git("rev-parse", "HEAD").strip(), "diff_stat": git("diff", "--stat")}


def _fmt(x, width=9):
    if x is None:
        return " " * (width - 1) + "-"
    if isinstance(x, float) and not math.isfinite(x):
        return f"{'inf':>{width}}"
    return f"{x:>{width}.3g}"


def table(summaries: list) -> str:
    lines = [f"{'entry (form:candidate:dtype)':78s} {'exp':5s} {'fail':>9s} {'max':>9s} {'p99':>9s} "
             f"{'median':>9s} {'s/seed':>7s}"]
    for s in summaries:
        fails = f"{s['failed']}/{s['checked']}"
        if s["expected"] == "inaccurate":
            fails += " det" if s["failed"] == s["checked"] else " MISS"
        elif s["failed"]:
            fails += " FA"
        if s["exceptions"]:
            fails += f" +{len(s['exceptions'])}exc"
        lines.append(f"{s['name']:78s} {s['expected'][:5]:5s} {fails:>9s} {_fmt(s['ratio_max'])} "
                     f"{_fmt(s['ratio_p99'])} {_fmt(s['ratio_median'])} {s['seconds_per_seed']:7.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200, help="seeds 0..N-1 per entry (default 200)")
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--only", action="append", default=[], help="keep entries whose name contains this "
                        "(repeatable: any of them)")
    parser.add_argument("--exclude", action="append", default=[], help="drop entries whose name contains this")
    parser.add_argument("--expected", choices=["correct", "inaccurate"], default=None)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=0, help="seeds per task (default: seeds / 4, at least 5)")
    parser.add_argument("--out", default="false_alarms.json")
    parser.add_argument("--list", action="store_true", help="list the selected entries and exit")
    parser.add_argument("--agree", action="store_true", help="instead of the benchmark: run each selected correct "
                        "entry in float64 against the reference (a semantic check, deviations ~1e-15 expected)")
    args = parser.parse_args(argv)

    import candidates

    entries = [e for e in candidates.ENTRIES
               if (not args.only or any(s in e.name for s in args.only))
               and not any(s in e.name for s in args.exclude)
               and (args.expected is None or e.expected == args.expected)]
    if args.list:
        for e in entries:
            print(f"{e.name:78s} {e.expected:10s} {e.backend:6s} {e.inputs or ''}")
        print(f"{len(entries)} entries")
        return 0
    if args.agree:
        _init_worker()
        bad = 0
        for e in entries:
            if e.expected != "correct":
                continue
            r = candidates.float64_agreement(e, examples=args.max_examples, seed=args.first_seed)
            bad += bool(r["bad"])
            print(f"{e.name:78s} float64 deviation {r['deviation']:.2e} over {r['examples']} examples"
                  + (f"  MISMATCH {r['bad'][:2]}" if r["bad"] else ""), flush=True)
        return 1 if bad else 0
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    chunk = args.chunk or max(5, -(-len(seeds) // 4))
    tasks = [(e.name, seeds[i:i + chunk]) for e in entries for i in range(0, len(seeds), chunk)]
    pending = {e.name: -(-len(seeds) // chunk) for e in entries}
    collected = {e.name: {"runs": [], "seconds": 0.0} for e in entries}
    summaries = {}
    meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seeds": [seeds[0], seeds[-1]],
            "max_examples": args.max_examples, "jobs": args.jobs, "only": args.only, "exclude": args.exclude,
            "expected": args.expected, "git": git_state(), "command": " ".join(sys.argv)}
    print(f"{len(entries)} entries x {len(seeds)} seeds, {args.max_examples} examples, {args.jobs} jobs, "
          f"{len(tasks)} tasks", flush=True)
    started = time.perf_counter()

    def write():
        ordered = [summaries[e.name] for e in entries if e.name in summaries]
        correct = [s for s in ordered if s["expected"] == "correct"]
        inaccurate = [s for s in ordered if s["expected"] == "inaccurate"]
        totals = {
            "entries_done": len(ordered), "entries": len(entries),
            "correct_entries_with_false_alarms": sum(1 for s in correct if s["failed"]),
            "false_alarms": sum(s["failed"] for s in correct),
            "correct_checks": sum(s["checked"] for s in correct),
            "inaccurate_detections": sum(s["failed"] for s in inaccurate),
            "inaccurate_checks": sum(s["checked"] for s in inaccurate),
            "exceptions": sum(len(s["exceptions"]) for s in ordered),
            "seconds": round(time.perf_counter() - started, 1),
        }
        with open(args.out, "w") as f:
            json.dump(_json_safe({"meta": {**meta, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                                  "totals": totals, "entries": ordered}), f, indent=1)
        return ordered, totals

    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = {pool.submit(run_entry, name, chunk_seeds, args.max_examples): name for name, chunk_seeds in tasks}
        for done, future in enumerate(as_completed(futures), 1):
            name = futures[future]
            try:
                part = future.result()
            except Exception as error:  # a worker died: record it as exceptions of those seeds
                part = {"runs": [{"seed": None, "passed": None, "ratio": None, "seconds": 0.0,
                                  "exception": f"worker: {type(error).__name__}: {error}", "traceback": ""}],
                        "seconds": 0.0}
            collected[name]["runs"] += part["runs"]
            collected[name]["seconds"] += part["seconds"]
            pending[name] -= 1
            if pending[name] == 0:
                entry = candidates.BY_NAME[name]
                runs = sorted(collected[name]["runs"], key=lambda r: (r["seed"] is None, r["seed"] or 0))
                s = summaries[name] = summarise(entry, runs, collected[name]["seconds"])
                write()
                flag = ""
                if entry.expected == "correct" and s["failed"]:
                    flag = "  FALSE ALARMS at seeds " + ", ".join(
                        f"{fa['seed']} ({_fmt(fa['ratio'], 1).strip()})" for fa in s["false_alarms"][:8])
                elif entry.expected == "inaccurate" and s["failed"] < s["checked"]:
                    flag = f"  MISSED {s['checked'] - s['failed']}/{s['checked']}"
                print(f"[{done}/{len(tasks)} {time.perf_counter() - started:7.1f}s] {name}: "
                      f"{s['failed']}/{s['checked']} failed, max ratio {_fmt(s['ratio_max'], 1).strip()}, "
                      f"{s['seconds']:.1f}s{flag}" + (f"  EXCEPTIONS {len(s['exceptions'])}" if s["exceptions"] else ""),
                      flush=True)
    ordered, totals = write()
    print()
    print(table(ordered))
    print()
    print(json.dumps(totals))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
