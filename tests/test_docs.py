"""The runnable examples in docs/ run: every ```python block of every page (a sketch that names the
reader's own kernel is written as a plain ``` block)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
RUNNABLE = sorted(path.name for path in DOCS.glob("*.md") if "```python" in path.read_text())
"""Every page with a ``python`` block (found, so a new family's page runs without an edit here)."""


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


@pytest.mark.parametrize("name", RUNNABLE)
def test_examples_run(name):
    blocks = python_blocks(name)
    assert blocks, f"docs/{name} has no python example"
    for block in blocks:
        exec(compile(block, f"docs/{name}", "exec"), {})


def test_every_gradient_oracle_is_documented():
    from seqcheck import equiv

    page = (DOCS / "gradients.md").read_text()
    assert not [key for key in equiv.gradients() if f"`{key}`" not in page]
