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

Differences from the originals: float64; batch-first (B, T, H, .) layout; the three forms of w;
any chunk size (fla's naive ``dplr_chunkwise`` asserts it divides T); the segment products come
from running products of the decays (``reference.mamba.segprod``: no division, a reset's d = 0
stops them).

Exact mode: ``w_kind="decay"``; if any input is an object array everything becomes
``fractions.Fraction`` and the result is exact.
"""

from fractions import Fraction

import numpy as np

from .._checks import (as_fractions, as_real, check_bool, check_choice, check_layout, check_shape, finite_real,
                       positive_int)
from ..mamba.ssd import segprod

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
        self.w = _heads_first(-np.exp(w) if w_kind == "loglog" else w)
        self.r, self.k, self.v, self.a, self.b = (_heads_first(arrays[n]) for n in (nr, nk, nv, na, nb))
        self.r = self.r * scale
        self.S0 = arrays[nstate]

    def step(self, t):
        """d_t (B, H, K)."""
        return np.exp(self.w[:, :, t]) if self.log else self.w[:, :, t]

    def within(self, start, stop):
        """(P (B, H, c, c, K) = prod_{j<s<=i} d_s, 0 for j > i; gamma (B, H, c, K) = prod_{start<=s<=i} d_s)."""
        w = np.moveaxis(self.w[:, :, start:stop], -1, -2)  # (B, H, K, c)
        if self.log:  # running products of the decays (no division; a reset's d = 0 stops them)
            P, gamma = segprod(np.exp(w)), np.exp(np.cumsum(w, axis=-1))
        else:
            P, gamma = segprod(w), np.cumprod(w, axis=-1)
        return np.ascontiguousarray(np.moveaxis(P, 2, -1)), np.ascontiguousarray(np.moveaxis(gamma, 2, -1))


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


def _pairs(x, P, y):
    """(x_i o P_ij) . y_j per head: (B, H, c, c)."""
    return np.einsum("bhik,bhijk,bhjk->bhij", x, P, y)


def _chunked(p: _WKV7, chunk_size):
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for start in range(0, p.r.shape[2], chunk_size):
        stop = min(start + chunk_size, p.r.shape[2])
        rc, kc, vc, ac, bc = (x[:, :, start:stop] for x in (p.r, p.k, p.v, p.a, p.b))
        P, gamma = p.within(start, stop)
        before = np.concatenate([np.ones_like(gamma[:, :, :1]), gamma[:, :, :-1]], axis=2)  # gamma_{i-1}
        earlier = np.concatenate([np.zeros_like(P[:, :, :1]), P[:, :, :-1]], axis=2)  # P_{i-1,j}, 0 unless j < i
        A_ab, A_ak = _pairs(ac, earlier, bc), _pairs(ac, earlier, kc)
        rhs = np.einsum("bhik,bhkv->bhiv", ac * before, S) + A_ak @ vc
        U = rhs.copy()
        for i in range(1, stop - start):  # forward substitution of the unit lower-triangular system
            U[:, :, i] += np.einsum("bhj,bhjv->bhv", A_ab[:, :, i, :i], U[:, :, :i])
        outs.append(_heads_first(np.einsum("bhik,bhkv->bhiv", rc * gamma, S) + _pairs(rc, P, bc) @ U
                                 + _pairs(rc, P, kc) @ vc))
        last = P[:, :, -1]  # P_last,j (B, H, c, K)
        S = gamma[:, :, -1, :, None] * S + np.swapaxes(last * bc, -1, -2) @ U + np.swapaxes(last * kc, -1, -2) @ vc
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
