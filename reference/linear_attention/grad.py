"""The exact float64 gradient of causal linear attention (``linear_attention_recurrent``).

With Q = phi(q), K = phi(k), the state [S | z] is GLA's with no decay on the values augmented by
a column of ones, [v | 1], and out_t = num_t / den_t with [num_t | den_t - eps] = Q_t^T [S_t | z_t].
So, with the output's cotangent dO,

    dnum_t = dO_t / den_t,      dden_t = -(dO_t . out_t) / den_t

is the cotangent of GLA's augmented output, and ``gla_vjp`` (g = 0, scale 1) gives dQ, dK, d[v | 1]
and the initial state's gradient [dS_0 | dz_0]:

    G_t = sum_{s >= t} Q_s [dnum_s | dden_s]^T (+ the final state's cotangent)
    dQ_t = [S_t | z_t] [dnum_t | dden_t],   dK_t = G_t [v_t | 1],   dv_t = G_t^T K_t (the first M columns)

then dq = dQ phi'(q) and dk = dK phi'(k), phi' = 1 for x > 0 and e^x below for elu + 1, 1 for
the identity. A callable feature map has no derivative here (TypeError). Verified in the tests
against central differences and torch autograd of fast-transformers' recurrence.
"""

import numpy as np

from .._checks import as_real, check_shape
from .linear import _prepare, _recurrent


def _feature_derivative(feature_map, x):
    if feature_map == "elu":
        return np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))
    if feature_map == "identity":
        return np.ones_like(x)
    raise TypeError(f"feature_map must be 'elu' or 'identity' for the gradient (its derivative is known); "
                    f"got {feature_map!r}")


def linear_attention_vjp(q, k, v, *, cotangent, state_cotangent=None, feature_map="elu", eps=1e-6,
                         initial_state=None):
    """The gradients of <out, cotangent> (+ <(S_T, z_T), state_cotangent>) for
    ``linear_attention_recurrent(q, k, v, feature_map=, eps=, initial_state=)``: {"q", "k", "v",
    "initial_state"}, the last a pair (dS_0 (B, H, D, M), dz_0 (B, H, D)); ``state_cotangent`` a
    pair (dS_T, dz_T) or None (module docstring)."""
    from ..gla import gla_vjp  # after the package's own imports

    _feature_derivative(feature_map, np.zeros(0))  # refuse a feature map without a derivative first
    Q, K, v, eps, S0, z0 = _prepare(q, k, v, feature_map, eps, initial_state, True)
    if Q.dtype == object:
        raise TypeError("the gradient is float64: q, k, v must be real arrays, not Fractions")
    batch, T, H, D = Q.shape
    M = v.shape[3]
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, (batch, T, H, M), "(B, T, H, M)", match="q and v")
    ones = np.ones((batch, T, H, 1))
    augmented_state = np.concatenate([S0, z0[..., None]], axis=-1)
    den = np.einsum("bthd,bthd->bth", Q, z0[:, None] + np.cumsum(K, axis=1)) + eps
    out = _recurrent(Q, K, v, eps, S0, z0)[0]
    dden = -(cotangent * out).sum(axis=-1) / den
    augmented_cotangent = np.concatenate([cotangent / den[..., None], dden[..., None]], axis=-1)
    state_cotangents = None
    if state_cotangent is not None:
        if not (isinstance(state_cotangent, (tuple, list)) and len(state_cotangent) == 2):
            raise TypeError(f"state_cotangent must be a pair (dS, dz); got {type(state_cotangent).__name__}")
        dS, dz = (as_real(f"state_cotangent[{i}]", a) for i, a in enumerate(state_cotangent))
        check_shape("state_cotangent[0] (dS)", dS, S0.shape, "(B, H, D, M)", match="q and v")
        check_shape("state_cotangent[1] (dz)", dz, z0.shape, "(B, H, D)", match="q")
        state_cotangents = np.concatenate([dS, dz[..., None]], axis=-1)
    grads = gla_vjp(Q, K, np.concatenate([v, ones], axis=-1), np.zeros((batch, T, H)), cotangent=augmented_cotangent,
                    state_cotangent=state_cotangents, scale=1.0, initial_state=augmented_state)
    q, k = (np.asarray(a, dtype=np.float64) for a in (q, k))
    dstate = grads["initial_state"]
    return {"q": grads["q"] * _feature_derivative(feature_map, q), "k": grads["k"] * _feature_derivative(feature_map, k),
            "v": grads["v"][..., :M], "initial_state": (dstate[..., :M], dstate[..., M])}
