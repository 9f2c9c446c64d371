"""The MoE layer (Shazeer et al. 2017; Fedus et al. 2021, "Switch Transformers"), in the two forms
kernels are checked between, each taking a routing (``routing.py``):

    y_t = sum_{j : slot j of token t kept} gate_tj * E_{e_tj}(x_t)

with the experts SwiGLU feed-forwards, as Mixtral's, DeepSeek's and Jamba's:

    E_e(x) = (silu(x W_gate[e]) * (x W_up[e])) W_down[e],   silu(h) = h sigmoid(h)

x (B, T, D), w_gate and w_up (E, D, F), w_down (E, F, D). Slots over ``capacity`` are dropped by
the priority rule of ``routing.apply_capacity`` (None: no limit); a dropped or empty slot adds
nothing, so a token that loses every slot outputs 0 and passes through the block's residual alone
(the residual x + y is the caller's: HF's SwitchTransformersSparseMLP instead starts from a copy
of the hidden states, so a dropped token outputs router_prob * x, see docs/moe.md).

- ``moe_per_token``: the definition, token by token and slot by slot
  (huggingface/transformers: models/mixtral/modeling_mixtral.py MixtralSparseMoeBlock's loop).
- ``moe_dispatch``: what grouped-GEMM kernels compute (megablocks, DeepSpeed, vLLM's fused_moe):
  every slot's position in its expert's queue by a cumulative count in priority order (GShard's
  ``locations``), the kept slots sorted by expert, one matrix product per expert over all its
  tokens, and the outputs scattered back onto their tokens scaled by their gates.
"""

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_layout, check_shape, float_dtype
from ..arith import accumulator, round_to, rounding
from .routing import _capacity, apply_capacity, check_routing


def silu(h):
    return h * expit(h)


def check_experts(x, w_gate, w_up, w_down):
    """x (B, T, D) and the expert weights (E, D, F), (E, D, F), (E, F, D) as float64, finite."""
    x = as_real("x", x)
    _, _, D = check_layout("x", x, "(B, T, D)")
    w_gate = as_real("w_gate", w_gate)
    E, D_gate, F = check_layout("w_gate", w_gate, "(E, D, F)")
    if D_gate != D:
        raise ValueError(f"w_gate must have shape (E, D, F) with D={D} to match x; got shape {w_gate.shape}")
    w_up = as_real("w_up", w_up)
    check_shape("w_up", w_up, (E, D, F), "(E, D, F)", match="w_gate")
    w_down = as_real("w_down", w_down)
    check_shape("w_down", w_down, (E, F, D), "(E, F, D)", match="w_gate")
    for name, a in (("x", x), ("w_gate", w_gate), ("w_up", w_up), ("w_down", w_down)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
    return x, w_gate, w_up, w_down


def _prepare(x, expert_index, gate, w_gate, w_up, w_down):
    x, w_gate, w_up, w_down = check_experts(x, w_gate, w_up, w_down)
    index, gate = check_routing(expert_index, gate, w_gate.shape[0])
    if index.shape[:2] != x.shape[:2]:
        raise ValueError(f"expert_index must have shape (B, T, k) with (B, T)={x.shape[:2]} to match x; "
                         f"got shape {index.shape}")
    return x, index, gate, w_gate, w_up, w_down


def expert_ffn(x, w_gate, w_up, w_down):
    """One SwiGLU expert on a batch of rows x (n, D): (silu(x w_gate) * (x w_up)) w_down, (n, D);
    w_gate and w_up (D, F), w_down (F, D)."""
    x = as_real("x", x)
    _, D = check_layout("x", x, "(n, D)", may_be_empty=("n",))
    w_gate = as_real("w_gate", w_gate)
    _, F = check_layout("w_gate", w_gate, "(D, F)")
    check_shape("w_gate", w_gate, (D, F), "(D, F)", match="x")
    w_up, w_down = as_real("w_up", w_up), as_real("w_down", w_down)
    check_shape("w_up", w_up, (D, F), "(D, F)", match="w_gate")
    check_shape("w_down", w_down, (F, D), "(F, D)", match="w_gate")
    return _ffn(x, w_gate, w_up, w_down)


def _ffn(x, w_gate, w_up, w_down):
    return (silu(x @ w_gate) * (x @ w_up)) @ w_down


def moe_per_token(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The MoE layer's definition (module docstring): for every token and every kept slot, the
    expert applied to that token alone, scaled by the slot's gate and added. Returns y (B, T, D)."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    index, gate = apply_capacity(index, gate, _capacity(capacity))
    y = np.zeros_like(x)
    B, T, k = index.shape
    for b in range(B):
        for t in range(T):
            for j in range(k):
                e = index[b, t, j]
                if e >= 0:
                    y[b, t] += gate[b, t, j] * _ffn(x[b, t][None], w_gate[e], w_up[e], w_down[e])[0]
    return y


def dispatch_plan(expert_index, capacity):
    """Where every slot goes, as dispatch kernels compute it: per batch row, the slots flattened
    in priority order (slot-major), each slot's ``location`` = how many earlier slots chose its
    expert (a cumulative count of one-hot rows, GShard's ``cumsum(mask) - 1``), kept where
    location < capacity. Returns (order, kept): ``order`` the kept slots' flat indices
    (b, t, j) sorted by expert (stable: by batch row, then priority), and their experts."""
    B, T, k = expert_index.shape
    E = int(expert_index.max(initial=-1)) + 1
    by_priority = np.swapaxes(expert_index, 1, 2).reshape(B, k * T)  # slot-major: slot j of every token, then j + 1
    one_hot = by_priority[..., None] == np.arange(E)  # (B, kT, E)
    location = np.cumsum(one_hot, axis=1) - 1  # per expert, the queue position of each slot
    location = np.where(one_hot, location, 0).sum(axis=-1)
    kept = by_priority >= 0
    if capacity is not None:
        kept &= location < capacity
    b, s = np.nonzero(kept)
    experts = by_priority[b, s]
    order = np.argsort(experts, kind="stable")
    j, t = np.divmod(s[order], T)
    return (b[order], t, j), experts[order]


def moe_dispatch(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The MoE layer as dispatch kernels compute it (module docstring): permute the kept slots'
    tokens into expert order, one grouped product per expert, scatter back with the gates.
    Returns y (B, T, D)."""
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    (b, t, j), experts = dispatch_plan(index, _capacity(capacity))
    rows = x[b, t]  # (n, D): the permuted tokens, grouped by expert
    out = np.empty_like(rows)
    starts = np.searchsorted(experts, np.arange(w_gate.shape[0] + 1))
    for e in range(w_gate.shape[0]):
        group = slice(starts[e], starts[e + 1])
        out[group] = _ffn(rows[group], w_gate[e], w_up[e], w_down[e])
    y = np.zeros_like(x)
    np.add.at(y, (b, t), gate[b, t, j][:, None] * out)
    return y


def moe_in_dtype(x, expert_index, gate, w_gate, w_up, w_down, *, dtype, capacity=None):
    """``moe_per_token`` evaluated in a low precision ``dtype`` (the baseline of a low-precision
    candidate, docs/tolerance.md): inputs rounded; x W_gate, x W_up and a W_down summed in float32
    and rounded once (the products exact, as tensor cores form them); sigmoid, silu, the product
    silu(h) u, each gate * output and each slot's addition (slot 0 first) rounded. Returns
    y (B, T, D) in float64 holding values of ``dtype``."""
    dt = float_dtype("dtype", dtype)
    r, _ = rounding(dt)
    work = accumulator(dt)
    x, index, gate, w_gate, w_up, w_down = _prepare(x, expert_index, gate, w_gate, w_up, w_down)
    index, gate = apply_capacity(index, gate, _capacity(capacity))
    x, gate, w_gate, w_up, w_down = (r(a) for a in (x, gate, w_gate, w_up, w_down))

    def product(a, b):
        return r(round_to(a @ b, work))

    y = np.zeros_like(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for j in range(index.shape[2]):
            for e in range(w_gate.shape[0]):
                b, t = np.nonzero(index[..., j] == e)
                h, u = product(x[b, t], w_gate[e]), product(x[b, t], w_up[e])
                o = product(r(r(h * r(expit(h))) * u), w_down[e])
                y[b, t] = r(y[b, t] + r(gate[b, t, j, None] * o))
    return y
