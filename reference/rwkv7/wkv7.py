"""RWKV-7 "Goose" time mixing, the wkv7 operator (Peng et al. 2025, "RWKV-7 Goose with Expressive
Dynamic State Evolution", arXiv:2503.14456): a generalised delta rule with a decay per key channel
and a rank-one transition. Per head, state S (K, V):

    S_t = (diag(d_t) + b_t a_t^T) S_{t-1} + k_t v_t^T,    o_t = scale S_t^T r_t

that is S_t = d_t o S_{t-1} + b_t (a_t^T S_{t-1}) + k_t v_t^T: the rank-one term reads the state
before it decays. r, w, k, a, b (B, T, H, K), v (B, T, H, V); S (B, H, K, V) as fla's kernels
hold it (``h[k, v]``). ``w_kind`` says how w gives the decay d_t in [0, 1]: "log" d = exp(w),
w <= 0 (fla's ``chunk_rwkv7``/``fused_recurrent_rwkv7``); "decay" d = w (``rwkv_v7_numpy.py``);
"loglog" d = exp(-exp(w)) (RWKV-LM's CUDA kernels ``wkv7.cu``/``wkv7s.cu``). ``scale`` is 1 (RWKV-7
has none; fla's ``fused_recurrent_rwkv7`` defaults to K^-1/2).

RWKV-LM holds the transpose, S' = S^T (V, K) per head: S'_t = S'_{t-1} (diag(d_t) + a_t b_t^T) +
v_t k_t^T, y_t = S'_t r_t, with a = -kk, b = kk * a_gate (``BlinkDL/RWKV-LM:
RWKV-v7/rwkv_v7_numpy.py time_mixing``, ``S = S * w.mT - S @ kk * (kk*a).mT + v * k.mT; y = S @ r``).
The delta rule is the case d = 1, b = k, a = -beta k, value beta v.

The chunked form (the WY / UT form of fla's ``chunk_dplr_delta_rule``), per chunk with P_ij =
prod_{j<s<=i} d_s and gamma_i = prod_{start<=s<=i} d_s per key channel: the values the rank-one
terms read, u_i = a_i^T S_{i-1} (V), solve the unit lower-triangular system

    u_i - sum_{j<i} (a_i o P_{i-1,j} . b_j) u_j = (a_i o gamma_{i-1})^T S_prev + sum_{j<i} (a_i o P_{i-1,j} . k_j) v_j

by forward substitution; then o_i = scale ((r_i o gamma_i)^T S_prev + sum_{j<=i} (r_i o P_ij . b_j) u_j
+ (r_i o P_ij . k_j) v_j) and S = gamma_last o S_prev + sum_j (P_last,j o b_j) u_j^T + (P_last,j o k_j) v_j^T.
The system is linear in S_prev, u = G S_prev + u0, so every chunk's G, u0 and scores are computed at
once (``GROUP`` steps at a time) and only S = (diag(gamma_last) + M) S_prev + N runs chunk by chunk;
the scores come from ``reference.gla.gla.ChunkDecays`` (sub-chunks, no division).

Differences from the originals: float64; batch-first (B, T, H, .) layout; the three forms of w;
any chunk size (fla's naive ``dplr_chunkwise`` asserts it divides T); the segment products come
from running products of the decays (no division, a reset's d = 0 stops them).

Exact mode: ``w_kind="decay"``; if any input is an object array everything becomes
``fractions.Fraction`` and the result is exact.
"""

from fractions import Fraction

import numpy as np
from scipy.linalg import solve_triangular

from .._checks import (as_fractions, as_real, check_bool, check_choice, check_layout, check_shape, finite_real,
                       positive_int)
from ..gla.gla import ChunkDecays, after, later, running

W_KINDS = ("log", "decay", "loglog")


def _heads_first(a):
    return np.swapaxes(a, 1, 2)  # (B, T, H, .) -> (B, H, T, .)


class _WKV7:
    """Prepared arguments, heads first: r (scaled), k, a, b (B, H, T, K), v (B, H, T, V), the decay
    as ``log`` log d (float64) or d itself (B, H, T, K), and S0 (B, H, K, V)."""

    def __init__(self, r, w, k, v, a, b, w_kind, scale, initial_state,
                 names=("r", "w", "k", "v", "a", "b", "initial_state")):
        nr, nw, nk, nv, na, nb, nstate = names
        check_choice("w_kind", w_kind, W_KINDS)
        arrays = {n: as_real(n, x, exact_ok=True) for n, x in ((nr, r), (nw, w), (nk, k), (na, a), (nb, b))}
        batch, T, H, K = check_layout(nr, arrays[nr], "(B, T, H, K)")
        for n in (nw, nk, na, nb):
            check_shape(n, arrays[n], arrays[nr].shape, "(B, T, H, K)", match=nr)
        arrays[nv] = as_real(nv, v, exact_ok=True)
        check_layout(nv, arrays[nv], "(B, T, H, V)")
        check_shape(nv, arrays[nv], (batch, T, H) + arrays[nv].shape[3:], "(B, T, H, V)", match=nr)
        V = arrays[nv].shape[3]
        state = np.zeros((batch, H, K, V)) if initial_state is None else as_real(nstate, initial_state, exact_ok=True)
        check_shape(nstate, state, (batch, H, K, V), "(B, H, K, V)", match=f"{nr} and {nv}")
        arrays[nstate] = state
        scale = finite_real("scale", scale)
        self.exact = any(x.dtype == object for x in arrays.values())
        if self.exact:
            if w_kind != "decay":
                raise TypeError(f"exact (object) inputs need w_kind='decay' (rational decays), not {w_kind!r}")
            arrays = {n: as_fractions(n, x) for n, x in arrays.items()}
            scale = Fraction(scale)
        else:
            arrays = {n: x.astype(np.float64) for n, x in arrays.items()}
        w = arrays[nw]
        if w_kind == "decay" and not all(0 <= d <= 1 for d in w.flat):
            raise ValueError(f"{nw} must hold decays in [0, 1] (w_kind='decay'); got a value outside or NaN")
        if w_kind == "log" and (np.isnan(w).any() or (w > 0).any()):
            raise ValueError(f"{nw} must hold log-decays <= 0 (w_kind='log'; -inf resets the state); got a value > 0 "
                             "or NaN")
        if w_kind == "loglog" and np.isnan(w).any():
            raise ValueError(f"{nw} must hold log(-log(decay)) without NaN (w_kind='loglog')")
        self.log = w_kind != "decay"
        rates = -np.exp(w) if w_kind == "loglog" else w
        self.rates = np.ascontiguousarray(np.moveaxis(_heads_first(rates), -1, 2))  # (B, H, K, T)
        # contiguous heads-first copies: every chunk slices them along time
        self.r, self.k, self.v, self.a, self.b = (np.ascontiguousarray(_heads_first(arrays[n]))
                                                  for n in (nr, nk, nv, na, nb))
        self.r = self.r * scale
        self.S0 = arrays[nstate]

    def step(self, t):
        """d_t (B, H, K)."""
        return np.exp(self.rates[..., t]) if self.log else self.rates[..., t]


def _read(x, S):
    """x^T S per head: (B, H, K), (B, H, K, V) -> (B, H, V)."""
    return np.einsum("bhk,bhkv->bhv", x, S)


def _recurrent(p: _WKV7):
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for t in range(p.r.shape[2]):
        u = _read(p.a[:, :, t], S)  # the value the rank-one term reads, from S_{t-1}
        S = p.step(t)[..., None] * S + p.b[:, :, t, :, None] * u[:, :, None, :] \
            + p.k[:, :, t, :, None] * p.v[:, :, t, None, :]
        outs.append(_read(p.r[:, :, t], S)[:, None])
    return np.concatenate(outs, axis=1), S


def _solve_unit_lower(L, rhs):
    """X with X - L X = rhs for strictly lower-triangular L (..., c, c), rhs (..., c, m): forward
    substitution (LAPACK's for floats; row by row on Fractions and empty batches)."""
    if L.dtype != object and L.size:
        return solve_triangular(np.eye(L.shape[-1]) - L, rhs, lower=True, unit_diagonal=True)
    X = rhs.copy()
    for i in range(1, L.shape[-2]):
        X[..., i, :] += np.einsum("...j,...jm->...m", L[..., i, :i], X[..., :i, :])
    return X


def _by_chunks(a, chunk_size, fill, axis):
    """(B, H, T, .) -> (B, H, N, c, .) along the steps' ``axis`` (2, or 3 for the rates (B, H, K, T)),
    the last chunk padded with steps that change nothing (``fill``: 0, or the decay of one step: 1)."""
    T = a.shape[axis]
    N = -(-T // chunk_size)
    shape = list(a.shape)
    shape[axis] = N * chunk_size - T
    a = np.concatenate([a, np.full(shape, fill, dtype=a.dtype)], axis=axis)
    a = a.reshape(a.shape[:axis] + (N, chunk_size) + a.shape[axis + 1:])
    return np.moveaxis(a, axis, 2)  # (B, H, N, ., c) for the rates, (B, H, N, c, .) otherwise


GROUP = 128
"""Steps whose chunks are computed together (each chunk's own terms at once, then the state through
them): a few at a time keeps the temporaries small enough to stay in cache."""


def _chunks(p: _WKV7, start, stop, chunk_size, S):
    """Outputs (B, H, stop - start, V) of the chunks of steps [start, stop) from the state S before
    them, and the state after. Within a chunk the rank-one reads are u = G S_prev + u0 (the UT solve
    applied to both parts), so the chunk maps S_prev to M S_prev + N and its outputs to
    R S_prev + o0: every chunk's terms at once, then the state across them."""
    r, k, v, a, b = (_by_chunks(x[:, :, start:stop], chunk_size, 0, 2) for x in (p.r, p.k, p.v, p.a, p.b))
    rates = _by_chunks(p.rates[..., start:stop], chunk_size, 0 if p.log else 1, 3)  # (B, H, N, K, c)
    decays = ChunkDecays(rates, p.log)
    gamma = np.swapaxes(running(rates, p.log), -1, -2)  # gamma_i (B, H, N, c, K)
    a_b, a_k = decays.scores(a, [b, k], strict=True)  # (a_i o P_{i-1,j}) . b_j and . k_j
    r_b, r_k = decays.scores(r, [b, k])
    K = a.shape[-1]
    solved = _solve_unit_lower(a_b, np.concatenate([a * later(gamma, axis=-2), a_k @ v], axis=-1))
    G, u0 = solved[..., :K], solved[..., K:]  # u_i = G_i S_prev + u0_i
    last = np.swapaxes(after(rates, p.log), -1, -2)  # P_last,j (B, H, N, c, K)
    M = np.swapaxes(last * b, -1, -2) @ G  # S = (diag(gamma_last) + M) S_prev + N
    N = np.swapaxes(last * b, -1, -2) @ u0 + np.swapaxes(last * k, -1, -2) @ v
    before = []
    for n in range(r.shape[2]):
        before.append(S)
        S = gamma[:, :, n, -1, :, None] * S + M[:, :, n] @ S + N[:, :, n]
    out = (r * gamma + r_b @ G) @ np.stack(before, axis=2) + r_b @ u0 + r_k @ v  # (B, H, N, c, V)
    B, H, N, c, V = out.shape
    return out.reshape(B, H, N * c, V)[:, :, :stop - start], S


def _chunked(p: _WKV7, chunk_size):
    group = max(1, GROUP // chunk_size) * chunk_size
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for start in range(0, p.r.shape[2], group):
        out, S = _chunks(p, start, min(start + group, p.r.shape[2]), chunk_size, S)
        outs.append(_heads_first(out))
    return np.concatenate(outs, axis=1), S


def wkv7_recurrent(r, w, k, v, a, b, *, w_kind="log", scale=1.0, initial_state=None, return_state=False):
    """RWKV-7's wkv7 one step at a time, the definition (module docstring; ``time_mixing``'s state
    update). Returns o (B, T, H, V), and the final state (B, H, K, V) with ``return_state``."""
    check_bool("return_state", return_state)
    out, S = _recurrent(_WKV7(r, w, k, v, a, b, w_kind, scale, initial_state))
    return (out, S) if return_state else out


def wkv7_chunked(r, w, k, v, a, b, *, chunk_size, w_kind="log", scale=1.0, initial_state=None, return_state=False):
    """RWKV-7's wkv7 by chunks of ``chunk_size`` steps (the last may be shorter): the UT / WY
    system within a chunk, the state across chunks (module docstring). Same result as the
    recurrent form up to rounding, exactly on Fractions."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    out, S = _chunked(_WKV7(r, w, k, v, a, b, w_kind, scale, initial_state), chunk_size)
    return (out, S) if return_state else out


def wkv7_step(r_t, w_t, k_t, v_t, a_t, b_t, *, state, w_kind="log", scale=1.0):
    """One decoding step from ``state`` (B, H, K, V) (None: zeros); r_t, w_t, k_t, a_t, b_t (B, H, K),
    v_t (B, H, V). Returns (o_t (B, H, V), state)."""
    given = {}
    for name, x, layout in (("r_t", r_t, "(B, H, K)"), ("w_t", w_t, "(B, H, K)"), ("k_t", k_t, "(B, H, K)"),
                            ("v_t", v_t, "(B, H, V)"), ("a_t", a_t, "(B, H, K)"), ("b_t", b_t, "(B, H, K)")):
        given[name] = as_real(name, x, exact_ok=True)
        check_layout(name, given[name], layout, ("B",))
    p = _WKV7(*(x[:, None] for x in given.values()), w_kind, scale, state,
              names=("r_t", "w_t", "k_t", "v_t", "a_t", "b_t", "state"))
    out, state = _recurrent(p)
    return out[:, 0], state
