"""The runnable examples in docs/ run (docs/usage.md's sketches name the reader's own kernel)."""

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parent.parent / "docs"
RUNNABLE = ["attention.md", "ssm.md", "mamba.md", "gpu.md", "eviction.md", "conventions.md", "usage.md", "tolerance.md", "inputs.md"]


def python_blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), flags=re.S)


@pytest.mark.parametrize("name", RUNNABLE)
def test_examples_run(name):
    blocks = python_blocks(name)
    assert blocks, f"docs/{name} has no python example"
    for block in blocks:
        exec(compile(block, f"docs/{name}", "exec"), {})
