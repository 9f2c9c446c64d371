"""Unit tests of the linear-attention references: against a loop transcription of
fast-transformers' formulas, form against form, at every split point and exactly on Fractions."""

from fractions import Fraction

import numpy as np
import pytest

from seqcheck.reference.linear_attention import (
    elu_feature_map,
    linear_attention_chunked,
    linear_attention_parallel,
    linear_attention_recurrent,
    linear_attention_step,
)

EPS = np.finfo(np.float64).eps
PHI = {"elu": lambda x: np.where(x > 0, x + 1, np.exp(np.minimum(x, 0))), "identity": lambda x: x}


def naive_linear_attention(q, k, v, *, feature_map="elu", eps=1e-6, causal=True):
    """fast-transformers' formula one (b, i, h) at a time: the numerator sum_j (Q_i . K_j) v_j
    times 1 / (Q_i . sum_j K_j + eps), j <= i if causal. Works on floats and on Fractions."""
    Q, K = PHI[feature_map](q), PHI[feature_map](k)
    batch, T, H, _ = q.shape
    out = np.empty((batch, T, H, v.shape[3]), dtype=object if q.dtype == object else float)
    for b in range(batch):
        for h in range(H):
            for i in range(T):
                keys = range(i + 1) if causal else range(k.shape[1])
                num = sum((sum(Q[b, i, h] * K[b, j, h]) * v[b, j, h] for j in keys), 0 * v[b, 0, h])
                den = sum(Q[b, i, h] * sum(K[b, j, h] for j in keys))
                out[b, i, h] = num * (1 / (den + eps))
    return out


def make(rng, *, batch=2, T=6, H=2, D=3, M=4, positive=False):
    q, k = rng.standard_normal((batch, T, H, D)), rng.standard_normal((batch, T, H, D))
    if positive:  # well-conditioned denominators for the identity map
        q, k = abs(q) + 0.1, abs(k) + 0.1
    return q, k, rng.standard_normal((batch, T, H, M))


def budget(q, k, v, out, feature_map, causal=True):
    """For positive features: c (T + D) eps (sum_j A_ij |v_j| / den + |out|), the error of the
    numerator's and the denominator's sums, each relative to the magnitude of its terms."""
    magnitude = linear_attention_parallel(q, k, abs(v), feature_map=feature_map, causal=causal)
    return 4 * (k.shape[1] + q.shape[3] + 2) * EPS * (magnitude + abs(out))


def assert_within(got, want, bound):
    err = np.abs(got - want)
    assert np.all(err <= bound), f"worst error {err.max():.3e}, worst ratio {(err / bound).max():.2f}"


def random_fractions(rng, shape, lo=-9, hi=10):
    size = int(np.prod(shape))
    values = [Fraction(int(n), int(d)) for n, d in zip(rng.integers(lo, hi, size), rng.integers(1, 7, size))]
    return np.array(values, dtype=object).reshape(shape)


@pytest.mark.parametrize("feature_map", ["elu", "identity"])
@pytest.mark.parametrize("T", [1, 6])
def test_every_form_matches_the_naive_formula(feature_map, T):
    q, k, v = make(np.random.default_rng(1), T=T, positive=feature_map == "identity")
    want = naive_linear_attention(q, k, v, feature_map=feature_map)
    bound = budget(q, k, v, want, feature_map)
    assert_within(linear_attention_parallel(q, k, v, feature_map=feature_map), want, bound)
    assert_within(linear_attention_recurrent(q, k, v, feature_map=feature_map), want, bound)
    for c in range(1, T + 2):
        assert_within(linear_attention_chunked(q, k, v, feature_map=feature_map, chunk_size=c), want, bound)


def test_non_causal_matches_naive_and_fast_transformers_order():
    rng = np.random.default_rng(2)
    q, _, _ = make(rng, T=5)
    _, k, v = make(rng, T=7)  # keys of another length
    want = naive_linear_attention(q, k, v, causal=False)
    got = linear_attention_parallel(q, k, v, causal=False)
    bound = budget(q, k, v, want, "elu", causal=False)
    assert_within(got, want, bound)
    Q, K = elu_feature_map(q), elu_feature_map(k)  # LinearAttention.forward: KV first, then Z
    KV = np.einsum("nshd,nshm->nhmd", K, v)
    Z = 1 / (np.einsum("nlhd,nhd->nlh", Q, K.sum(axis=1)) + 1e-6)
    assert_within(got, np.einsum("nlhd,nhmd,nlh->nlhm", Q, KV, Z), bound)


def test_elu_feature_map_is_torch_elu_plus_one():
    """Equal for x > 0; for x <= 0 torch's (exp(x) - 1) + 1 rounds twice, each within eps/2 of 1."""
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-40, 40, 401), [-1e-9, 0.0, 1e-9, -800.0]])
    want = (torch.nn.functional.elu(torch.from_numpy(x)) + 1).numpy()
    got = elu_feature_map(x)
    np.testing.assert_array_equal(got[x > 0], want[x > 0])
    assert np.all(np.abs(got - want) <= EPS)
    np.testing.assert_array_equal(got[x <= 0], np.exp(x[x <= 0]))


@pytest.mark.parametrize("eps", [Fraction(1, 1000), 1e-6, 0])
def test_identity_map_forms_are_exact_on_fractions(eps):
    rng = np.random.default_rng(3)
    T = 5
    q, k = random_fractions(rng, (1, T, 2, 2), 1, 9), random_fractions(rng, (1, T, 2, 2), 1, 9)
    v = random_fractions(rng, (1, T, 2, 3))
    kw = dict(feature_map="identity", eps=eps)
    want = naive_linear_attention(q, k, v, feature_map="identity", eps=Fraction(eps))
    assert all(isinstance(x, Fraction) for x in want.flat)
    assert (linear_attention_parallel(q, k, v, **kw) == want).all()
    full, state = linear_attention_recurrent(q, k, v, **kw, return_state=True)
    assert (full == want).all()
    for c in range(1, T + 2):
        got, got_state = linear_attention_chunked(q, k, v, **kw, chunk_size=c, return_state=True)
        assert (got == want).all() and all((a == b).all() for a, b in zip(got_state, state)), c
    for s in range(1, T):  # state continuation, exactly
        for form in (linear_attention_recurrent, lambda *a, **o: linear_attention_chunked(*a, **o, chunk_size=2)):
            y1, st = form(q[:, :s], k[:, :s], v[:, :s], **kw, return_state=True)
            y2 = form(q[:, s:], k[:, s:], v[:, s:], **kw, initial_state=st)
            assert (np.concatenate([y1, y2], axis=1) == want).all(), s
    non_causal = naive_linear_attention(q, k, v, feature_map="identity", eps=Fraction(eps), causal=False)
    assert (linear_attention_parallel(q, k, v, **kw, causal=False) == non_causal).all()


def test_state_continues_at_every_split_and_steps_equal_one_scan():
    q, k, v = make(np.random.default_rng(4), T=6)
    want, want_state = linear_attention_recurrent(q, k, v, return_state=True)
    bound = budget(q, k, v, want, "elu")
    for s in range(1, 6):
        for form in (linear_attention_recurrent, lambda *a, **o: linear_attention_chunked(*a, **o, chunk_size=4)):
            y1, st = form(q[:, :s], k[:, :s], v[:, :s], return_state=True)
            y2, st = form(q[:, s:], k[:, s:], v[:, s:], initial_state=st, return_state=True)
            assert_within(np.concatenate([y1, y2], axis=1), want, bound)
            assert all(np.allclose(a, b, rtol=1e-13, atol=0) for a, b in zip(st, want_state))
    state, ys = None, []
    for t in range(6):
        y, state = linear_attention_step(q[:, t], k[:, t], v[:, t], state=state)
        ys.append(y)
    np.testing.assert_array_equal(np.stack(ys, axis=1), want)
    for a, b in zip(state, want_state):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_not_mutated():
    q, k, v = make(np.random.default_rng(5))
    copies = [a.copy() for a in (q, k, v)]
    linear_attention_chunked(q, k, v, chunk_size=4)
    linear_attention_parallel(q, k, v)
    for a, b in zip((q, k, v), copies):
        np.testing.assert_array_equal(a, b)


def _bad_inputs():
    q, k, v = make(np.random.default_rng(6))
    frac = random_fractions(np.random.default_rng(7), q.shape)
    return [
        (lambda: linear_attention_parallel(q, k[:, :-1], v), ValueError,
         r"k must have shape \(B, T, H, D\)=\(2, 6, 2, 3\) to match q"),
        (lambda: linear_attention_parallel(q, k, v[:, :, :1]), ValueError, r"v must have shape \(B, T, H, M\)"),
        (lambda: linear_attention_parallel(q[0], k, v), ValueError, r"q must have shape \(B, T, H, D\) with H, D >= 1"),
        (lambda: linear_attention_parallel(q + 1j, k, v), TypeError, r"q must hold real numbers"),
        (lambda: linear_attention_parallel(q, k, v, feature_map="relu"), ValueError, r"feature_map must be 'elu'"),
        (lambda: linear_attention_parallel(frac, frac, v), TypeError, r"feature_map 'elu' does not keep Fractions"),
        (lambda: linear_attention_parallel(q, k, v, eps=-1e-6), ValueError, r"eps must be a finite number >= 0"),
        (lambda: linear_attention_parallel(q, k, v, causal=None), TypeError, r"causal must be a bool"),
        (lambda: linear_attention_chunked(q, k, v, chunk_size=0), ValueError, r"chunk_size must be an int >= 1"),
        (lambda: linear_attention_chunked(q, k, v, chunk_size=1.5), TypeError, r"chunk_size must be an int"),
        (lambda: linear_attention_recurrent(q, k, v, initial_state=np.zeros((2, 2, 3, 4))), TypeError,
         r"initial_state must be a pair \(S, z\)"),
        (lambda: linear_attention_recurrent(q, k, v, initial_state=(np.zeros((2, 2, 3, 4)), np.zeros((2, 2, 4)))),
         ValueError, r"initial_state\[1\] \(z\) must have shape \(B, H, D\)"),
        (lambda: linear_attention_step(q, k[:, 0], v[:, 0], state=None), ValueError,
         r"q_t must have shape \(B, H, D\)"),
    ]


@pytest.mark.parametrize("call, error, match", _bad_inputs())
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
