"""benchmarks/gpu_bench.py: its timing code runs without a GPU (``--tiny``), so a session lent one
finds every case, ceiling and torch counterpart working; the figures themselves mean nothing here."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from seqcheck.gpu import has_gpu

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_bench.py"


def test_the_gpu_benchmark_dry_run_times_every_case_and_its_torch_counterpart(tmp_path):
    run = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--json", str(tmp_path / "figures.json")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert figures["sizes"] == "tiny" and all(row["passed"] for row in figures["correctness"])
    assert all(value > 0 for value in figures["ceilings"].values())
    rows = {row["kernel"]: row for row in figures["kernels"]}
    assert sorted(rows) == ["cupy.fft_conv", "cupy.moe_dispatch", "cupy.ssd_chunked", "numba_cuda.block_sparse_attention",
                            "numba_cuda.flash_attention",
                            "numba_cuda.flash_attention_backward", "numba_cuda.gla_chunked",
                            "numba_cuda.selective_scan", "numba_cuda.wkv4"]
    assert all(row["seconds"] > 0 and math.isfinite(row["fraction"]) for row in rows.values())
    assert rows["numba_cuda.flash_attention"]["torch_ratio"] > 0
    assert rows["numba_cuda.flash_attention_backward"]["torch_ratio"] > 0
    assert rows["numba_cuda.selective_scan"]["torch_ratio"] > 0


@pytest.mark.skipif(has_gpu(), reason="a GPU is here: the figures do not wait")
def test_without_a_gpu_the_benchmark_says_which_figures_wait():
    run = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "no GPU here: these figures wait for one" in run.stdout
