"""The exact float64 gradient of the (gated) delta rule (``delta_rule_recurrent``), by the
reverse-time recurrence of the state's cotangent.

Per head, with qs_t = scale q_t, the forward S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t
v_t^T, o_t = qs_t S_t (M_t = a_t (I - beta_t k_t k_t^T), symmetric), output cotangents dO_t and,
when the final state is an output, dS:

    G_T = dS + qs_T^T dO_T,          G_t = qs_t^T dO_t + M_{t+1} G_{t+1}         (G_t: dL/dS_t)
    with P = S_{t-1}, R = (I - beta k k^T) P, w = k^T P, dR = a G_t:
    dq_t = scale S_t dO_t
    dv_t = beta G_t^T k
    dbeta_t = k^T G_t v - k^T dR w
    dk_t = beta G_t v - beta (dR w + P dR^T k)
    dg_t = a_t <G_t, R>                     (a = exp(g); none without a gate)
    dS_0 = M_1 G_1

The gradient of ``fla-org/flash-linear-attention: fla/ops/delta_rule/naive.py
delta_rule_recurrence`` (and ``fla/ops/gated_delta_rule/naive.py``) as torch autograd would take
it, in the layout and conventions of ``reference.delta``. Verified in the tests against central
differences and torch autograd of the recurrence.
"""

import numpy as np

from .._checks import as_real, float_dtype, recurrence_cotangents
from ..arith import rounding
from .delta import _Delta, _heads_first


def delta_rule_vjp(q, k, v, beta, *, cotangent, state_cotangent=None, g=None, scale=None, initial_state=None):
    """The gradients of <o, cotangent> (+ <S_T, state_cotangent>) for ``delta_rule_recurrent(q, k,
    v, beta, g=, scale=, initial_state=)`` (module docstring): {"q", "k", "v" (B, T, H, .),
    "beta" (B, T, H), "g" (B, T, H; only with a gate), "initial_state" (B, H, K, V)}."""
    p = _Delta(q, k, v, beta, g, None, scale, initial_state)
    batch, heads, T, _ = p.q.shape
    do, G = recurrence_cotangents(cotangent, state_cotangent, (batch, T, heads, p.v.shape[3]), p.S0.shape)
    do = _heads_first(do)
    gates = np.ones(p.beta.shape) if g is None else np.exp(p.gate)  # (B, H, T)
    states = [p.S0]
    for t in range(T):
        P, k_t = states[-1], p.k[:, :, t]
        R = P - p.beta[:, :, t, None, None] * k_t[..., None] * np.einsum("bhk,bhkv->bhv", k_t, P)[:, :, None, :]
        states.append(gates[:, :, t, None, None] * R + p.beta[:, :, t, None, None] * k_t[..., None]
                      * p.v[:, :, t, None, :])
    dq, dk, dv = np.zeros(p.q.shape), np.zeros(p.k.shape), np.zeros(p.v.shape)
    dbeta, dg = np.zeros(p.beta.shape), np.zeros(p.beta.shape)
    for t in reversed(range(T)):
        k_t, v_t, b, a = p.k[:, :, t], p.v[:, :, t], p.beta[:, :, t], gates[:, :, t]
        G = G + p.q[:, :, t, :, None] * do[:, :, t, None, :]
        P = states[t]
        w = np.einsum("bhk,bhkv->bhv", k_t, P)
        R = P - b[..., None, None] * k_t[..., None] * w[:, :, None, :]
        dR = a[..., None, None] * G
        Gv = np.einsum("bhkv,bhv->bhk", G, v_t)
        dRw = np.einsum("bhkv,bhv->bhk", dR, w)
        dq[:, :, t] = p.scale * np.einsum("bhkv,bhv->bhk", states[t + 1], do[:, :, t])
        dv[:, :, t] = b[..., None] * np.einsum("bhkv,bhk->bhv", G, k_t)
        dbeta[:, :, t] = (k_t * Gv).sum(-1) - (k_t * dRw).sum(-1)
        dk[:, :, t] = b[..., None] * (Gv - dRw - np.einsum("bhkv,bhjv,bhj->bhk", P, dR, k_t))
        dg[:, :, t] = a * (G * R).sum(axis=(-2, -1))
        G = dR - b[..., None, None] * k_t[..., None] * np.einsum("bhk,bhkv->bhv", k_t, dR)[:, :, None, :]
    grads = {"q": _heads_first(dq), "k": _heads_first(dk), "v": _heads_first(dv),
             "beta": np.swapaxes(dbeta, 1, 2), "initial_state": G}
    if g is not None:
        grads["g"] = np.swapaxes(dg, 1, 2)
    return grads


def delta_rule_vjp_in_dtype(q, k, v, beta, *, dtype, cotangent, state_cotangent=None, g=None, scale=None,
                            initial_state=None):
    """``delta_rule_vjp``'s backward evaluated in a low precision ``dtype``; returns that dtype. The
    baseline a low-precision delta-rule backward is judged against: the inputs, the scale, the
    gates exp(g) and the cotangents rounded to dtype, then every step of the states and of the
    reverse recurrence (module docstring), each product rounded and each sum over K or V
    accumulated in float32 and rounded once."""
    dt = float_dtype("dtype", dtype)
    r, total = rounding(dt)
    p = _Delta(q, k, v, beta, g, None, scale, initial_state)
    if p.exact:
        raise TypeError("the low-precision backward is floating point: the inputs must be real arrays, not Fractions")
    batch, heads, T, _ = p.q.shape
    do, G = recurrence_cotangents(cotangent, state_cotangent, (batch, T, heads, p.v.shape[3]), p.S0.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        scale_ = r(np.float64(p.scale))
        qs = r(r(_heads_first(as_real("q", q))) * scale_)
        kk, vv, bb = r(p.k), r(p.v), r(p.beta)
        gates = np.ones(p.beta.shape) if g is None else r(np.exp(r(p.gate)))
        do, G = r(_heads_first(do)), r(G)

        def read(x, S):  # x^T S, (B, H, K) x (B, H, K, V) -> (B, H, V)
            return total(r(x[..., None] * S), -2)

        states = [r(p.S0)]
        for t in range(T):
            P, k_t, b = states[-1], kk[:, :, t], bb[:, :, t, None, None]
            R = r(P - r(b * r(k_t[..., None] * read(k_t, P)[:, :, None, :])))
            states.append(r(r(gates[:, :, t, None, None] * R) + r(b * r(k_t[..., None] * vv[:, :, t, None, :]))))
        dq, dk, dv = np.zeros(p.q.shape), np.zeros(p.k.shape), np.zeros(p.v.shape)
        dbeta, dg = np.zeros(p.beta.shape), np.zeros(p.beta.shape)
        for t in reversed(range(T)):
            k_t, v_t, b, a = kk[:, :, t], vv[:, :, t], bb[:, :, t], gates[:, :, t]
            G = r(G + r(qs[:, :, t, :, None] * do[:, :, t, None, :]))
            P = states[t]
            w = read(k_t, P)
            R = r(P - r(b[..., None, None] * r(k_t[..., None] * w[:, :, None, :])))
            dR = r(a[..., None, None] * G)
            Gv, dRw = total(r(G * v_t[:, :, None, :]), -1), total(r(dR * w[:, :, None, :]), -1)
            dq[:, :, t] = r(total(r(states[t + 1] * do[:, :, t, None, :]), -1) * scale_)
            dv[:, :, t] = r(b[..., None] * read(k_t, G))
            dbeta[:, :, t] = r(total(r(k_t * Gv), -1) - total(r(k_t * dRw), -1))
            PdRk = total(r(P * total(r(dR * k_t[..., None]), -2)[:, :, None, :]), -1)  # P dR^T k
            dk[:, :, t] = r(b[..., None] * r(r(Gv - dRw) - PdRk))
            dg[:, :, t] = r(a * total(r(G * R), (-2, -1)))
            G = r(dR - r(b[..., None, None] * r(k_t[..., None] * read(k_t, dR)[:, :, None, :])))
        grads = {"q": _heads_first(dq), "k": _heads_first(dk), "v": _heads_first(dv),
                 "beta": np.swapaxes(dbeta, 1, 2), "initial_state": G}
        if g is not None:
            grads["g"] = np.swapaxes(dg, 1, 2)
        return {name: x.astype(dt) for name, x in grads.items()}
