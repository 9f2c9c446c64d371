"""Exact float64 gradients of RWKV's time mixing.

RWKV-5/6 (``wkv6_recurrent``) is GLA read one step early plus a bonus: o_t = r_t S_{t-1} +
((r_t o u) . k_t) v_t. Prepend a step -1 with k = v = 0 and g = 0 (so GLA's state after it is
S_0) and read GLA with q_s = r_{s+1}: GLA's output at s is r_{s+1} S_s, RWKV's state part at
s + 1. So ``gla_vjp`` on

    q' = [r; 0],  k' = [0; k],  v' = [0; v],  g' = [0; g],  cotangent' = [dO; 0]     (T + 1 steps)

gives dr = dq'[:T], dk = dk'[1:], dv = dv'[1:], dg = dg'[1:] and the initial state's gradient;
the bonus adds, with c_t = (r_t o u) . k_t and dc_t = dO_t . v_t,

    dr_t += dc_t u o k_t,   dk_t += dc_t u o r_t,   dv_t += c_t dO_t,   du = sum_{b,t} dc_t r_t o k_t

and every gradient is summed back into its input's layout (g (B, T, H) over K; RWKV-5's (H, K)
or (H,) over batch and time; u (H,) over K).

RWKV-4 (``wkv4_recurrent``) is, per channel, a softmax-weighted mean: wkv_t = sum_i P_ti v_i with
P_t = softmax_i(s_ti) over the logits s_ti = k_i - (t-1-i) w (i < t) and u + k_t (i = t). So, as
attention's backward, with dO_t the cotangent,

    dv_i = sum_t P_ti dO_t,   ds_ti = P_ti dO_t (v_i - wkv_t),
    dk_i = sum_t ds_ti,   du = sum_{b,t} ds_tt,   dw = -sum_{b,t,i<t} (t-1-i) ds_ti

(each row's largest logit subtracted, so k of any size is stable). Verified in the tests against
central differences and torch autograd of the recurrence.
"""

import numpy as np

from .._checks import as_real, check_shape, float_dtype, recurrence_cotangents
from ..arith import rounding
from .wkv4 import _prepare as _prepare_wkv4, wkv4_logits
from .wkv6 import _prepare


def _into(gradient, shape):
    """A (B, T, H, K) gradient summed into ``shape``: (B, T, H, K), (B, T, H), (H, K) or (H,)."""
    if gradient.shape == shape:
        return gradient
    if shape == gradient.shape[:3]:
        return gradient.sum(axis=-1)
    gradient = gradient.sum(axis=(0, 1))
    return gradient if gradient.shape == shape else gradient.sum(axis=-1)


def wkv6_vjp(r, k, v, g, *, u, cotangent, state_cotangent=None, initial_state=None):
    """The gradients of <o, cotangent> (+ <S_T, state_cotangent>) for ``wkv6_recurrent(r, k, v, g,
    u=, initial_state=)``: {"r", "k", "v", "g", "u", "initial_state"}, each in its input's shape
    (module docstring); the gradient is taken in the log-decays g (``decay=`` has none)."""
    from ..gla import gla_vjp  # GLA's package imports the mamba one, which needs nothing from here

    return _wkv6_through(gla_vjp, lambda x: x, r, k, v, g, u, cotangent, state_cotangent, initial_state)


def wkv6_vjp_in_dtype(r, k, v, g, *, u, dtype, cotangent, state_cotangent=None, initial_state=None):
    """``wkv6_vjp``'s backward evaluated in a low precision ``dtype``; returns that dtype. The
    baseline a low-precision RWKV-5/6 backward is judged against: GLA's backward in dtype
    (``gla_vjp_in_dtype``, read one step early) and the bonus's products and sums rounded (sums in
    float32)."""
    from ..gla import gla_vjp_in_dtype

    dt = float_dtype("dtype", dtype)
    rnd, total = rounding(dt)

    def vjp(*args, **options):
        return {n: x.astype(np.float64) for n, x in gla_vjp_in_dtype(*args, dtype=dt, **options).items()}

    grads = _wkv6_through(vjp, rnd, r, k, v, g, u, cotangent, state_cotangent, initial_state, total)
    return {name: rnd(x).astype(dt) for name, x in grads.items()}


def _wkv6_through(vjp, rnd, r, k, v, g, u, cotangent, state_cotangent, initial_state, total=None):
    """RWKV-5/6's gradients from a GLA backward ``vjp`` read one step early, and the bonus's
    (module docstring), each product rounded by ``rnd`` and each sum by ``total`` (float64: none)."""
    if g is None:
        raise TypeError("g must be given: the log-decays the gradient is taken in")
    p = _prepare(r, k, v, g, None, u, initial_state)
    if p.exact:
        raise TypeError("the gradient is float64: r, k, v, u must be real arrays, not Fractions")
    total = total or (lambda x, axis: x.sum(axis=axis))
    r, k, v = (rnd(np.swapaxes(a, 1, 2)) for a in (p.q, p.k, p.v))  # (B, T, H, .)
    rates = np.moveaxis(p.rates, -1, 1)  # (B, T, H, K)
    batch, T, H, K = r.shape
    do, dH = recurrence_cotangents(cotangent, state_cotangent, (batch, T, H, v.shape[3]), p.S0.shape)
    do, uu = rnd(do), rnd(p.u)

    def before(a):
        return np.concatenate([np.zeros_like(a[:, :1]), a], axis=1)

    def after(a):
        return np.concatenate([a, np.zeros_like(a[:, :1])], axis=1)

    grads = vjp(after(r), before(k), before(v), before(rates), cotangent=after(do), state_cotangent=dH,
                scale=1.0, initial_state=p.S0)
    c = total(rnd(rnd(r * uu) * k), -1)
    dc = total(rnd(do * v), -1)[..., None]
    du = total(rnd(rnd(dc * r) * k), (0, 1))
    return {"r": rnd(grads["q"][:, :T] + rnd(rnd(dc * uu) * k)),
            "k": rnd(grads["k"][:, 1:] + rnd(rnd(dc * uu) * r)),
            "v": rnd(grads["v"][:, 1:] + rnd(c[..., None] * do)), "g": _into(grads["g"][:, 1:], np.shape(g)),
            "u": du if np.ndim(u) == 2 else total(du, -1), "initial_state": grads["initial_state"]}


def wkv4_vjp(k, v, w, u, *, cotangent):
    """The gradients of <wkv, cotangent> for ``wkv4_recurrent(k, v, w, u)``: {"k", "v" (B, T, C),
    "w", "u" (C,)} (module docstring). The state (p, q, o) is a scaled representation the
    original's backward gives no gradient for (RWKV-LM's ``wkv_cuda.cu``), and neither does this."""
    k, v, w, u, _ = _prepare_wkv4(k, v, w, u, None)
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, k.shape, "(B, T, C)", match="k")
    T = k.shape[1]
    if T == 0:
        return {"k": np.zeros_like(k), "v": np.zeros_like(v), "w": np.zeros_like(w), "u": np.zeros_like(u)}
    logits = wkv4_logits(k, w, u)  # (B, T, T, C)
    P = np.exp(logits - logits.max(axis=2, keepdims=True))
    P /= P.sum(axis=2, keepdims=True)
    out = (P * v[:, None]).sum(axis=2)
    ds = P * cotangent[:, :, None] * (v[:, None] - out[:, :, None])
    gaps = np.maximum(np.arange(T)[:, None] - 1 - np.arange(T)[None, :], 0)[..., None]  # (T, T, 1): t - 1 - i
    diagonal = np.arange(T)
    return {"k": ds.sum(axis=1), "v": (P * cotangent[:, :, None]).sum(axis=1),
            "w": -(gaps * ds).sum(axis=(0, 1, 2)), "u": ds[:, diagonal, diagonal].sum(axis=(0, 1))}
