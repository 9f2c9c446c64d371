"""The command line: `seqcheck check` on a user's own file, `seqcheck report`, `seqcheck forms`."""

import json
import subprocess
import sys
import textwrap

USER_FLASH = textwrap.dedent('''
    import numpy as np

    def flash(q, k, v, *, block_q=64, block_k=64, scale=None, causal=False, **unused):
        """Online softmax that forgets to rescale the running output when the maximum grows."""
        scale = 1 / np.sqrt(q.shape[3]) if scale is None else scale
        s = scale * np.einsum("bqhd,bkhd->bhqk", q, k)
        out = np.zeros(s.shape[:3] + (v.shape[3],))
        m = np.full(s.shape[:3], -np.inf)
        l = np.zeros(s.shape[:3])
        for j in range(0, s.shape[3], block_k):
            new_m = np.maximum(m, s[..., j:j + block_k].max(-1))
            p = np.exp(s[..., j:j + block_k] - new_m[..., None])
            l = l * np.exp(m - new_m) + p.sum(-1)
            out = out + np.einsum("bhqk,bkhd->bhqd", p, v[:, j:j + block_k])
            m = new_m
        return (out / l[..., None]).transpose(0, 2, 1, 3)
''')

NARROW = ["--fix", "window=None", "--fix", "key_padding_mask=None", "--fix", "alibi_slopes=None", "--fix",
          "softcap=None", "--fix", "return_lse=False", "--fix", "causal=False", "--fix", "group=1"]


def seqcheck(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "seqcheck.equiv.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def test_check_rejects_a_users_wrong_flash_attention_and_prints_a_reproducer(tmp_path):
    (tmp_path / "mykernels.py").write_text(USER_FLASH)
    run = seqcheck("check", "mykernels.py:flash", "attention.flash.tiled", "--seed", "0", *NARROW, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "FAILED attention.flash.tiled" in run.stdout
    reproducer = run.stdout.split("reproducer (exits 1 while it reproduces):\n", 1)[1]
    (tmp_path / "repro.py").write_text(reproducer)
    replay = subprocess.run([sys.executable, "repro.py"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert replay.returncode == 1, replay.stderr
    assert "ratio" in replay.stdout


def test_check_usage_errors_exit_2(tmp_path):
    (tmp_path / "mykernels.py").write_text(USER_FLASH)
    assert seqcheck("check", "mykernels.py:nope", "attention.flash.tiled", cwd=tmp_path).returncode == 2
    wrong_key = seqcheck("check", "mykernels.py:flash", "attention.flash", cwd=tmp_path)
    assert wrong_key.returncode == 2 and "attention.flash" in wrong_key.stderr


def test_report_writes_html_json_and_markdown(tmp_path):
    run = seqcheck("report", "--out", str(tmp_path / "report"), "--only", "positional.rope", "--workers", "2")
    assert run.returncode == 0, run.stderr
    assert "[1/7]" in run.stdout and "[7/7]" in run.stdout  # 3 claims and the 4 points of one sweep
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert {record["key"] for record in data["claims"]} == {
        "positional.rope.composition", "positional.rope.pairings", "positional.rope.relative"}
    assert all(record["status"] == "passed" for record in data["claims"])
    assert (tmp_path / "report" / "index.html").read_text().count("positional.rope.relative") >= 2
    assert (tmp_path / "report" / "report.md").exists()


def test_report_does_not_depend_on_the_number_of_workers(tmp_path):
    runs = [json.loads(_report(tmp_path / str(workers), workers).read_text())["claims"] for workers in (1, 2)]
    for record in runs[0] + runs[1]:
        record.pop("seconds")
    assert runs[0] == runs[1]
    assert [sweep["param"] for record in runs[0] for sweep in record["sweeps"]] == ["T", "block"]


def _report(out, workers):
    run = seqcheck("report", "--out", str(out), "--only", "attention.flash.tiled", "--workers", str(workers))
    assert run.returncode == 0, run.stderr
    return out / "report.json"


def test_report_rejects_a_bad_worker_count(tmp_path):
    run = seqcheck("report", "--out", str(tmp_path), "--only", "positional.rope", "--workers", "0")
    assert run.returncode == 2 and "workers must be a positive int; got 0" in run.stderr


def test_forms_lists_forms_and_claims():
    run = seqcheck("forms")
    assert "attention.flash.tiled" in run.stdout and "attention.softmax.row_shift" in run.stdout


def test_options_lists_a_forms_input_options():
    run = seqcheck("options", "attention.flash.tiled")
    assert run.returncode == 0 and "block_q" in run.stdout and "softcap" in run.stdout
    assert seqcheck("options", "attention.flash").returncode == 2


def test_a_claim_whose_dependency_is_missing_is_not_run_and_its_sweeps_neither(tmp_path, monkeypatch):
    from dataclasses import replace

    from seqcheck import equiv
    from seqcheck.equiv import registry
    from seqcheck.equiv.report import run_report

    swept = next(claim for claim in equiv.claims() if claim.sweeps)
    absent = replace(swept, key="attention.needs_absent_module", requires=("no_module_named_like_this",))
    monkeypatch.setitem(registry._CLAIMS, absent.key, absent)
    lines = []
    record, = run_report(out=tmp_path, only=absent.key, workers=1, progress=lines.append)["records"]
    assert record.status == "not run" and "no_module_named_like_this" in record.reason
    assert record.sweeps == () and len(lines) == 2  # the claim's line and "wrote ..."


def test_a_gpu_row_whose_runtime_is_missing_is_not_run(tmp_path, monkeypatch):
    from seqcheck.equiv.report import run_report
    from seqcheck.equiv import registry

    monkeypatch.setitem(registry.RUNTIME_MODULES, "numba-cuda", ("no_module_named_like_this",))
    records = run_report(out=tmp_path, only="numba_cuda.selective_scan[float32]", workers=1,
                         progress=lambda line: None)["records"]
    assert [(r.status, r.reason) for r in records] == [("not run", "no_module_named_like_this is not installed")]
