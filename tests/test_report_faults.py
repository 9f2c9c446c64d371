"""A report that survives faults: dead workers, jobs that hang or raise, broken strategies, 0
examples, a write interrupted half-way, GPU rows that did not run on a GPU."""

import json
from dataclasses import replace

import pytest
from hypothesis import strategies as st

import faulty_jobs
from seqcheck import equiv
from seqcheck.equiv import registry, report, report_render
from seqcheck.equiv.report_records import Record

KILLED, HUNG, RAISES = "positional.rope.relative", "positional.rope.composition", "positional.rope.pairings"
HEALTHY = "attention.softmax.gqa"


def test_a_killed_worker_a_hung_job_and_a_raising_job_are_errors_and_the_rest_completes():
    jobs = [("claim", key) for key in (KILLED, HUNG, RAISES, HEALTHY)]
    done = dict(report._run_jobs(jobs, workers=2, profile="dev", job_timeout=5, run=faulty_jobs.run))
    assert set(done) == set(jobs)
    assert done[("claim", HEALTHY)].status == "passed"
    reasons = {key: done[("claim", key)].reason for key in (KILLED, HUNG, RAISES)}
    assert all(done[("claim", key)].status == "error" for key in reasons)
    assert "worker process died" in reasons[KILLED]
    assert "did not finish within 5 s" in reasons[HUNG]
    assert "RuntimeError: the relation broke" in reasons[RAISES]


def _broken_claims(monkeypatch):
    base = equiv.claims()[0]
    raising = replace(base, key="broken.strategy_raises", sweeps=(),
                      inputs=lambda: st.just(1).map(lambda _: 1 / 0))
    empty = replace(base, key="broken.draws_nothing", sweeps=(),
                    inputs=lambda: base.inputs().filter(lambda args: False))
    for claim in (raising, empty):
        monkeypatch.setitem(registry._CLAIMS, claim.key, claim)
    return raising, empty


def test_a_raising_strategy_is_an_error_and_no_example_is_not_run_in_a_complete_report(tmp_path, monkeypatch):
    raising, empty = _broken_claims(monkeypatch)
    records = report.run_report(out=tmp_path, only="broken.", workers=1, progress=lambda line: None)["records"]
    by_key = {record.key: record for record in records}
    assert by_key[raising.key].status == "error"
    assert "ZeroDivisionError" in by_key[raising.key].reason
    assert by_key[empty.key].status == "not run" and by_key[empty.key].examples == 0
    data = json.loads((tmp_path / "report.json").read_text())
    assert {record["status"] for record in data["claims"]} == {"error", "not run"}
    assert "1 error" in (tmp_path / "report.md").read_text()


def test_files_are_written_atomically(tmp_path, monkeypatch):
    record = {"key": "a.b", "family": "a", "claim": "c", "exactness": "float64 bound", "dtype": "float64",
              "backend": "numpy", "device": "cpu", "seed": 1, "status": "passed", "reason": None, "hint": "",
              "examples": 3, "shapes": {}, "budget": {"rule": "r", "value": 1.0}, "max_error": 0.5,
              "worst_ratio": 0.5, "counterexample": None, "sweeps": [], "seconds": 0.1}
    meta = {"profile": "dev", "seqcheck_version": "0", "python": "3", "numpy": "2", "platform": "linux",
            "devices": ["cpu"], "started": "now", "seconds": 1.0}
    report_render.write_report([Record.from_json(record)], tmp_path, meta)
    before = (tmp_path / "report.json").read_text()

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_render, "_render_html", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report_render.write_report([Record.from_json({**record, "seconds": 9.0})], tmp_path, meta)
    json.loads((tmp_path / "report.json").read_text())  # whole, never truncated
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".")) == []
    assert (tmp_path / "index.html").exists() and before != (tmp_path / "report.json").read_text()


def test_a_gpu_row_run_under_the_simulator_says_so_in_its_status(tmp_path):
    records = report.run_report(out=tmp_path, only="numba_cuda.selective_scan[float32]", workers=1,
                                progress=lambda line: None)["records"]
    assert [record.status for record in records] == ["passed (simulator)"]
    assert "1 passed" in (tmp_path / "report.md").read_text()
    assert "passed (simulator)" in (tmp_path / "index.html").read_text()
