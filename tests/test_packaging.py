"""The folders are importable only as seqcheck.<folder>, never as top-level packages."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["reference", "properties", "equiv", "gpu"])
def test_folders_are_not_top_level_packages(name, tmp_path):
    run = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode != 0 and "ModuleNotFoundError" in run.stderr


def test_reference_imports_no_test_or_gpu_library():
    code = ("import sys, seqcheck.reference.attention, seqcheck.reference.positional; "
            "print(sorted(m for m in ('hypothesis', 'torch', 'cupy', 'numba') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "[]", run.stdout + run.stderr
