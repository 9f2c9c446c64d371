"""The one-way layers of DESIGN.md, checked with import-linter (contracts in pyproject.toml).

grimp, import-linter's graph builder, finds a package's modules by walking its folder, and
seqcheck's subpackages live in top-level folders mapped by setuptools' package-dir; so the test
stages the package tree as symlinks (``seqcheck/<layer>`` -> ``<layer>/``) and lints that.
"""

import os
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


def lint(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(staged_package(tmp_path))}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(config)], cwd=tmp_path, env=env,
                          capture_output=True, text=True)


def test_the_layers_contracts_are_kept(tmp_path):
    result = lint(tmp_path, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout, result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The check can fail: the contracts run against a copy of the tree in which one module of
    gpu imports properties (what gpu/catalog.py did before the families declared their kernels)."""
    staged = staged_package(tmp_path)
    gpu = staged / "seqcheck" / "gpu"
    gpu.unlink()
    gpu.mkdir()
    for source in (ROOT / "gpu").glob("*.py"):
        (gpu / source.name).write_text(source.read_text())
    (gpu / "upward.py").write_text("from seqcheck.properties import arrays\n")
    env = {**os.environ, "PYTHONPATH": str(staged)}
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "seqcheck.gpu.upward -> seqcheck.properties.arrays" in result.stdout


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_is_staged(layer):
    assert (ROOT / layer / "__init__.py").exists()
