"""The exact float64 gradient of RWKV-7's wkv7 (``wkv7_recurrent``).

Per head, S_t = M_t S_{t-1} + k_t v_t^T with M_t = diag(d_t) + b_t a_t^T, o_t = scale S_t^T r_t.
With dO the output's cotangent and G_t the cotangent of S_t (G_T = dS + scale r_T dO_T^T), the
reverse recurrence is the transposed transition,

    G_{t-1} = M_t^T G_t + scale r_{t-1} dO_{t-1}^T = d_t o G_t + a_t (b_t^T G_t) + scale r_{t-1} dO_{t-1}^T,

and, with u_t = a_t^T S_{t-1} the value the rank-one term reads and du_t = G_t^T b_t,

    dr_t = scale S_t dO_t,   dk_t = G_t v_t,   dv_t = G_t^T k_t,   db_t = G_t u_t,   da_t = S_{t-1} du_t,
    dd_t = rowsum(G_t o S_{t-1}),   dS_0 = M_1^T G_1,

and dw = dd d for w_kind="log" (d = exp(w)), dd for "decay", dd d log(d) for "loglog" (d =
exp(-exp(w))); a reset (d = 0) has dw = 0 for "log" and "loglog". It is the gradient that torch
autograd takes of fla's ``fused_recurrent_rwkv7`` recurrence and that RWKV-LM's CUDA kernels
(``wkv7.cu``) compute backward (their state S' = S^T), in the layout of ``reference.rwkv7``. Verified in the tests against central
differences and torch autograd of the recurrence.
"""

import numpy as np

from .._checks import recurrence_cotangents
from .wkv7 import _WKV7, _heads_first, _read


def wkv7_vjp(r, w, k, v, a, b, *, cotangent, state_cotangent=None, w_kind="log", scale=1.0, initial_state=None):
    """The gradients of <o, cotangent> (+ <S_T, state_cotangent>) for ``wkv7_recurrent(r, w, k, v,
    a, b, w_kind=, scale=, initial_state=)`` (module docstring): {"r", "w", "k", "a", "b" (B, T, H, K),
    "v" (B, T, H, V), "initial_state" (B, H, K, V)}."""
    p = _WKV7(r, w, k, v, a, b, w_kind, scale, initial_state)
    if p.exact:
        raise TypeError("the gradient is float64: r, w, k, v, a, b must be real arrays, not Fractions")
    batch, heads, T, _ = p.r.shape
    do, G = recurrence_cotangents(cotangent, state_cotangent, (batch, T, heads, p.v.shape[3]), p.S0.shape)
    do = _heads_first(do)
    states = [p.S0]
    for t in range(T):
        S = states[-1]
        states.append(p.step(t)[..., None] * S + p.b[:, :, t, :, None] * _read(p.a[:, :, t], S)[:, :, None, :]
                      + p.k[:, :, t, :, None] * p.v[:, :, t, None, :])
    grads = {n: np.zeros(x.shape) for n, x in (("r", p.r), ("k", p.k), ("v", p.v), ("a", p.a), ("b", p.b),
                                                ("d", p.r))}
    for t in reversed(range(T)):
        G = G + p.r[:, :, t, :, None] * do[:, :, t, None, :]
        S = states[t]
        du = np.einsum("bhkv,bhk->bhv", G, p.b[:, :, t])
        grads["r"][:, :, t] = scale * np.einsum("bhkv,bhv->bhk", states[t + 1], do[:, :, t])
        grads["k"][:, :, t] = np.einsum("bhkv,bhv->bhk", G, p.v[:, :, t])
        grads["v"][:, :, t] = np.einsum("bhkv,bhk->bhv", G, p.k[:, :, t])
        grads["b"][:, :, t] = np.einsum("bhkv,bhv->bhk", G, _read(p.a[:, :, t], S))
        grads["a"][:, :, t] = np.einsum("bhkv,bhv->bhk", S, du)
        grads["d"][:, :, t] = (G * S).sum(axis=-1)
        G = p.step(t)[..., None] * G + p.a[:, :, t, :, None] * du[:, :, None, :]
    out = {n: _heads_first(x) for n, x in grads.items()}
    return {"r": out["r"], "w": _through_w(out.pop("d"), np.asarray(w, dtype=np.float64), w_kind), "k": out["k"],
            "v": out["v"], "a": out["a"], "b": out["b"], "initial_state": G}


def _through_w(dd, w, w_kind):
    """dL/dw from dL/dd: d = exp(w), w, or exp(-exp(w)); 0 where the decay is 0 (a reset)."""
    if w_kind == "decay":
        return dd
    with np.errstate(over="ignore", invalid="ignore"):
        d = np.exp(w) if w_kind == "log" else np.exp(-np.exp(w))
        slope = d if w_kind == "log" else -np.exp(w) * d
    return np.where(d > 0, dd * slope, 0.0)
