"""Every registered GPU implementation, checked with equiv.check: on a GPU when there is one,
under Numba's CUDA simulator (tiny sizes) or on NumPy (CuPy array-module code) otherwise."""

import pytest

from seqcheck import equiv
from seqcheck.equiv import implementations
from seqcheck.gpu import where

CASES = [(impl, dtype) for impl in implementations() for dtype in impl.dtypes]


@pytest.mark.parametrize("impl, dtype", CASES, ids=[f"{impl.name}-{dtype}" for impl, dtype in CASES])
def test_gpu_implementation_matches_its_form(impl, dtype):
    simulated = where(impl.runtime) == "simulator"
    result = equiv.check(impl.load(), impl.form, dtype=dtype, inputs=impl.inputs(simulated), seed=0,
                         max_examples=5 if simulated else None)
    assert result.passed, str(result)
