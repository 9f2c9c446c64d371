"""Benchmarks: pytest-benchmark, ratios within one run, never timed assertions.

Run: .venv/bin/python -m pytest benchmarks --benchmark-only --benchmark-group-by=group
"""

import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)
