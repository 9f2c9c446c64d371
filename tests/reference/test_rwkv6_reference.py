"""The RWKV-5/6 matrix-state references (reference/rwkv/wkv6.py) against a loop written from the
paper's equation, form against form at every chunk size, exactly on Fractions, through extreme
decays; RWKV-6 as GLA on the one-step-delayed keys plus the bonus; the GroupNorm; bad input."""

from fractions import Fraction

import numpy as np
import pytest

from seqcheck.reference.gla import gla_recurrent
from seqcheck.reference.rwkv import wkv6_chunked, wkv6_parallel, wkv6_recurrent, wkv6_step, wkv_group_norm


def equation(r, k, v, w, u, S0):
    """o_t = r_t (diag(u) k_t^T v_t + S_{t-1}), S_t = diag(w_t) S_{t-1} + k_t^T v_t, element by element."""
    B, T, H, K = r.shape
    V = v.shape[3]
    out, S = np.zeros((B, T, H, V)), S0.copy()
    for b in range(B):
        for h in range(H):
            for t in range(T):
                for j in range(V):
                    out[b, t, h, j] = sum(r[b, t, h, i] * (u[h, i] * k[b, t, h, i] * v[b, t, h, j] + S[b, h, i, j])
                                          for i in range(K))
                S[b, h] = w[b, t, h][:, None] * S[b, h] + np.outer(k[b, t, h], v[b, t, h])
    return out, S


def inputs(seed=0, B=2, T=9, H=2, K=3, V=4):
    rng = np.random.default_rng(seed)
    r, k = rng.standard_normal((2, B, T, H, K))
    return (r, k, rng.standard_normal((B, T, H, V)), -np.exp(rng.standard_normal((B, T, H, K))),
            rng.standard_normal((H, K)), rng.standard_normal((B, H, K, V)))


def test_the_recurrence_equals_the_equation():
    r, k, v, g, u, S0 = inputs()
    want, want_state = equation(r, k, v, np.exp(g), u, S0)
    out, state = wkv6_recurrent(r, k, v, g, u=u, initial_state=S0, return_state=True)
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-13)
    np.testing.assert_allclose(state, want_state, rtol=0, atol=1e-13)


@pytest.mark.parametrize("chunk_size", range(1, 11))
def test_chunked_equals_recurrent_at_every_chunk_size(chunk_size):
    r, k, v, g, u, S0 = inputs(1)
    want = wkv6_recurrent(r, k, v, g, u=u, initial_state=S0, return_state=True)
    got = wkv6_chunked(r, k, v, g, u=u, chunk_size=chunk_size, initial_state=S0, return_state=True)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_parallel_and_rwkv5_decays():
    r, k, v, g, u, _ = inputs(2)
    np.testing.assert_allclose(wkv6_parallel(r, k, v, g, u=u), wkv6_recurrent(r, k, v, g, u=u), rtol=0, atol=1e-12)
    H, K = u.shape
    per_head, per_channel = g[0, 0, :, 0], g[0, 0]  # v5.0 (H,), v5.2 (H, K): constant in time
    for constant in (per_head, per_channel):
        full = np.broadcast_to(constant[:, None] if constant.ndim == 1 else constant, g.shape)
        np.testing.assert_allclose(wkv6_parallel(r, k, v, constant, u=u), wkv6_recurrent(r, k, v, full, u=u),
                                   rtol=0, atol=1e-12)
    np.testing.assert_allclose(wkv6_recurrent(r, k, v, g, u=u[:, 0]),
                               wkv6_recurrent(r, k, v, g, u=np.broadcast_to(u[:, :1], (H, K))), rtol=0, atol=0)


def test_rwkv6_is_gla_on_delayed_keys_plus_the_bonus():
    r, k, v, g, u, S0 = inputs(3)

    def delayed(x):
        return np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)

    bonus = np.einsum("bthk,hk,bthk->bth", r, u, k)[..., None] * v
    gla = gla_recurrent(r, delayed(k), delayed(v), delayed(g), scale=1.0, initial_state=S0)
    np.testing.assert_allclose(wkv6_recurrent(r, k, v, g, u=u, initial_state=S0), gla + bonus, rtol=0, atol=1e-13)


def rational(x, den=3):
    return np.frompyfunc(lambda a: Fraction(int(a), den), 1, 1)(np.round(3 * x)).astype(object)


@pytest.mark.parametrize("chunk_size", [1, 2, 4, 10, 19, 30])
def test_exact_on_fractions(chunk_size):
    r, k, v, g, u, S0 = inputs(4, T=19)  # chunks of 10 and more span several sub-chunks of 8
    decay = np.frompyfunc(lambda a: Fraction(int(a), 4), 1, 1)(
        np.random.default_rng(4).integers(0, 5, g.shape)).astype(object)  # resets (0) and no decay (1) included
    r, k, v, u, S0 = (rational(x) for x in (r, k, v, u, S0))
    want, want_state = wkv6_recurrent(r, k, v, decay=decay, u=u, initial_state=S0, return_state=True)
    got, state = wkv6_chunked(r, k, v, decay=decay, u=u, chunk_size=chunk_size, initial_state=S0, return_state=True)
    assert isinstance(got.flat[0], Fraction) and (got == want).all() and (state == want_state).all()
    assert (wkv6_parallel(r, k, v, decay=decay, u=u) == wkv6_recurrent(r, k, v, decay=decay, u=u)).all()


def test_steps_equal_one_pass():
    r, k, v, g, u, S0 = inputs(5)
    want, want_state = wkv6_recurrent(r, k, v, g, u=u, initial_state=S0, return_state=True)
    state, outs = S0, []
    for t in range(r.shape[1]):
        out, state = wkv6_step(r[:, t], k[:, t], v[:, t], g[:, t], u=u, state=state)
        outs.append(out)
    np.testing.assert_allclose(np.stack(outs, axis=1), want, rtol=0, atol=0)
    np.testing.assert_allclose(state, want_state, rtol=0, atol=0)


def test_extreme_decays_stay_finite():
    rng = np.random.default_rng(6)
    r, k, v, _, u, _ = inputs(6, B=1, T=300, H=1, K=2, V=2)
    g = rng.choice(np.array([0.0, -1e-6, -1e4, -np.inf]), r.shape)
    want = wkv6_recurrent(r, k, v, g, u=u, return_state=True)
    got = wkv6_chunked(r, k, v, g, u=u, chunk_size=64, return_state=True)
    for a, b in zip(got, want):
        assert np.isfinite(a).all()
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def test_group_norm_normalises_each_head():
    rng = np.random.default_rng(7)
    o = 5 + 3 * rng.standard_normal((2, 3, 2, 8))
    weight, bias = rng.standard_normal(16), rng.standard_normal(16)
    normed = wkv_group_norm(o, weight=np.ones(16), bias=np.zeros(16), eps=0.0)
    np.testing.assert_allclose(normed.mean(axis=-1), 0, atol=1e-14)
    np.testing.assert_allclose(normed.std(axis=-1), 1, atol=1e-14)
    np.testing.assert_allclose(wkv_group_norm(o, weight=weight, bias=bias, eps=0.0),
                               normed * weight.reshape(2, 8) + bias.reshape(2, 8), rtol=0, atol=1e-14)


@pytest.mark.parametrize("call, error, match", [
    (lambda r, k, v, g, u: wkv6_recurrent(r, k, v, g, u=u[:, :1]), ValueError, "^u must have shape"),
    (lambda r, k, v, g, u: wkv6_recurrent(r, k, v, -g, u=u), ValueError, "^g must hold log-decays"),
    (lambda r, k, v, g, u: wkv6_recurrent(r, k, v, u=u), TypeError, "g .log-decays. and decay"),
    (lambda r, k, v, g, u: wkv6_chunked(r, k, v, g, u=u, chunk_size=0), ValueError, "^chunk_size"),
    (lambda r, k, v, g, u: wkv6_recurrent(r, k, v, g[0, 0, 0], u=u), ValueError, "^g must have shape"),
])
def test_bad_arguments_are_named(call, error, match):
    r, k, v, g, u, _ = inputs()
    with pytest.raises(error, match=match):
        call(r, k, v, g, u)
