import sys
from pathlib import Path

import pytest

from seqcheck.equiv.engine import _no_local_constants
from seqcheck.gpu import use_simulator_without_gpu

# Numba's CUDA simulator must be chosen before numba.cuda is first imported.
use_simulator_without_gpu()

# The mutants are test helpers, imported as `mutants.<family>` from this folder.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True, scope="session")
def examples_independent_of_imports():
    """The suite's own @given tests, like every seeded check, draw no literals from whichever local
    modules an xdist worker happened to import (``engine._no_local_constants``)."""
    with _no_local_constants():
        yield
