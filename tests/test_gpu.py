"""Every registered GPU implementation, checked with equiv.check (a backward kernel with
equiv.check_vjp): on a GPU when there is one, under Numba's CUDA simulator (tiny sizes) or on
NumPy (CuPy array-module code) otherwise."""

import pytest

from seqcheck import equiv
from seqcheck.equiv import implementations

CASES = [(impl, dtype) for impl in implementations() for dtype in impl.dtypes]


@pytest.mark.parametrize("impl, dtype", CASES, ids=[f"{impl.name}-{dtype}" for impl, dtype in CASES])
def test_gpu_implementation_matches_its_form(impl, dtype):
    result = equiv.check_implementation(impl, dtype, seed=0)
    assert result.passed, str(result)
