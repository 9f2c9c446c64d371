"""The CuPy (array-module) implementations of seqcheck.gpu beyond test_gpu.py's check of each
registered one against its form: the float64 path, the forms that cannot be registered yet
(S4D kernel, eviction decoding: no low-precision baseline), the tie rule of the batched
selection, and every mutant of tests/mutants/gpu_cupy.py rejected.

Here (no GPU) the code runs on NumPy; the tests marked ``gpu`` run it on CuPy with fresh seeds.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mutants import gpu_cupy as wrong
from seqcheck import equiv
from seqcheck.gpu import conv_cupy, eviction_cupy, moe_cupy, ssd_cupy
from seqcheck.equiv import implementations
from seqcheck.gpu.xp import array_module, to_host
from seqcheck.reference.eviction import argmin_highest_index, topk_lowest_index

CUPY = [impl for impl in implementations() if impl.runtime == "cupy"]


def test_the_cupy_implementations_are_registered():
    dtypes = {impl.form: impl.dtypes for impl in CUPY}
    assert dtypes == {"mamba.ssd.chunked": ("float32", "float16"), "ssm.lti.fft": ("float32", "float16"),
                      "eviction.tova.decode": ("float64",), "eviction.h2o.decode": ("float64",),
                      "eviction.window.decode": ("float64",), "moe.layer.dispatch": ("float32", "float16")}


def test_array_module_is_numpy_without_a_gpu_and_helpers_pass_numpy_through():
    assert array_module("numpy") is np
    assert array_module(np) is np
    a = np.arange(3.0)
    assert to_host(a) is a
    with pytest.raises(ValueError, match="array module"):
        array_module("torch")


# ----------------------------------------------------------------------------- float64 path

@pytest.mark.parametrize("candidate, key", [
    (ssd_cupy.ssd_chunked, "mamba.ssd.chunked"),
    (conv_cupy.lti_fft, "ssm.lti.fft"),
    (conv_cupy.s4d_kernel, "ssm.s4d.kernel"),
    (moe_cupy.moe_dispatch, "moe.layer.dispatch"),
], ids=["ssd", "lti_fft", "s4d_kernel", "moe_dispatch"])
def test_float64_inputs_meet_the_derived_float64_bound(candidate, key):
    result = equiv.check(candidate, key, seed=0, max_examples=50)
    assert result.passed, str(result)


def test_fft_conv_matches_direct_convolution_for_every_kernel_length():
    result = equiv.run_claim("ssm.conv.fft_every_length", impl=conv_cupy.fft_conv, seed=0, max_examples=50)
    assert result.passed, str(result)


def test_ssd_output_is_written_for_every_ragged_chunk_size():
    rng = np.random.default_rng(0)
    args = {"x": rng.standard_normal((1, 11, 2, 3)).astype(np.float32),
            "dt": rng.uniform(0.01, 0.5, (1, 11, 2)).astype(np.float32), "A": -np.ones(2, np.float32),
            "B": rng.standard_normal((1, 11, 1, 4)).astype(np.float32),
            "C": rng.standard_normal((1, 11, 1, 4)).astype(np.float32)}
    for chunk in (1, 2, 3, 4, 10, 11, 12, 64):
        y, state = ssd_cupy.ssd_chunked(**args, chunk_size=chunk, return_state=True)
        assert y.shape == (1, 11, 2, 3) and y.dtype == np.float32 and state.shape == (1, 2, 3, 4)
        assert np.isfinite(y).all() and np.isfinite(state).all()


# ----------------------------------------------------------------------------- eviction

@pytest.mark.parametrize("key, impl", [
    ("eviction.tova.argmin", eviction_cupy.decode),
    ("eviction.tova.permutation", eviction_cupy.tova_select),
], ids=["argmin", "slot_order"])
def test_batched_selection_meets_the_tova_claims(key, impl):
    result = equiv.run_claim(key, impl=impl, seed=0, max_examples=40)
    assert result.passed, str(result)


TIED_SCORES = st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(0, 2**32 - 1)).map(
    lambda a: np.random.default_rng(a[2]).integers(0, 3, (a[0], 2, a[1])).astype(np.float64))


@settings(max_examples=60, deadline=None)
@given(scores=TIED_SCORES, data=st.data())
def test_topk_and_argmin_follow_the_tie_rule_exactly(scores, data):
    k = data.draw(st.integers(0, scores.shape[-1]))
    assert (eviction_cupy.topk_lowest_index(scores, k) == topk_lowest_index(scores, k)).all()
    assert (eviction_cupy.argmin_highest_index(scores) == argmin_highest_index(scores)).all()


# ----------------------------------------------------------------------------- mutants

MUTANTS = [
    (wrong.ssd_without_inter_chunk_decay, "mamba.ssd.chunked", "float32"),
    (wrong.ssd_last_chunk_unwritten, "mamba.ssd.chunked", "float32"),
    (wrong.fft_circular, "ssm.lti.fft", "float32"),
    (wrong.tova_argmax_eviction, "eviction.tova.decode", None),
    (wrong.moe_capacity_never_enforced, "moe.layer.dispatch", "float32"),
]


@pytest.mark.parametrize("mutant, key, dtype", MUTANTS, ids=[m.__name__ for m, _, _ in MUTANTS])
def test_mutant_is_rejected(mutant, key, dtype):
    result = equiv.check(mutant, key, dtype=dtype, seed=0)
    assert not result.passed, f"{mutant.__name__} passed {key}"


def test_unwritten_last_chunk_shows_as_nan():
    result = equiv.check(wrong.ssd_last_chunk_unwritten, "mamba.ssd.chunked", dtype="float32", seed=0)
    assert "is NaN/Inf" in result.counterexample.message
    rng = np.random.default_rng(1)
    args = {"x": rng.standard_normal((1, 11, 1, 2)), "dt": rng.uniform(0.01, 0.5, (1, 11, 1)), "A": -np.ones(1),
            "B": rng.standard_normal((1, 11, 1, 3)), "C": rng.standard_normal((1, 11, 1, 3)), "chunk_size": 4}
    y = wrong.ssd_last_chunk_unwritten(**args)
    assert np.isnan(y[:, 8:]).all() and np.isfinite(y[:, :8]).all()  # positions 8..10: the last chunk
    comparison = equiv.replay(wrong.ssd_last_chunk_unwritten, "mamba.ssd.chunked", args, dtype="float32")
    assert not comparison.passed


def test_highest_index_tie_rule_is_rejected_by_the_reference_selection():
    # The decode forms treat exact ties as ambiguous (margin 0 <= delta_t), so the tie rule itself is
    # checked exactly against reference.eviction.topk_lowest_index.
    scores = np.array([[1.0, 2.0, 1.0, 1.0, 0.0]])
    assert (eviction_cupy.topk_lowest_index(scores, 2) == topk_lowest_index(scores, 2)).all()
    assert (wrong.topk_highest_index(scores, 2) != topk_lowest_index(scores, 2)).any()


def test_fft_without_padding_fails_the_every_length_claim():
    def circular(u, K, D=None):
        T = u.shape[1]
        y = np.fft.irfft(np.fft.rfft(u, n=T, axis=1) * np.fft.rfft(K, n=T, axis=1).T[None], n=T, axis=1)
        return y + (0 if D is None else D * u)

    assert equiv.run_claim("ssm.conv.fft_every_length", impl=conv_cupy.fft_conv, seed=0, max_examples=20).passed
    assert not equiv.run_claim("ssm.conv.fft_every_length", impl=circular, seed=0, max_examples=50).passed


# ----------------------------------------------------------------------------- on a GPU (CuPy)

@pytest.mark.gpu
@pytest.mark.parametrize("impl", CUPY, ids=[impl.name for impl in CUPY])
def test_cupy_implementation_on_fresh_inputs(impl):
    pytest.importorskip("cupy")
    assert array_module(None).__name__ == "cupy"
    for dtype in impl.dtypes:
        result = equiv.check(impl.load(), impl.form, dtype=dtype, inputs=impl.inputs(False), seed=None)
        assert result.passed, str(result)


@pytest.mark.gpu
@pytest.mark.parametrize("mutant, key, dtype", MUTANTS, ids=[m.__name__ for m, _, _ in MUTANTS])
def test_mutant_is_rejected_on_a_gpu(mutant, key, dtype):
    pytest.importorskip("cupy")
    assert not equiv.check(mutant, key, dtype=dtype, seed=None).passed


@pytest.mark.gpu
def test_device_arrays_stay_on_the_device_and_selection_ties_match():
    cupy = pytest.importorskip("cupy")
    rng = np.random.default_rng()
    x = cupy.asarray(rng.standard_normal((2, 37, 4, 8)), dtype=cupy.float32)
    dt = cupy.asarray(rng.uniform(0.01, 0.5, (2, 37, 4)), dtype=cupy.float32)
    A = -cupy.arange(1, 5, dtype=cupy.float32)
    B, C = (cupy.asarray(rng.standard_normal((2, 37, 2, 16)), dtype=cupy.float32) for _ in range(2))
    y, state = ssd_cupy.ssd_chunked_device(x, dt, A, B, C, 16, None, cupy)
    assert isinstance(y, cupy.ndarray) and bool(cupy.isfinite(y).all()) and bool(cupy.isfinite(state).all())
    scores = rng.integers(0, 3, (64, 4, 33)).astype(np.float32)
    assert (eviction_cupy.topk_lowest_index(scores, 9, xp=cupy) == topk_lowest_index(scores, 9)).all()
    assert (eviction_cupy.argmin_highest_index(scores, xp=cupy) == argmin_highest_index(scores)).all()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["tova", "h2o", "window"])
def test_batched_selection_on_a_gpu(name):
    pytest.importorskip("cupy")
    result = equiv.check(getattr(eviction_cupy, f"{name}_decode"), f"eviction.{name}.decode", seed=None)
    assert result.passed, str(result)

