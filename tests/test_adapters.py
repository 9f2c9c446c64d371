"""Checking a peer's function in its own layout: mamba's selective_scan_ref, channels first."""

import subprocess
import sys

import pytest

from peers.mamba_selective_scan_ref import torch_selective_scan_ref
from seqcheck import equiv
from seqcheck.equiv.adapters import mamba_selective_scan
from seqcheck.properties import inputs_for

KEY = "mamba.selective_scan.recurrent"
FROM_ZERO = inputs_for(KEY, initial_state=False)


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):
    out, last_state = torch_selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return (out, last_state) if return_last_state else out


def selective_scan_ref_without_bias(u, delta, A, B, C, D=None, z=None, delta_bias=None, **options):
    return selective_scan_ref(u, delta, A, B, C, D, z, None, **options)


def test_mamba_selective_scan_ref_passes_through_the_adapter():
    result = equiv.check(mamba_selective_scan(selective_scan_ref), KEY, backend="torch", inputs=FROM_ZERO, seed=0,
                         max_examples=60)
    assert result.passed, str(result)


def test_a_wrong_channels_first_scan_is_rejected_through_the_adapter_and_its_reproducer_runs(tmp_path):
    result = equiv.check(mamba_selective_scan(selective_scan_ref_without_bias), KEY, backend="torch",
                         inputs=FROM_ZERO, seed=0, max_examples=100)
    assert result.status == "failed"
    reproducer = result.counterexample.reproducer
    assert "candidate = mamba_selective_scan(equiv.load_candidate(" in reproducer
    (tmp_path / "reproduce.py").write_text(reproducer)
    run = subprocess.run([sys.executable, "reproduce.py"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 1, run.stderr


def test_the_adapter_refuses_an_initial_state():
    with pytest.raises(ValueError, match="initial_state"):
        mamba_selective_scan(selective_scan_ref)(*[None] * 5, initial_state=1.0)
