"""Retention (RetNet: Sun et al. 2023, "Retentive Network", arXiv:2307.08621), per head h with
decay gamma_h in [0, 1]:

    parallel:   o_n = sum_{m<=n} gamma^(n-m) (q_n . k_m) v_m
                    = ((Q K^T) o D) V,  D_nm = gamma^(n-m) for n >= m, else 0
    recurrent:  S_n = gamma S_{n-1} + k_n^T v_n,   o_n = q_n S_n      (S_{-1} = S_0)

so with an initial state o_n gains gamma^(n+1) q_n S_0 (the recurrent and chunked forms take one).
    chunked:    per chunk of c steps, i its steps' offsets 0..c-1:
                o_i = ((Q K^T) o D) V + gamma^(i+1) q_i S_prev,
                S   = gamma^c S_prev + sum_j gamma^(c-1-j) k_j^T v_j

q, k (B, T, H, K), v (B, T, H, V), gamma (H,), state S (B, H, K, V). 0^0 = 1: gamma = 0 keeps
the current token only.

``microsoft/torchscale: torchscale/component/multiscale_retention.py`` computes these three
forms (``parallel_forward``, ``recurrent_forward``, ``chunk_recurrent_forward``) around this
core; differences: here no rotation, no k scaling, no normalisation of the decay mask or of
the scores (torchscale divides by row sums, which changes each row by a positive scale that
its RMSNorm then removes), no group norm or gate (the multi-scale retention layer adds them),
the batch-first (B, T, H, .) layout instead of (B, H, T, .), any chunk size (torchscale asserts
that it divides T), and an initial state for every form that has a state.

Exact mode: if any of q, k, v, gamma, initial_state is an object array (or gamma a Fraction
sequence), everything becomes ``fractions.Fraction`` and the result is exact.
"""

from fractions import Fraction

import numpy as np

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, positive_int


def _prepare(q, k, v, gamma, initial_state, names=("q", "k", "v", "gamma", "initial_state")):
    """(q, k, v, gamma (H,), S0 (B, H, K, V)) all float64 or all Fraction, checked by name."""
    nq, nk, nv, ngamma, nstate = names
    q, k, v = (as_real(n, a, exact_ok=True) for n, a in ((nq, q), (nk, k), (nv, v)))
    batch, T, H, K = check_layout(nq, q, "(B, T, H, K)")
    check_shape(nk, k, q.shape, "(B, T, H, K)", match=nq)
    check_layout(nv, v, "(B, T, H, V)")
    check_shape(nv, v, q.shape[:3] + v.shape[3:], "(B, T, H, V)", match=nq)
    gamma = as_real(ngamma, gamma, exact_ok=True)
    check_shape(ngamma, gamma, (H,), "(H,)", match=nq)
    if gamma.dtype != object and not ((gamma >= 0) & (gamma <= 1)).all():
        raise ValueError(f"{ngamma} must lie in [0, 1] (one decay per head); got {gamma}")
    state = np.zeros((batch, H, K, v.shape[3])) if initial_state is None else as_real(nstate, initial_state,
                                                                                      exact_ok=True)
    check_shape(nstate, state, (batch, H, K, v.shape[3]), "(B, H, K, V)", match=f"{nq} and {nv}")
    arrays = {nq: q, nk: k, nv: v, ngamma: gamma, nstate: state}
    if any(a.dtype == object for a in arrays.values()):
        arrays = {n: as_fractions(n, a) for n, a in arrays.items()}
        if not all(0 <= g <= 1 for g in arrays[ngamma]):
            raise ValueError(f"{ngamma} must lie in [0, 1] (one decay per head); got {arrays[ngamma]}")
        return tuple(arrays.values())
    return tuple(a.astype(np.float64) for a in arrays.values())


def _powers(gamma, exponents):
    """gamma_h ** e for integer exponents e >= 0 (any shape), last axis the heads; exact on Fractions."""
    exponents = np.asarray(exponents)
    if gamma.dtype == object:
        return np.vectorize(lambda g, e: g ** int(e), otypes=[object])(gamma, exponents[..., None])
    return np.power(gamma, exponents[..., None])


def _decay_mask(gamma, length):
    """D (H, n, m) = gamma^(n-m) for n >= m, else 0, over ``length`` steps."""
    n, m = np.arange(length)[:, None], np.arange(length)[None, :]
    powers = np.moveaxis(_powers(gamma, np.maximum(n - m, 0)), -1, 0)
    zero = Fraction(0) if gamma.dtype == object else 0.0
    return np.where(n >= m, powers, zero)


def _heads_first(a):
    return np.swapaxes(a, 1, 2)  # (B, T, H, .) -> (B, H, T, .)


def retention_parallel(q, k, v, gamma):
    """``((Q K^T) o D) V`` with the decay mask D_nm = gamma^(n-m), n >= m (module docstring):
    ``parallel_forward`` without its normalisation. Returns o (B, T, H, V)."""
    q, k, v, gamma, _ = _prepare(q, k, v, gamma, None)
    scores = _heads_first(q) @ np.swapaxes(_heads_first(k), -1, -2)  # (B, H, T, T); matmul keeps Fractions
    return _heads_first((scores * _decay_mask(gamma, q.shape[1])) @ _heads_first(v))


def retention_recurrent(q, k, v, gamma, *, initial_state=None, return_state=False):
    """S_n = gamma S_{n-1} + k_n^T v_n, o_n = q_n S_n, one step at a time (``recurrent_forward``
    without its running scale). Returns o (B, T, H, V), and the final state S (B, H, K, V) with
    ``return_state``."""
    check_bool("return_state", return_state)
    q, k, v, gamma, S = _prepare(q, k, v, gamma, initial_state)
    out, S = _recurrent(q, k, v, gamma, S)
    return (out, S) if return_state else out


def _recurrent(q, k, v, gamma, S):
    outs = [v[:, :0]]  # T = 0: an empty output
    for t in range(q.shape[1]):
        S = gamma[None, :, None, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(np.einsum("bhk,bhkv->bhv", q[:, t], S)[:, None])
    return np.concatenate(outs, axis=1), S


def retention_chunked(q, k, v, gamma, *, chunk_size, initial_state=None, return_state=False):
    """Retention by chunks of ``chunk_size`` steps (the last one may be shorter): within a chunk
    the parallel form, across chunks the state (module docstring; ``chunk_recurrent_forward``
    without its normalisation, for any chunk size). Same result as the recurrent form up to
    rounding, exactly on Fractions."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    q, k, v, gamma, S = _prepare(q, k, v, gamma, initial_state)
    outs = [v[:, :0]]  # T = 0: an empty output
    for start in range(0, q.shape[1], chunk_size):
        qc, kc, vc = (_heads_first(a[:, start:start + chunk_size]) for a in (q, k, v))  # (B, H, c, .)
        c = qc.shape[2]
        inner = ((qc @ np.swapaxes(kc, -1, -2)) * _decay_mask(gamma, c)) @ vc
        into_chunk = np.moveaxis(_powers(gamma, np.arange(1, c + 1)), -1, 0)[None, :, :, None]  # gamma^(i+1)
        cross = (qc * into_chunk) @ S
        outs.append(_heads_first(inner + cross))
        out_of_chunk = np.moveaxis(_powers(gamma, np.arange(c - 1, -1, -1)), -1, 0)[None, :, :, None]  # gamma^(c-1-j)
        S = _powers(gamma, c)[None, :, None, None] * S + np.swapaxes(kc * out_of_chunk, -1, -2) @ vc
    out = np.concatenate(outs, axis=1)
    return (out, S) if return_state else out


def retention_step(q_t, k_t, v_t, gamma, *, state):
    """One decoding step from ``state`` (B, H, K, V) (None: zeros); q_t, k_t (B, H, K), v_t (B, H, V).
    Returns (o_t (B, H, V), state): ``recurrent_forward`` one call, without its scale."""
    q_t, k_t, v_t = (as_real(n, a, exact_ok=True) for n, a in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)))
    check_layout("q_t", q_t, "(B, H, K)", ("B",))
    check_shape("k_t", k_t, q_t.shape, "(B, H, K)", match="q_t")
    check_layout("v_t", v_t, "(B, H, V)", ("B",))
    check_shape("v_t", v_t, q_t.shape[:2] + v_t.shape[2:], "(B, H, V)", match="q_t")
    prepared = _prepare(q_t[:, None], k_t[:, None], v_t[:, None], gamma, state,
                        names=("q_t", "k_t", "v_t", "gamma", "state"))
    out, state = _recurrent(*prepared)
    return out[:, 0], state
