"""backend="jax": a jax.numpy kernel is checked on the CPU like a NumPy or torch one (installed by
the ``jax`` extra, which the test extra includes)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqcheck import equiv
from seqcheck.properties import inputs_for

PLAIN = dict(causal=True, window=None, key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False,
             kv_heads=1, group=1)


def causal_attention(q, k, v, *, scale=None, causal=True, shift=0, **unused):
    """Bottom-right causal softmax attention in jax.numpy; ``shift`` moves the diagonal (a mutant)."""
    Tq, Tk, D = q.shape[1], k.shape[1], q.shape[3]
    scale = 1 / np.sqrt(D) if scale is None else scale
    scores = jnp.einsum("bihd,bjhd->bhij", q, k) * scale
    visible = jnp.arange(Tk)[None, :] <= jnp.arange(Tq)[:, None] + (Tk - Tq) + shift
    scores = jnp.where(visible, scores, -jnp.inf)
    weights = jax.nn.softmax(scores, axis=-1)
    weights = jnp.where(visible.any(-1)[:, None], weights, 0)
    return jnp.einsum("bhij,bjhd->bihd", weights, v)


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
