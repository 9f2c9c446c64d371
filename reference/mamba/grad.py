"""The exact float64 gradient of Mamba's selective scan (``selective_scan_recurrent``), by the
reverse-time recurrence of the state's cotangent that the CUDA backward
(``state-spaces/mamba: csrc/selective_scan/selective_scan_bwd_kernel.cuh``) runs.

Per batch and channel, with a_t = exp(dt_t A), x_t = a_t x_{t-1} + dt_t B_t u_t (N states),
y_t = C_t . x_t, out_t = (y_t + D u_t) silu(z_t), output cotangent dout_t and, when the last
state is an output, dX:

    dz_t = dout_t (y_t + D u_t) silu'(z_t),     dy_t = dout_t silu(z_t)
    G_T = dX + dy_T C_T,      G_t = dy_t C_t + a_{t+1} G_{t+1}          (G: dL/dx_t)
    dC_t = dy_t x_t,   dB_t = dt_t u_t G_t,   du_t = dt_t (B_t . G_t) + D dy_t,   dD = sum_t dy_t u_t
    ddt_t = u_t (B_t . G_t) + A . (G_t o x_{t-1} o a_t),   dA = sum_t dt_t G_t o x_{t-1} o a_t
    ddelta_t = ddt_t sigmoid(delta_t + delta_bias) (with softplus; 1 above 20, as its identity branch)
    d delta_bias = sum_t ddelta_t,   dx_{-1} = a_1 G_1 (the initial state's gradient)

dB and dC are summed into their own layout: over batch and time for (D, N), over channels for
(B, T, N), within each group for (B, T, G, N). With complex A (y_t = 2 Re(C_t . x_t)) every
gradient of a complex input is dL/dRe + i dL/dIm, as torch's autograd gives for a real loss: the
products above take the conjugate of each partner (G_t = 2 dy_t conj(C_t) + conj(a_{t+1}) G_{t+1},
dC_t = 2 dy_t conj(x_t), ...), the real inputs' gradients the real part; a real B or C used as
complex gets the real part of its gradient. Verified in the tests against central differences
and torch autograd of the recurrence.
"""

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_layout, check_shape, float_dtype, positive_int
from ..arith import rounding
from .selective_scan import _chunk_states, _prepare
from .ssd import segsum


def _into_layout(gradient, given, like_complex):
    """A per-channel gradient (B, T, D, N) summed into the layout of the B or C that was given."""
    given = np.asarray(given)
    if given.ndim == 2:  # (D, N): time-invariant
        total = gradient.sum(axis=(0, 1))
    elif given.ndim == 3:  # (B, T, N): shared by all channels
        total = gradient.sum(axis=2)
    else:  # (B, T, G, N)
        batch, T, D, N = gradient.shape
        total = gradient.reshape(batch, T, given.shape[2], D // given.shape[2], N).sum(axis=3)
    return total if like_complex and given.dtype.kind == "c" else total.real


def selective_scan_vjp(u, delta, A, B, C, D=None, z=None, *, cotangent, state_cotangent=None, delta_bias=None,
                       delta_softplus=False, initial_state=None):
    """The gradients of <out, cotangent> (+ Re <X_T, state_cotangent>) for
    ``selective_scan_recurrent(u, delta, A, B, C, D, z, delta_bias=, delta_softplus=,
    initial_state=)`` (module docstring): {"u", "delta", "A", "B", "C", "initial_state"} and "D",
    "z", "delta_bias" when given, each in its input's shape."""
    s = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    return _scan_vjp(s, np.asarray(A), B, C, delta_bias, delta_softplus, cotangent, state_cotangent, _recurrent_states,
                     _reverse_recurrence)


def selective_scan_chunked_vjp(u, delta, A, B, C, D=None, z=None, *, chunk_size, cotangent, state_cotangent=None,
                               delta_bias=None, delta_softplus=False, initial_state=None):
    """``selective_scan_vjp`` by chunks of ``chunk_size`` steps, the backward of
    ``selective_scan_chunked``: the states recomputed chunk by chunk from the state each chunk
    starts from, then the chunks visited last to first. Within a chunk [s, e) the state's
    cotangent is in closed form,

        G_t = sum_{t <= j < e} conj(exp(sum_{t < r <= j} dt_r A)) dL/dx_j|_(y_j) + conj(exp(sum_{t < r < e} dt_r A)) H,

    H the cotangent flowing into x_{e-1} from the chunks after (the final state's for the last),
    and the chunk before gets H = conj(exp(dt_s A)) G_s; the same gradients up to rounding."""
    size = positive_int("chunk_size", chunk_size)
    s = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    return _scan_vjp(s, np.asarray(A), B, C, delta_bias, delta_softplus, cotangent, state_cotangent,
                     lambda s: _chunk_states(s, size), lambda s, reads, G: _reverse_by_chunks(s, reads, G, size))


def selective_scan_vjp_in_dtype(u, delta, A, B, C, D=None, z=None, *, dtype, cotangent, state_cotangent=None,
                                delta_bias=None, delta_softplus=False, initial_state=None):
    """``selective_scan_vjp``'s backward evaluated in a low precision ``dtype``; returns that dtype
    (complex parts rounded part by part). The baseline a low-precision selective-scan backward is
    judged against: the inputs, dt (after the bias and softplus), exp(dt A), dt B u, the states and
    then every step of the reverse recurrence rounded, each sum over N or over batch and time
    accumulated in float32 and rounded once."""
    dt_type = float_dtype("dtype", dtype)
    r, total = rounding(dt_type)
    s = _prepare(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    is_complex = s.dtA.dtype.kind == "c"
    conj = np.conj if is_complex else (lambda v: v)
    two = 2 if is_complex else 1
    batch, T, dim, N = s.dBu.shape
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, (batch, T, dim), "(B, T, D)", match="u")
    with np.errstate(over="ignore", invalid="ignore"):
        uu, dt, A_, Bc, Cc = r(s.u), r(s.dt), r(np.asarray(A)), r(s.B), r(s.C)
        a = r(np.exp(r(dt[..., None] * A_)))
        dBu = r(r(dt * uu)[..., None] * Bc)
        x = r(s.h0)
        states = np.empty(s.dBu.shape, dtype=np.result_type(a, dBu, x))
        for t in range(T):
            x = r(r(a[:, t] * x) + dBu[:, t])
            states[:, t] = x
        before = np.concatenate([r(s.h0)[:, None], states[:, :-1]], axis=1)
        y = total(r(states * Cc), -1)
        y = r(two * y.real) if is_complex else y
        pre_gate = y if s.D is None else r(y + r(uu * r(s.D)))
        dout, grads = r(cotangent), {}
        if s.z is None:
            dy = dout
        else:
            zz = r(s.z)
            gate = r(expit(zz))
            dy = r(dout * r(zz * gate))
            grads["z"] = r(r(dout * pre_gate) * r(gate * r(1 + r(zz * r(1 - gate)))))
        if s.D is not None:
            grads["D"] = total(r(dy * uu), (0, 1))
        reads = r(two * r(dy[..., None] * conj(Cc)))
        G = np.zeros(s.h0.shape, dtype=states.dtype)
        if state_cotangent is not None:
            state_cotangent = as_real("state_cotangent", state_cotangent, complex_ok=is_complex)
            check_shape("state_cotangent", state_cotangent, (batch, dim, N), "(B, D, N)", match="u and A")
            G = r(state_cotangent)
        totals = np.empty(states.shape, dtype=np.result_type(states, reads, G))
        for t in reversed(range(T)):
            G = r(reads[:, t] + G)
            totals[:, t] = G
            G = r(conj(a[:, t]) * G)
        through_decay = r(totals * conj(r(before * a)))
        through_input = total(r(totals * conj(np.broadcast_to(Bc, states.shape))), -1).real
        ddt = r(r(uu * through_input) + total(r(through_decay * conj(A_)), -1).real)
        du = r(dt * through_input) if s.D is None else r(r(dt * through_input) + r(r(s.D) * dy))
        ddelta = r(ddt * r(np.where(s.raw_dt <= 20, expit(s.raw_dt), 1.0))) if delta_softplus else ddt
        grads.update({"u": du, "delta": ddelta, "A": total(r(dt[..., None] * through_decay), (0, 1)),
                      "B": r(_into_layout(r(r(dt * uu)[..., None] * totals), B, is_complex)),
                      "C": r(_into_layout(r(two * r(dy[..., None] * conj(states))), C, is_complex)),
                      "initial_state": G})
        if delta_bias is not None:
            grads["delta_bias"] = total(ddelta, (0, 1))
    complex_type = np.result_type(dt_type, np.complex64) if dt_type.itemsize >= 4 else None
    return {name: (g.astype(complex_type) if np.iscomplexobj(g) and complex_type is not None else
                   g if np.iscomplexobj(g) else g.astype(dt_type)) for name, g in grads.items()}


def _recurrent_states(s):
    a, x = np.exp(s.dtA), s.h0
    states = np.empty(s.dBu.shape, dtype=np.result_type(a, s.dBu, s.h0))
    for t in range(s.dtA.shape[1]):
        x = a[:, t] * x + s.dBu[:, t]
        states[:, t] = x
    return states


def _reverse_recurrence(s, reads, G):
    """G_t = reads_t + conj(a_{t+1}) G_{t+1} for every t, and the initial state's conj(a_0) G_0."""
    conj_a = np.conj(np.exp(s.dtA))
    total = np.empty(reads.shape, dtype=np.result_type(reads, G, conj_a))
    for t in reversed(range(reads.shape[1])):
        G = reads[:, t] + G
        total[:, t] = G
        G = conj_a[:, t] * G
    return total, G


def _reverse_by_chunks(s, reads, H, size):
    """``_reverse_recurrence`` chunk by chunk, last to first (``selective_scan_chunked_vjp``)."""
    T = reads.shape[1]
    total = np.empty(reads.shape, dtype=np.result_type(reads, H, s.dtA))
    for start in reversed(range(0, T, size)):
        span = slice(start, min(start + size, T))
        decays = np.conj(np.exp(segsum(np.moveaxis(s.dtA[:, span], 1, -1))))  # (B, D, N, c, c): [j, t]
        G = np.einsum("bdnjt,bjdn->btdn", decays, reads[:, span]) + np.moveaxis(decays[..., -1, :], -1, 1) * H[:, None]
        total[:, span] = G
        H = np.conj(np.exp(s.dtA[:, start])) * G[:, 0]
    return total, H


def _scan_vjp(s, A, B, C, delta_bias, delta_softplus, cotangent, state_cotangent, states_of, reverse):
    """The gradients from the prepared scan ``s``: the states by ``states_of(s)``, the states'
    cotangents G_t and the initial state's by ``reverse(s, reads, G_T)`` (module docstring)."""
    is_complex = s.dtA.dtype.kind == "c"
    batch, T, dim, N = s.dBu.shape
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, (batch, T, dim), "(B, T, D)", match="u")
    G = np.zeros(s.h0.shape, dtype=s.h0.dtype)
    if state_cotangent is not None:
        state_cotangent = as_real("state_cotangent", state_cotangent, complex_ok=is_complex)
        check_shape("state_cotangent", state_cotangent, (batch, dim, N), "(B, D, N)", match="u and A")
        G = G + state_cotangent
    a = np.exp(s.dtA)
    states = states_of(s)
    before = np.concatenate([s.h0[:, None], states[:, :-1]], axis=1)  # x_{t-1}
    y = np.sum(states * s.C, axis=-1)
    y = 2 * y.real if is_complex else y
    pre_gate = y if s.D is None else y + s.u * s.D
    grads = {}
    if s.z is None:
        dy = cotangent
    else:
        gate = expit(s.z)
        dy = cotangent * s.z * gate
        grads["z"] = cotangent * pre_gate * gate * (1 + s.z * (1 - gate))
    if s.D is not None:
        grads["D"] = (dy * s.u).sum(axis=(0, 1))
    conj = np.conj if is_complex else (lambda v: v)
    reads = (2 if is_complex else 1) * dy[..., None] * conj(s.C)  # dL/dx_t through y_t
    total, G = reverse(s, reads, G)
    through_decay = total * conj(before * a)  # dL/d(dt_t A)
    through_input = np.sum(total * conj(np.broadcast_to(s.B, states.shape)), axis=-1).real  # B_t . G_t
    ddt = s.u * through_input + np.sum(through_decay * conj(A), axis=-1).real
    du = s.dt * through_input + (0 if s.D is None else s.D * dy)
    ddelta = ddt * (np.where(s.raw_dt <= 20, expit(s.raw_dt), 1.0) if delta_softplus else 1.0)
    grads.update({
        "u": du,
        "delta": ddelta,
        "A": (s.dt[..., None] * through_decay).sum(axis=(0, 1)),
        "B": _into_layout((s.dt * s.u)[..., None] * total, B, is_complex),
        "C": _into_layout((2 if is_complex else 1) * dy[..., None] * conj(states), C, is_complex),
        "initial_state": G,
    })
    if delta_bias is not None:
        grads["delta_bias"] = ddelta.sum(axis=(0, 1))
    return grads


def ssd_vjp(x, dt, A, B, C, *, cotangent, state_cotangent=None, initial_state=None):
    """The gradients of <y, cotangent> (+ <h_T, state_cotangent>) for ``ssd_recurrent(x, dt, A,
    B, C, initial_state=)``: {"x", "dt", "A", "B", "C", "initial_state"}, each in its input's
    shape (the gradient is taken in A; the exact mode's ``decay=`` has none).

    SSD is scalar gated linear attention per head (K = N, V = P): q = C, k = B, v = dt x, log-decay
    g = dt A, scale 1, the state h^T; so this is ``gla_vjp`` followed by the chain rule:
    dx = dt dv, ddt = x . dv + A dg, dA = sum_t dt dg, dB and dC summed over each group's heads."""
    from ..gla import gla_vjp  # GLA's package imports this one's

    return _through_gla(gla_vjp, x, dt, A, B, C, cotangent, state_cotangent, initial_state)


def ssd_chunked_vjp(x, dt, A, B, C, *, chunk_size, cotangent, state_cotangent=None, initial_state=None):
    """``ssd_vjp`` by chunks of ``chunk_size`` steps, the backward of ``ssd_chunked``: the chunks
    visited last to first, the state's cotangent handed to the chunk before through the chunk's
    decay exp(sum_t dt_t A) (``gla_chunked_vjp`` with SSD's q, k, v, g), then the same chain rule."""
    from ..gla import gla_chunked_vjp

    def vjp(*args, **options):
        return gla_chunked_vjp(*args, chunk_size=chunk_size, **options)

    return _through_gla(vjp, x, dt, A, B, C, cotangent, state_cotangent, initial_state)


def ssd_vjp_in_dtype(x, dt, A, B, C, *, dtype, cotangent, state_cotangent=None, initial_state=None):
    """``ssd_vjp``'s backward evaluated in a low precision ``dtype``; returns that dtype. The
    baseline a low-precision SSD backward is judged against: GLA's backward in dtype
    (``gla_vjp_in_dtype``) on q = C, k = B, v = dt x, g = dt A, then the chain rule's few
    operations, rounded once."""
    from ..arith import round_to
    from ..gla import gla_vjp_in_dtype

    dt_type = float_dtype("dtype", dtype)

    def vjp(*args, **options):
        return {n: g.astype(np.float64) for n, g in gla_vjp_in_dtype(*args, dtype=dt_type, **options).items()}

    grads = _through_gla(vjp, x, dt, A, B, C, cotangent, state_cotangent, initial_state)
    return {name: round_to(g, dt_type).astype(dt_type) for name, g in grads.items()}


def _through_gla(vjp, x, dt, A, B, C, cotangent, state_cotangent, initial_state):
    """SSD's gradients from a GLA backward ``vjp`` on q = C, k = B, v = dt x, g = dt A (``ssd_vjp``)."""
    x, dt = as_real("x", x), as_real("dt", dt)
    batch, T, H, P = check_layout("x", x, "(B, T, H, P)")
    check_shape("dt", dt, (batch, T, H), "(B, T, H)", match="x")
    Bm, Cm = as_real("B", B), as_real("C", C)
    G, N = check_layout("B", Bm, "(B, T, G, N)")[2:]
    if H % G:
        raise ValueError(f"B has G={G} groups, which must divide the H={H} heads of x")
    check_shape("B", Bm, (batch, T, G, N), "(B, T, G, N)", match="x")
    check_shape("C", Cm, (batch, T, G, N), "(B, T, G, N)", match="B")
    A = as_real("A", A)
    check_shape("A", A, (H,), "(H,)", match="x")
    if initial_state is not None:
        initial_state = as_real("initial_state", initial_state)
        check_shape("initial_state", initial_state, (batch, H, P, N), "(B, H, P, N)", match="x and B")
    cotangent = as_real("cotangent", cotangent)
    check_shape("cotangent", cotangent, x.shape, "(B, T, H, P)", match="x")
    if state_cotangent is not None:
        state_cotangent = as_real("state_cotangent", state_cotangent)
        check_shape("state_cotangent", state_cotangent, (batch, H, P, N), "(B, H, P, N)", match="x and B")
    r = H // G
    grads = vjp(np.repeat(Cm, r, axis=2), np.repeat(Bm, r, axis=2), dt[..., None] * x, dt * A, cotangent=cotangent,
                state_cotangent=None if state_cotangent is None else np.swapaxes(state_cotangent, -1, -2),
                scale=1.0, initial_state=None if initial_state is None else np.swapaxes(initial_state, -1, -2))
    dv, dg = grads["v"], grads["g"]
    return {"x": dt[..., None] * dv, "dt": (x * dv).sum(axis=-1) + A * dg, "A": (dt * dg).sum(axis=(0, 1)),
            "B": grads["k"].reshape(batch, T, G, r, N).sum(axis=3), "C": grads["q"].reshape(batch, T, G, r, N).sum(axis=3),
            "initial_state": np.swapaxes(grads["initial_state"], -1, -2)}
