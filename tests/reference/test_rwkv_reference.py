"""The RWKV-4 WKV references (reference/rwkv) against a loop written from the paper's equation,
form against form at every chunk size and split point, unchanged by a constant added to k,
finite where the naive sums overflow; and their argument checks."""

import numpy as np
import pytest

from seqcheck.reference.rwkv import wkv4_chunked, wkv4_naive, wkv4_parallel, wkv4_recurrent


def equation(k, v, w, u):
    """wkv_t element by element, as the paper writes it."""
    B, T, C = k.shape
    out = np.zeros((B, T, C))
    for b in range(B):
        for c in range(C):
            for t in range(T):
                num = sum(np.exp(-(t - 1 - i) * w[c] + k[b, i, c]) * v[b, i, c] for i in range(t))
                den = sum(np.exp(-(t - 1 - i) * w[c] + k[b, i, c]) for i in range(t))
                bonus = np.exp(u[c] + k[b, t, c])
                out[b, t, c] = (num + bonus * v[b, t, c]) / (den + bonus)
    return out


def inputs(seed=0, B=2, T=9, C=3):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, C)), rng.standard_normal((B, T, C)), np.exp(rng.standard_normal(C)),
            rng.standard_normal(C))


def canonical(state, reference):
    """p and q rescaled to the reference state's exponent o: the same state, whatever running maximum."""
    shift = np.exp(state[..., 2] - reference[..., 2])
    return np.stack([state[..., 0] * shift, state[..., 1] * shift], axis=-1)


def test_every_form_equals_the_equation():
    k, v, w, u = inputs()
    want = equation(k, v, w, u)
    for got in (wkv4_naive(k, v, w, u), wkv4_parallel(k, v, w, u), wkv4_recurrent(k, v, w, u)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    for chunk_size in range(1, 11):
        np.testing.assert_allclose(wkv4_chunked(k, v, w, u, chunk_size=chunk_size), want, rtol=1e-13, atol=1e-13)


def test_chunked_state_is_the_recurrent_state():
    k, v, w, u = inputs(1)
    _, want = wkv4_recurrent(k, v, w, u, return_state=True)
    for chunk_size in range(1, 11):
        _, state = wkv4_chunked(k, v, w, u, chunk_size=chunk_size, return_state=True)
        np.testing.assert_allclose(canonical(state, want), want[..., :2], rtol=1e-12, atol=1e-12)


def test_continuation_at_every_split_point():
    k, v, w, u = inputs(2)
    full = wkv4_recurrent(k, v, w, u)
    for s in range(1, k.shape[1]):
        first, state = wkv4_chunked(k[:, :s], v[:, :s], w, u, chunk_size=3, return_state=True)
        second = wkv4_recurrent(k[:, s:], v[:, s:], w, u, initial_state=state)
        np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, rtol=1e-13, atol=1e-13)


def test_a_constant_added_to_k_cancels():
    k, v, w, u = inputs(3)
    want = wkv4_recurrent(k, v, w, u)
    for shift in (-50.0, 3.0, 500.0):
        np.testing.assert_allclose(wkv4_recurrent(k + shift, v, w, u), want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(wkv4_chunked(k + shift, v, w, u, chunk_size=4), want, rtol=1e-12, atol=1e-12)


def test_chunks_whose_k_spread_widely_take_the_pairwise_rows(monkeypatch):
    """A chunk whose k spread beyond SPREAD (a row's weights all e^-800 below the chunk's largest)
    would lose its rows to underflow in the factored form; the pairwise rows keep them."""
    from seqcheck.reference.rwkv import wkv4

    k, v, w, u = inputs(5, T=12)
    k[:, 5] += 800.0  # row 4 sees only small k; the chunk [4, 8) holds the large one
    k[:, 9] -= 900.0  # a row far below both the state's weight and its chunk's largest
    want = wkv4_parallel(k, v, w, u)
    np.testing.assert_allclose(wkv4_chunked(k, v, w, u, chunk_size=4), want, rtol=1e-12, atol=1e-12)
    monkeypatch.setattr(wkv4, "SPREAD", np.inf)  # the factored rows everywhere: this input is why the fallback exists
    with np.errstate(invalid="ignore"):
        assert not np.allclose(wkv4_chunked(k, v, w, u, chunk_size=4), want, rtol=1e-6, equal_nan=False)


def test_stable_forms_stay_finite_where_the_naive_sums_overflow():
    k, v, w, u = inputs(4)
    k = k * 300 + 700  # up to about 1e3
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(wkv4_naive(k, v, w, u)).all()
    stable = wkv4_recurrent(k, v, w, u)
    assert np.isfinite(stable).all()
    np.testing.assert_allclose(wkv4_parallel(k, v, w, u), stable, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(wkv4_chunked(k, v, w, u, chunk_size=4), stable, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stable, wkv4_recurrent(k - 1000, v, w, u), rtol=1e-12, atol=1e-12)


def test_empty_sequence():
    k, v, w, u = inputs(T=0)
    out, state = wkv4_chunked(k, v, w, u, chunk_size=2, return_state=True)
    assert out.shape == (2, 0, 3) and np.isneginf(state[..., 2]).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda k, v, w, u: wkv4_recurrent(k, v, -w, u), ValueError, "w must hold finite decays > 0"),
    (lambda k, v, w, u: wkv4_recurrent(k, v, w[:-1], u), ValueError, r"w must have shape \(C,\)"),
    (lambda k, v, w, u: wkv4_recurrent(k, v[:, :-1], w, u), ValueError, "v must have shape"),
    (lambda k, v, w, u: wkv4_recurrent(k, v, w, u, initial_state=np.zeros((2, 3))), ValueError, "initial_state"),
    (lambda k, v, w, u: wkv4_chunked(k, v, w, u, chunk_size=0), ValueError, "chunk_size"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(*inputs())
