"""The folders are importable only as seqcheck.<folder>, never as top-level packages."""

import os
import subprocess
import sys
from pathlib import Path

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


def test_the_wheel_ships_every_package_and_registers_every_family(tmp_path):
    """A wheel (not the editable install) holds every folder of the four layers: importing its
    seqcheck.equiv registers the same forms (equiv/families was missing from the hand-kept list)."""
    from seqcheck import equiv

    root = Path(__file__).parent.parent
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path / "wheel"), str(root)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    wheel, = (tmp_path / "wheel").glob("seqcheck-*.whl")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                              str(tmp_path / "site"), str(wheel)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    code = "import seqcheck, seqcheck.equiv as e; print(seqcheck.__file__); print(len(e.forms()), len(e.claims()))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    where, counts = run.stdout.split("\n")[:2]
    assert where.startswith(str(tmp_path / "site")), run.stdout + run.stderr
    assert counts == f"{len(equiv.forms())} {len(equiv.claims())}"
