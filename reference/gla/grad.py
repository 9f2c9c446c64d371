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
"""

import numpy as np

from .._checks import recurrence_cotangents
from .gla import _GLA, _heads_first


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
