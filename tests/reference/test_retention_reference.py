"""The retention references (reference/retention) against a loop written from the paper's equation,
form against form at every chunk size and split point, exactly on Fractions, at the ends of the
decay range, and their argument checks."""

from fractions import Fraction

import numpy as np
import pytest

from seqcheck.reference.retention import retention_chunked, retention_parallel, retention_recurrent, retention_step

EPS = np.finfo(np.float64).eps


def naive_retention(q, k, v, gamma, initial_state=None):
    """o_n = sum_{m<=n} gamma^(n-m) (q_n . k_m) v_m + gamma^(n+1) q_n S_0, element by element."""
    B, T, H, K = q.shape
    V = v.shape[3]
    out = np.zeros((B, T, H, V), dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for n in range(T):
                for m in range(n + 1):
                    out[b, n, h] += gamma[h] ** (n - m) * np.dot(q[b, n, h], k[b, m, h]) * v[b, m, h]
                if initial_state is not None:
                    out[b, n, h] += gamma[h] ** (n + 1) * (q[b, n, h] @ initial_state[b, h])
    return out


def inputs(seed=0, B=2, T=7, H=3, K=4, V=5):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, V))
    return q, k, v, np.array([0.9, 0.5, 0.0])[:H], rng.standard_normal((B, H, K, V))


def bound(q, k, v, gamma, S0, T):
    """The module's rule: 4 (T + K + 4) eps (1 + T max|log gamma|) times the terms' magnitudes."""
    m = naive_retention(np.abs(q), np.abs(k), np.abs(v), gamma, None if S0 is None else np.abs(S0))
    logs = np.abs(np.log(gamma[gamma > 0])) if (gamma > 0).any() else np.zeros(1)
    return 4 * (T + q.shape[3] + 4) * EPS * (1 + T * logs.max()) * m


def test_the_three_forms_equal_the_equation():
    q, k, v, gamma, S0 = inputs()
    want = naive_retention(q, k, v, gamma, S0)
    limit = bound(q, k, v, gamma, S0, q.shape[1])
    assert (np.abs(retention_recurrent(q, k, v, gamma, initial_state=S0) - want) <= limit).all()
    assert (np.abs(retention_parallel(q, k, v, gamma) - naive_retention(q, k, v, gamma)) <= limit).all()
    for chunk_size in range(1, q.shape[1] + 2):
        got = retention_chunked(q, k, v, gamma, chunk_size=chunk_size, initial_state=S0)
        assert (np.abs(got - want) <= limit).all(), chunk_size


def test_chunked_state_equals_the_recurrent_state_at_every_chunk_size():
    q, k, v, gamma, S0 = inputs(1)
    _, want = retention_recurrent(q, k, v, gamma, initial_state=S0, return_state=True)
    for chunk_size in range(1, q.shape[1] + 2):
        _, got = retention_chunked(q, k, v, gamma, chunk_size=chunk_size, initial_state=S0, return_state=True)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_continuation_at_every_split_point():
    q, k, v, gamma, S0 = inputs(2)
    full, full_state = retention_recurrent(q, k, v, gamma, initial_state=S0, return_state=True)
    for s in range(1, q.shape[1]):
        first, state = retention_chunked(q[:, :s], k[:, :s], v[:, :s], gamma, chunk_size=3, initial_state=S0,
                                         return_state=True)
        second, last = retention_chunked(q[:, s:], k[:, s:], v[:, s:], gamma, chunk_size=2, initial_state=state,
                                         return_state=True)
        np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(last, full_state, rtol=1e-12, atol=1e-12)


def test_steps_equal_one_pass():
    q, k, v, gamma, S0 = inputs(3)
    full, full_state = retention_recurrent(q, k, v, gamma, initial_state=S0, return_state=True)
    state = S0
    for t in range(q.shape[1]):
        out, state = retention_step(q[:, t], k[:, t], v[:, t], gamma, state=state)
        np.testing.assert_allclose(out, full[:, t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state, full_state, rtol=1e-12, atol=1e-12)


def fractions(rng, shape, den=7):
    return np.array([Fraction(int(n), den) for n in rng.integers(-9, 10, np.prod(shape, dtype=int))],
                    dtype=object).reshape(shape)


def test_exactly_equal_on_fractions():
    rng = np.random.default_rng(4)
    q, k, v = fractions(rng, (1, 6, 2, 2)), fractions(rng, (1, 6, 2, 2)), fractions(rng, (1, 6, 2, 3))
    gamma, S0 = np.array([Fraction(2, 3), Fraction(0)], dtype=object), fractions(rng, (1, 2, 2, 3))
    want = naive_retention(q, k, v, gamma, S0)
    assert want.dtype == object and isinstance(want.flat[0], Fraction)
    assert (retention_recurrent(q, k, v, gamma, initial_state=S0) == want).all()
    assert (retention_parallel(q, k, v, gamma) == naive_retention(q, k, v, gamma)).all()
    for chunk_size in range(1, 8):
        assert (retention_chunked(q, k, v, gamma, chunk_size=chunk_size, initial_state=S0) == want).all()


def test_gamma_zero_keeps_the_current_token_and_gamma_one_sums_everything():
    q, k, v, _, _ = inputs(5, H=2)
    out = retention_chunked(q, k, v, np.array([0.0, 1.0]), chunk_size=3)
    np.testing.assert_allclose(out[:, :, 0], np.einsum("btk,btk->bt", q[:, :, 0], k[:, :, 0])[..., None] * v[:, :, 0],
                               rtol=1e-13, atol=1e-13)
    scores = np.tril(np.einsum("bnk,bmk->bnm", q[:, :, 1], k[:, :, 1]))
    np.testing.assert_allclose(out[:, :, 1], scores @ v[:, :, 1], rtol=1e-12, atol=1e-12)


def test_long_sequences_near_no_decay_stay_finite_and_agree():
    rng = np.random.default_rng(6)
    T, K = 4096, 4
    q, k, v = (rng.standard_normal((1, T, 2, K)) for _ in range(3))
    gamma = np.array([1 - 1e-4, 1.0])
    recurrent = retention_recurrent(q, k, v, gamma)
    chunked = retention_chunked(q, k, v, gamma, chunk_size=257)
    assert np.isfinite(chunked).all()
    magnitudes = retention_recurrent(np.abs(q), np.abs(k), np.abs(v), gamma)  # the rule's m_t, vectorised
    factor = 4 * (T + K + 4) * EPS * (1 + T * 1e-4)
    assert (np.abs(chunked - recurrent) <= factor * magnitudes).all()


def test_empty_sequence():
    q, k, v, gamma, S0 = inputs(T=0)
    out, state = retention_chunked(q, k, v, gamma, chunk_size=2, initial_state=S0, return_state=True)
    assert out.shape == (2, 0, 3, 5) and (state == S0).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda q, k, v, g, S: retention_parallel(q, k, v, g[:2]), ValueError, r"gamma must have shape \(H,\)"),
    (lambda q, k, v, g, S: retention_parallel(q, k, v, g + 1), ValueError, r"gamma must lie in \[0, 1\]"),
    (lambda q, k, v, g, S: retention_parallel(q, k[:, :-1], v, g), ValueError, "k must have shape"),
    (lambda q, k, v, g, S: retention_recurrent(q, k, v, g, initial_state=S[..., :-1]), ValueError,
     "initial_state must have shape"),
    (lambda q, k, v, g, S: retention_chunked(q, k, v, g, chunk_size=0), ValueError, "chunk_size"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(*inputs())
