"""The one-way layers (docs/contributing.md), checked with import-linter (contracts in pyproject.toml).

grimp, import-linter's graph builder, finds a package's modules by walking its folder, and
seqcheck's subpackages live in top-level folders mapped by setuptools' package-dir; so the test
stages the package tree as symlinks (``seqcheck/<layer>`` -> ``<layer>/``) and lints that.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
LAYERS = ("reference", "properties", "equiv", "gpu")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def staged_package(tmp_path: Path) -> Path:
    package = tmp_path / "seqcheck"
    package.mkdir()
    (package / "__init__.py").write_text((ROOT / "seqcheck" / "__init__.py").read_text())
    for layer in LAYERS:
        (package / layer).symlink_to(ROOT / layer, target_is_directory=True)
    return tmp_path


def lint(tmp_path: Path, config: Path, staged: bool = True) -> subprocess.CompletedProcess:
    """import-linter on the tree staged in ``tmp_path`` (staged here unless ``staged`` is False)."""
    env = {**os.environ, "PYTHONPATH": str(staged_package(tmp_path) if staged else tmp_path)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)


def test_the_layers_contracts_are_kept(tmp_path):
    result = lint(tmp_path, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout, result.stdout


@pytest.mark.parametrize("layer, module, source, broken", [
    ("gpu", "upward.py", "from seqcheck.properties import arrays\n", "seqcheck.gpu.upward -> seqcheck.properties.arrays"),
    ("equiv", "families/borrower.py", "from seqcheck.equiv.families import mamba\n",
     "seqcheck.equiv.families.borrower -> seqcheck.equiv.families.mamba"),
    ("reference", "strategies.py", "import hypothesis\n", "seqcheck.reference.strategies -> hypothesis"),
])
def test_each_contract_can_fail(tmp_path, layer, module, source, broken):
    """Each contract is run against a copy of the tree with one offending module added: gpu
    importing properties (what gpu/catalog.py did), one family importing another (linear from
    mamba did), a reference importing Hypothesis."""
    staged = staged_package(tmp_path)
    copy = staged / "seqcheck" / layer
    copy.unlink()
    shutil.copytree(ROOT / layer, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / module).write_text(source)
    result = lint(tmp_path, ROOT / "pyproject.toml", staged=False)
    assert result.returncode == 1
    assert broken in result.stdout, result.stdout


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_is_staged(layer):
    assert (ROOT / layer / "__init__.py").exists()
