"""backend="jax": a jax.numpy kernel is checked on the CPU like a NumPy or torch one (installed by
the ``jax`` extra, which the test extra includes), its forward and, with grad=True, its
jax.grad backward (complex gradients conjugated to the oracles' convention)."""

import jax
import pytest

from kernels.jax_kernels import attention_without_the_scale_in_dq, causal_attention, jax_s4d
from seqcheck import equiv
from seqcheck.properties import inputs_for

PLAIN = dict(causal=True, window=None, key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False,
             kv_heads=1, group=1)


def off_by_one(q, k, v, **options):
    return causal_attention(q, k, v, shift=1, **options)


@pytest.fixture
def x64():
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


INPUTS = inputs_for("attention.softmax.parallel", **PLAIN)


def test_a_jax_kernel_passes_in_float32():
    result = equiv.check(causal_attention, "attention.softmax.parallel", dtype="float32", backend="jax",
                         inputs=INPUTS, seed=0, max_examples=20)
    assert result.status == "passed", str(result)


def test_a_wrong_jax_kernel_fails():
    result = equiv.check(off_by_one, "attention.softmax.parallel", dtype="float32", backend="jax", inputs=INPUTS,
                         seed=0, max_examples=100)
    assert result.status == "failed", str(result)


def test_float64_without_jax_x64_is_an_error_not_a_float32_run():
    """JAX's default turns float64 inputs into float32; the check says so instead of judging
    float32 outputs against a float64 bound."""
    result = equiv.check(causal_attention, "attention.softmax.parallel", backend="jax", inputs=INPUTS, seed=0)
    assert result.status == "error" and "jax_enable_x64" in result.hint


def test_float64_with_jax_x64_passes(x64):
    result = equiv.check(causal_attention, "attention.softmax.parallel", backend="jax", inputs=INPUTS, seed=0,
                         max_examples=20)
    assert result.status == "passed", str(result)


def test_jax_outputs_with_the_numpy_backend_are_an_error():
    result = equiv.check(causal_attention, "attention.softmax.parallel", dtype="float32", inputs=INPUTS, seed=0)
    assert result.status == "error" and "backend='jax'" in result.hint


def test_jax_grad_of_a_jax_kernel_passes_in_float32_and_float64(x64):
    for dtype in ("float32", None):
        result = equiv.check(causal_attention, "attention.softmax.parallel", grad=True, dtype=dtype, backend="jax",
                             inputs=INPUTS, seed=0, max_examples=8, progress=False)  # jax.grad: ~1 s each
        assert result.passed, str(result)


def test_a_jax_custom_vjp_without_the_scale_in_dq_is_caught(x64):
    key = "attention.softmax.parallel"
    wrong = attention_without_the_scale_in_dq
    assert equiv.check(wrong, key, backend="jax", inputs=INPUTS, seed=0, max_examples=3, progress=False).passed
    result = equiv.check(wrong, key, grad=True, backend="jax", inputs=INPUTS, seed=0, max_examples=5,
                         progress=False)
    assert result.status == "failed" and "'dq'" in result.counterexample.message


def test_jax_complex_gradients_are_read_in_the_oracles_convention(x64):
    """S4D's A, B, C are complex: unconjugated, JAX's gradients would fail like the torch mutant
    ``s4d_with_conjugated_gradients``."""
    result = equiv.check(jax_s4d, "ssm.s4d.krylov", grad=True, backend="jax", seed=0, max_examples=10,
                         progress=False)
    assert result.passed, str(result)


def test_jax_grad_in_float64_without_x64_is_an_error():
    result = equiv.check(causal_attention, "attention.softmax.parallel", grad=True, backend="jax", inputs=INPUTS,
                         seed=0)
    assert result.status == "error" and "jax_enable_x64" in result.hint
