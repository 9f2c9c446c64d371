"""Candidates in JAX (jax.numpy on the CPU; ``jax.grad`` differentiates them):

- ``causal_attention``: bottom-right causal softmax attention (``shift`` moves the diagonal: a
  forward mutant).
- ``attention_without_the_scale_in_dq``: the same forward, and a backward (``jax.custom_vjp``)
  that leaves the softmax scale out of dQ.
- ``jax_s4d``: S4D's kernel, 2 Re sum_n C B Bbar Abar^l (ZOH or bilinear) with complex A, B, C:
  JAX's complex gradients (dL/dRe - i dL/dIm) are conjugated to the oracles' convention.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np


def causal_attention(q, k, v, *, scale=None, causal=True, shift=0, **unused):
    Tq, Tk, D = q.shape[1], k.shape[1], q.shape[3]
    scale = 1 / np.sqrt(D) if scale is None else scale
    scores = jnp.einsum("bihd,bjhd->bhij", q, k) * scale
    visible = jnp.arange(Tk)[None, :] <= jnp.arange(Tq)[:, None] + (Tk - Tq) + shift
    scores = jnp.where(visible, scores, -jnp.inf)
    weights = jax.nn.softmax(scores, axis=-1)
    weights = jnp.where(visible.any(-1)[:, None], weights, 0)
    return jnp.einsum("bhij,bjhd->bihd", weights, v)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _unscaled_dq(q, k, v, scale):
    return causal_attention(q, k, v, scale=scale)


def _forward(q, k, v, scale):
    return causal_attention(q, k, v, scale=scale), (q, k, v)


def _backward(scale, saved, dout):
    q, k, v = saved
    _, vjp = jax.vjp(lambda *x: causal_attention(*x, scale=scale), q, k, v)
    dq, dk, dv = vjp(dout)
    return dq / (1 / np.sqrt(q.shape[3]) if scale is None else scale), dk, dv  # dQ without the scale


_unscaled_dq.defvjp(_forward, _backward)


def attention_without_the_scale_in_dq(q, k, v, *, scale=None, **options):
    return _unscaled_dq(q, k, v, scale)


def jax_s4d(log_dt, A, B, C, length, *, discretization="zoh"):
    dt = jnp.exp(log_dt)[:, None]
    dtA = dt * A
    l = jnp.arange(length)
    if discretization == "zoh":
        Bbar, powers = jnp.expm1(dtA) / A, jnp.exp(dtA[..., None] * l)
    else:
        Bbar, powers = dt / (1 - dtA / 2), ((1 + dtA / 2) / (1 - dtA / 2))[..., None] ** l
    CB = C * Bbar if B is None else C * B * Bbar
    return 2 * jnp.einsum("hn,hnl->hl", CB, powers).real
