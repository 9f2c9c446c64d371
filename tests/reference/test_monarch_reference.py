"""Monarch references against HazyResearch/fly's semantics (its test sizes: w1 (8, 192, 96), w2
(24, 16, 64), n = 768 -> 384), numpy's FFT for the DFT factors, the transpose rule's digit swaps,
the VJP against central differences and torch autograd, real and complex, and torch candidates
checked through ``equiv.check``: a factored multiply in float32 and its backward, a version
without the middle reshuffle rejected."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck import equiv
from seqcheck.properties import inputs_for
from seqcheck.reference import monarch as ref

torch = pytest.importorskip("torch")


def torch_monarch(x, w1, w2, *, shuffle=True):
    dtype = torch.promote_types(x.dtype, torch.promote_types(w1.dtype, w2.dtype))
    x, w1, w2 = (a.to(dtype) for a in (x, w1, w2))
    k, q, p = w1.shape
    l, s, r = w2.shape
    lead = x.shape[:-1]
    y = torch.einsum("kqp,...kp->...kq", w1, x.reshape(*lead, k, p))
    z = y.reshape(*lead, r, l).transpose(-1, -2) if shuffle else y.reshape(*lead, l, r)
    return torch.einsum("lsr,...lr->...ls", w2, z).transpose(-1, -2).reshape(*lead, s * l)


def test_fly_sizes_non_square():
    rng = np.random.default_rng(0)
    w1, w2, x = rng.standard_normal((8, 192, 96)), rng.standard_normal((24, 16, 64)), rng.standard_normal((3, 768))
    out = ref.monarch_multiply(x, w1, w2)
    assert out.shape == (3, 384)
    np.testing.assert_allclose(out, x @ ref.monarch_dense(w1, w2).T, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(out, torch_monarch(torch.tensor(x), torch.tensor(w1), torch.tensor(w2)).numpy(),
                               rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("n", [1, 2, 4, 6, 7, 12, 15, 16, 36, 64, 97])
def test_dft_factors_give_numpys_fft(n):
    x = np.random.default_rng(n).standard_normal((2, n))
    np.testing.assert_allclose(ref.monarch_dft(x), np.fft.fft(x), rtol=1e-12, atol=1e-12 * n)


def test_projection_matches_the_paper_on_a_monarch_matrix_plus_noise():
    rng = np.random.default_rng(1)
    w1, w2 = rng.standard_normal((3, 4, 4)), rng.standard_normal((4, 3, 3))
    M = ref.monarch_dense(w1, w2)
    noisy = M + 1e-3 * rng.standard_normal(M.shape)
    assert np.linalg.norm(ref.monarch_dense(*ref.monarch_project(noisy, (3, 4))) - M) < 2e-3 * 12


@pytest.mark.parametrize("complex_", [False, True])
def test_monarch_vjp_matches_central_differences_and_autograd(complex_):
    rng = np.random.default_rng(2)

    def draw(*shape):
        return rng.standard_normal(shape) + (1j * rng.standard_normal(shape) if complex_ else 0)

    args = dict(x=draw(2, 6), w1=draw(3, 4, 2), w2=draw(6, 5, 2))
    cotangent = rng.standard_normal((2, 30)) + (1j * rng.standard_normal((2, 30)) if complex_ else 0)
    grads = ref.monarch_vjp(**args, cotangent=cotangent)
    assert_central_differences(ref.monarch_multiply, args, (cotangent,), grads, ("x", "w1", "w2"), rng)
    assert_matches_autograd(torch_monarch, args, (cotangent,), grads, ("x", "w1", "w2"))


def test_a_torch_monarch_passes_in_float32_and_its_backward_in_float64():
    result = equiv.check(torch_monarch, "monarch.matrix.factored", backend="torch", dtype="float32", seed=0,
                         max_examples=60, inputs=inputs_for("monarch.matrix.factored", complex_factors=False))
    assert result.passed, str(result)
    grad = equiv.check(torch_monarch, "monarch.matrix.dense", backend="torch", grad=True, seed=0, max_examples=40)
    assert grad.passed, str(grad)


def test_a_monarch_without_the_middle_reshuffle_is_rejected():
    wrong = lambda x, w1, w2: torch_monarch(x, w1, w2, shuffle=False)  # noqa: E731
    assert equiv.check(wrong, "monarch.matrix.factored", backend="torch", seed=0, max_examples=100).status == "failed"
