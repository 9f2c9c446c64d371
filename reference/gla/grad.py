"""The exact float64 gradient of gated linear attention (``gla_recurrent``), by the reverse-time
recurrence every chunked GLA backward computes (fla's ``chunk_gla_bwd``: the state's cotangent
passed backwards through the decays).

Per head, with qs_t = scale q_t, the forward S_t = diag(a_t) S_{t-1} + k_t^T v_t, o_t = qs_t S_t
(a_t = exp(g_t)), output cotangents dO_t (V) and, when the final state is an output, dS (K, V):

    G_T = dS + qs_T^T dO_T,        G_t = qs_t^T dO_t + diag(a_{t+1}) G_{t+1}     (G: dL/dS_t)
    dq_t = scale S_t dO_t,   dk_t = G_t v_t,   dv_t = G_t^T k_t
    dg_t = a_t o rowsum(G_t o S_{t-1})    (summed over K for one decay per head)
    dS_0 = diag(a_1) G_1                   (the initial state's gradient; G_1 at t = 1)

A reset (g = -inf, a = 0) stops G at that step, and its dg is 0. Verified in the tests against
central differences and torch autograd of the recurrence.

``gla_chunked_vjp`` is the backward algorithm chunked kernels run (fla's ``chunk_gla_bwd``): the
forward keeps the state S_prev before each chunk, then the chunks are visited last to first with
dH, the cotangent flowing into the chunk's last state from later (the state cotangent for the last
chunk). Within a chunk, with P_ij = prod_{j<s<=i} a_s, Q_i = prod_{start<=s<=i} a_s,
R_j = prod_{j<s<=last} a_s and A_ij = dO_i . v_j (j <= i):

    dqs_i = Q_i o (S_prev dO_i) + sum_j A_ij P_ij o k_j
    dk_j  = sum_i A_ij P_ij o qs_i + R_j o (dH v_j)
    dv_j  = sum_i (qs_i o P_ij . k_j) dO_i + (R_j o k_j) dH
    dH   <- sum_i (Q_i o qs_i)^T dO_i + diag(Q_last) dH      (S_prev's cotangent: the previous chunk's dH)

and dg_r sums, per key channel, every term whose decay product covers step r: the pairs i >= r > j,
the state read by rows i >= r, the keys j < r written into dH, and S_prev carried into dH (all
terms, no difference of sums, so a reset's dg is 0 as in the recurrence).
"""

import numpy as np

from .._checks import as_real, float_dtype, positive_int, recurrence_cotangents
from ..arith import rounding
from .gla import _GLA, _chunk, _heads_first, _segments, after, running


def gla_vjp(q, k, v, g, *, cotangent, state_cotangent=None, scale=None, initial_state=None):
    """The gradients of <o, cotangent> (+ <S_T, state_cotangent>) for ``gla_recurrent(q, k, v, g,
    scale=, initial_state=)`` with respect to q, k, v, g and the initial state (module
    docstring): {"q", "k", "v" (B, T, H, .), "g" (g's shape), "initial_state" (B, H, K, V)}."""
    if g is None:
        raise TypeError("g must be given: the log-decays (B, T, H, K) or (B, T, H) the gradient is taken in")
    p = _GLA(q, k, v, g, None, scale, initial_state)
    batch, heads, T, _ = p.q.shape
    do, G = recurrence_cotangents(cotangent, state_cotangent, (batch, T, heads, p.v.shape[3]), p.S0.shape)
    do = _heads_first(do)
    states = [p.S0]
    for t in range(T):
        states.append(p.steps(t)[..., None] * states[-1] + p.k[:, :, t, :, None] * p.v[:, :, t, None, :])
    dq, dk, dv = np.zeros(p.q.shape), np.zeros(p.k.shape), np.zeros(p.v.shape)
    da = np.zeros(p.rates.shape)  # (B, H, K, T)
    for t in reversed(range(T)):
        G = G + p.q[:, :, t, :, None] * do[:, :, t, None, :]
        dq[:, :, t] = np.einsum("bhkv,bhv->bhk", states[t + 1], do[:, :, t])
        dk[:, :, t] = np.einsum("bhkv,bhv->bhk", G, p.v[:, :, t])
        dv[:, :, t] = np.einsum("bhkv,bhk->bhv", G, p.k[:, :, t])
        da[..., t] = (G * states[t]).sum(axis=-1)
        G = p.steps(t)[..., None] * G
    dg = _heads_first(np.moveaxis(da * np.exp(p.rates), 2, -1))  # (B, T, H, K): d/dg = a d/da
    return {"q": p.scale * _heads_first(dq), "k": _heads_first(dk), "v": _heads_first(dv),
            "g": dg.sum(axis=-1) if np.ndim(g) == 3 else dg, "initial_state": G}


def gla_chunked_vjp(q, k, v, g, *, chunk_size, cotangent, state_cotangent=None, scale=None, initial_state=None):
    """``gla_vjp`` by chunks of ``chunk_size`` steps (the last may be shorter), the state's cotangent
    passed from each chunk to the one before (module docstring): the same gradients up to rounding."""
    if g is None:
        raise TypeError("g must be given: the log-decays (B, T, H, K) or (B, T, H) the gradient is taken in")
    chunk_size = positive_int("chunk_size", chunk_size)
    p = _GLA(q, k, v, g, None, scale, initial_state)
    batch, heads, T, _ = p.q.shape
    do, dH = recurrence_cotangents(cotangent, state_cotangent, (batch, T, heads, p.v.shape[3]), p.S0.shape)
    do = _heads_first(do)
    starts = list(range(0, T, chunk_size))
    before, S = [], p.S0
    for start in starts:  # the forward, keeping the state before each chunk
        before.append(S)
        S = _chunk(p, start, min(start + chunk_size, T), S, False)[1]
    grads = {name: np.zeros(x.shape) for name, x in (("q", p.q), ("k", p.k), ("v", p.v))}
    dg = np.zeros(p.rates.shape)  # (B, H, K, T)
    for start, S_prev in reversed(list(zip(starts, before))):
        span = slice(start, start + chunk_size)
        qs, kc, vc, dO, rates = p.q[:, :, span], p.k[:, :, span], p.v[:, :, span], do[:, :, span], p.rates[..., span]
        P = np.moveaxis(_segments(rates, True), 2, -1)  # (B, H, i, j, K), 0 for j > i
        Q, R = (np.swapaxes(x, -1, -2) for x in (running(rates, True), after(rates, True)))  # (B, H, c, K)
        A = dO @ np.swapaxes(vc, -1, -2)  # dO_i . v_j
        read = Q * (dO @ np.swapaxes(S_prev, -1, -2))  # Q_i o (S_prev dO_i)
        written = R * (vc @ np.swapaxes(dH, -1, -2))  # R_j o (dH v_j)
        pairs = qs[:, :, :, None] * P * kc[:, :, None] * A[..., None]  # every pair's term (B, H, i, j, K)
        grads["q"][:, :, span] = read + np.einsum("bhij,bhijk,bhjk->bhik", A, P, kc)
        grads["k"][:, :, span] = np.einsum("bhij,bhijk,bhik->bhjk", A, P, qs) + written
        grads["v"][:, :, span] = np.swapaxes(np.einsum("bhik,bhijk,bhjk->bhij", qs, P, kc), -1, -2) @ dO \
            + (R * kc) @ dH
        c = qs.shape[2]
        before_r = np.concatenate([np.zeros_like(pairs[:, :, :, :1]), np.cumsum(pairs, axis=3)[:, :, :, :-1]],
                                  axis=3)  # sum over j < r, (B, H, i, r, K)
        covered = (np.tril(np.ones((c, c)))[:, :, None] * before_r).sum(axis=2)  # pairs i >= r > j
        rows = np.flip(np.cumsum(np.flip(qs * read, axis=2), axis=2), axis=2)  # rows i >= r read S_prev
        keys = np.concatenate([np.zeros_like(written[:, :, :1]), np.cumsum(kc * written, axis=2)[:, :, :-1]], axis=2)
        carried = (Q[:, :, -1] * (S_prev * dH).sum(axis=-1))[:, :, None]  # S_prev carried into dH
        dg[..., span] = np.swapaxes(covered + rows + keys + carried, -1, -2)
        dH = np.swapaxes(qs * Q, -1, -2) @ dO + Q[:, :, -1, :, None] * dH
    dg = _heads_first(np.moveaxis(dg, 2, -1))
    return {"q": p.scale * _heads_first(grads["q"]), "k": _heads_first(grads["k"]), "v": _heads_first(grads["v"]),
            "g": dg.sum(axis=-1) if np.ndim(g) == 3 else dg, "initial_state": dH}


def gla_vjp_in_dtype(q, k, v, g, *, dtype, cotangent, state_cotangent=None, scale=None, initial_state=None):
    """``gla_vjp``'s backward evaluated in a low precision ``dtype``; returns that dtype. The
    baseline a low-precision GLA backward is judged against (docs/gradients.md).

    Inputs, the scale and the cotangents rounded to dtype, then every step: the decays exp(g),
    the states S_t = a_t S_{t-1} + k_t v_t^T, and backward G_t = qs_t dO_t^T + a_{t+1} G_{t+1},
    dq = scale S_t dO_t, dk = G v, dv = G^T k, dg = a o rowsum(G o S_{t-1}) (summed over K for one
    decay per head; 0 at a reset), dS_0; each product rounded, each sum accumulated in float32 and
    rounded once."""
    dt = float_dtype("dtype", dtype)
    if g is None:
        raise TypeError("g must be given: the log-decays (B, T, H, K) or (B, T, H) the gradient is taken in")
    p = _GLA(q, k, v, g, None, scale, initial_state)
    if p.exact:
        raise TypeError("the low-precision backward is floating point: q, k, v must be real arrays, not Fractions")
    r, total = rounding(dt)
    batch, heads, T, _ = p.q.shape
    do, dS = recurrence_cotangents(cotangent, state_cotangent, (batch, T, heads, p.v.shape[3]), p.S0.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        scale = r(np.float64(p.scale))
        qs, k, v = r(r(_heads_first(as_real("q", q))) * scale), r(p.k), r(p.v)
        rates = r(p.rates)  # (B, H, K, T) log-decays
        a = r(np.exp(rates))
        do, G, S = r(_heads_first(do)), r(dS), r(p.S0)
        states = [S]
        for t in range(T):
            S = r(r(a[..., t, None] * S) + r(k[:, :, t, :, None] * v[:, :, t, None, :]))
            states.append(S)
        dq, dk, dv, da = (np.zeros(x.shape) for x in (qs, k, v, qs))
        for t in reversed(range(T)):
            G = r(G + r(qs[:, :, t, :, None] * do[:, :, t, None, :]))
            dq[:, :, t] = r(total(r(states[t + 1] * do[:, :, t, None, :]), -1) * scale)
            dk[:, :, t] = total(r(G * v[:, :, t, None, :]), -1)
            dv[:, :, t] = total(r(G * k[:, :, t, :, None]), -2)
            da[:, :, t] = total(r(G * states[t]), -1)
            G = r(a[..., t, None] * G)
        dg = np.where(np.isfinite(rates), r(np.moveaxis(da, 2, -1) * a), 0.0)  # (B, H, K, T); a reset: 0
        dg = _heads_first(np.moveaxis(dg, -1, 2))  # (B, T, H, K)
        grads = {"q": _heads_first(dq), "k": _heads_first(dk), "v": _heads_first(dv),
                 "g": total(dg, -1) if np.ndim(g) == 3 else dg, "initial_state": G}
        return {name: x.astype(dt) for name, x in grads.items()}
