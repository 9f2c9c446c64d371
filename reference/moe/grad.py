"""Vector-Jacobian products of the MoE layer (``layer.py``) with the routing held fixed: the
experts' indices are integers, so the gradient reaches x, the gates and the expert weights. The
router's own gradient is the gates' cotangent taken back through its softmax (the caller's:
``torch.autograd`` does it through ``topk``'s gather the same way).

Per kept slot (token x, expert e, gate g), with h = x W_gate, u = x W_up, s = silu(h),
a = s * u, o = a W_down and the cotangent c of y_t:

    dg = c . o,   do = g c,   dW_down += a^T do,   da = do W_down^T,
    dh = da * u * silu'(h),   du = da * s,   silu'(h) = sigmoid(h) (1 + h (1 - sigmoid(h))),
    dW_gate += x^T dh,   dW_up += x^T du,   dx += dh W_gate^T + du W_up^T.

``moe_vjp`` sums these token by token (the definition's backward); ``moe_dispatch_vjp`` as a
grouped-GEMM backward does: the cotangents permuted into expert order with the forward's plan,
one product per expert for each weight gradient and for the rows' dx, scattered back.
"""

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_shape, float_dtype
from ..arith import accumulator, round_to, rounding
from .layer import _prepare, dispatch_plan
from .routing import _capacity, apply_capacity


def _cotangent(cotangent, x):
    c = as_real("cotangent", cotangent)
    check_shape("cotangent", c, x.shape, "(B, T, D)", match="x")
    return c


def _slot_backward(rows, c, g, w_gate, w_up, w_down):
    """The backward of g * E(rows) for rows (n, D) of one expert, cotangents c (n, D), gates g (n,):
    (dx (n, D), dg (n,), dW_gate, dW_up, dW_down)."""
    h, u = rows @ w_gate, rows @ w_up
    sig = expit(h)
    s = h * sig
    a = s * u
    o = a @ w_down
    do = g[:, None] * c
    da = do @ w_down.T
    dh = da * u * sig * (1 + h * (1 - sig))
    du = da * s
    return dh @ w_gate.T + du @ w_up.T, (c * o).sum(axis=-1), rows.T @ dh, rows.T @ du, a.T @ do


def moe_vjp(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None, cotangent):
    """The VJP of ``moe_per_token`` token by token (module docstring). Returns {"x", "gate",
    "w_gate", "w_up", "w_down": gradient}; a dropped or empty slot's gate gradient is 0."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    c = _cotangent(cotangent, x)
    index, gate = apply_capacity(index, gate, _capacity(capacity))
    grads = {"x": np.zeros_like(x), "gate": np.zeros_like(gate), "w_gate": np.zeros_like(w_gate),
             "w_up": np.zeros_like(w_up), "w_down": np.zeros_like(w_down)}
    B, T, k = index.shape
    for b in range(B):
        for t in range(T):
            for j in range(k):
                e = index[b, t, j]
                if e < 0:
                    continue
                dx, dg, dwg, dwu, dwd = _slot_backward(x[b, t][None], c[b, t][None], gate[b, t, j][None],
                                                       w_gate[e], w_up[e], w_down[e])
                grads["x"][b, t] += dx[0]
                grads["gate"][b, t, j] = dg[0]
                grads["w_gate"][e] += dwg
                grads["w_up"][e] += dwu
                grads["w_down"][e] += dwd
    return grads


def moe_dispatch_vjp(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None, cotangent):
    """The VJP of ``moe_dispatch`` as grouped-GEMM backward kernels compute it: the forward's
    plan (``dispatch_plan``) permutes x and the cotangent into expert order; per expert one
    product for each weight gradient and one for the rows' dx; dx scattered back onto the tokens
    (a token routed to several experts sums their rows), dg written at each kept slot."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    c = _cotangent(cotangent, x)
    (b, t, j), experts = dispatch_plan(index, _capacity(capacity))
    rows, rows_c, rows_g = x[b, t], c[b, t], gate[b, t, j]
    grads = {"x": np.zeros_like(x), "gate": np.zeros_like(gate), "w_gate": np.zeros_like(w_gate),
             "w_up": np.zeros_like(w_up), "w_down": np.zeros_like(w_down)}
    dx_rows, dg_rows = np.empty_like(rows), np.empty(len(rows))
    starts = np.searchsorted(experts, np.arange(w_gate.shape[0] + 1))
    for e in range(w_gate.shape[0]):
        group = slice(starts[e], starts[e + 1])
        dx_rows[group], dg_rows[group], grads["w_gate"][e], grads["w_up"][e], grads["w_down"][e] = _slot_backward(
            rows[group], rows_c[group], rows_g[group], w_gate[e], w_up[e], w_down[e])
    np.add.at(grads["x"], (b, t), dx_rows)
    grads["gate"][b, t, j] = dg_rows
    return grads



def moe_vjp_in_dtype(x, expert_index, gate, w_gate, w_up, w_down, *, dtype, capacity=None, cotangent):
    """``moe_vjp`` evaluated in a low precision ``dtype`` (the baseline of a low-precision
    backward): inputs and the cotangent rounded; every product of matrices summed in float32 and
    rounded once (a weight's gradient once over all its rows); every elementwise step (sigmoid,
    silu, s u, g c, da u, da s, silu', dh) rounded; each slot's dx added to its token's, rounded.
    Returns the gradients as ``moe_vjp``, float64 arrays holding values of ``dtype``."""
    dt = float_dtype("dtype", dtype)
    r, _ = rounding(dt)
    work = accumulator(dt)
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    c = r(_cotangent(cotangent, x))
    index, gate = apply_capacity(index, gate, _capacity(capacity))
    x, gate, w_gate, w_up, w_down = (r(a) for a in (x, gate, w_gate, w_up, w_down))

    def product(a, b):
        return r(round_to(a @ b, work))

    grads = {"x": np.zeros_like(x), "gate": np.zeros_like(gate)}
    sums = {name: np.zeros_like(w) for name, w in (("w_gate", w_gate), ("w_up", w_up), ("w_down", w_down))}
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(index.shape[2]):
            for e in range(w_gate.shape[0]):
                b, t = np.nonzero(index[..., j] == e)
                rows, rows_c, g = x[b, t], c[b, t], gate[b, t, j]
                h, u = product(rows, w_gate[e]), product(rows, w_up[e])
                sig = r(expit(h))
                s = r(h * sig)
                a = r(s * u)
                o = product(a, w_down[e])
                grads["gate"][b, t, j] = r(round_to((rows_c * o).sum(axis=-1), work))
                do = r(g[:, None] * rows_c)
                da = product(do, w_down[e].T)
                dh = r(r(da * u) * r(sig * r(1 + r(h * r(1 - sig)))))
                du = r(da * s)
                sums["w_down"][e] += a.T @ do
                sums["w_gate"][e] += rows.T @ dh
                sums["w_up"][e] += rows.T @ du
                grads["x"][b, t] = r(grads["x"][b, t] + r(round_to(dh @ w_gate[e].T + du @ w_up[e].T, work)))
    return {**grads, **{name: r(round_to(total, work)) for name, total in sums.items()}}
