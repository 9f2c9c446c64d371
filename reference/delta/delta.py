"""The delta rule (DeltaNet: Schlag et al. 2021; Yang et al. 2024, arXiv:2406.06484) and the gated
delta rule (Gated DeltaNet: Yang et al. 2024, arXiv:2412.06464), per head, state S (K, V):

    S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,    o_t = scale q_t S_t

equivalently u_t = beta_t (v_t - a_t k_t^T S_{t-1}) (the new value written), S_t = a_t S_{t-1} +
k_t u_t^T. q, k (B, T, H, K), v (B, T, H, V), beta (B, T, H) in [0, 2], the gate a_t = exp(g_t)
in [0, 1] from g (B, T, H) <= 0, none for the plain delta rule (a_t = 1); scale defaults to
K^-1/2; S (B, H, K, V) as fla's.

The chunked form (the WY / UT form of the chunked kernels) solves, per chunk with gamma_i =
prod_{start<=s<=i} a_s and P_ij = gamma_i / gamma_j = prod_{j<s<=i} a_s:

    u_i + sum_{j<i} beta_i P_ij (k_i . k_j) u_j = beta_i (v_i - gamma_i k_i^T S_prev)

by forward substitution (the unit lower-triangular system (I + A) U = ...), then
o_i = scale (gamma_i q_i S_prev + sum_{j<=i} P_ij (q_i . k_j) u_j) and
S = gamma_last S_prev + sum_j P_last,j k_j u_j^T.

Matches ``fla-org/flash-linear-attention: fla/ops/delta_rule/naive.py delta_rule_recurrence``
(q scaled by K^-1/2) and ``fla/ops/gated_delta_rule/naive.py`` (S decayed by exp(g) before the
update). Differences: float64; batch-first (B, T, H, .) layout; any chunk size (fla's naive
chunked form asserts that it divides T); the gate's products come from stable segment sums of g.

Exact mode: give ``decay=`` (the gates a_t themselves) instead of g, or no gate; if any input is
an object array everything becomes ``fractions.Fraction`` (``scale`` must then be given) and the
result is exact.
"""

from fractions import Fraction

import numpy as np

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, finite_real, positive_int
from ..mamba.ssd import segprod, segsum


def _heads_first(a):
    return np.swapaxes(a, 1, 2)  # (B, T, H, .) -> (B, H, T, .)


class _Delta:
    """Prepared arguments, heads first: q (scaled), k, v (B, H, T, .), beta (B, H, T), the gate as
    ``log`` log-decays or linear decays (B, H, T) or None, and S0 (B, H, K, V)."""

    def __init__(self, q, k, v, beta, g, decay, scale, initial_state,
                 names=("q", "k", "v", "beta", "g", "decay", "initial_state")):
        nq, nk, nv, nbeta, ng, ndecay, nstate = names
        q, k, v = (as_real(n, a, exact_ok=True) for n, a in ((nq, q), (nk, k), (nv, v)))
        batch, T, H, K = check_layout(nq, q, "(B, T, H, K)")
        check_shape(nk, k, q.shape, "(B, T, H, K)", match=nq)
        check_layout(nv, v, "(B, T, H, V)")
        check_shape(nv, v, q.shape[:3] + v.shape[3:], "(B, T, H, V)", match=nq)
        beta = as_real(nbeta, beta, exact_ok=True)
        check_shape(nbeta, beta, q.shape[:3], "(B, T, H)", match=nq)
        if g is not None and decay is not None:
            raise TypeError(f"give at most one of {ng} (log-gates) and {ndecay} (the gates themselves)")
        self.log = g is not None
        gate_name, gate = (ng, g) if self.log else (ndecay, decay)
        if gate is not None:
            gate = as_real(gate_name, gate, exact_ok=not self.log)
            check_shape(gate_name, gate, q.shape[:3], "(B, T, H)", match=nq)
        state = (np.zeros((batch, H, K, v.shape[3])) if initial_state is None
                 else as_real(nstate, initial_state, exact_ok=True))
        check_shape(nstate, state, (batch, H, K, v.shape[3]), "(B, H, K, V)", match=f"{nq} and {nv}")
        arrays = {nq: q, nk: k, nv: v, nbeta: beta, nstate: state}
        self.exact = any(a.dtype == object for a in arrays.values()) or (gate is not None and gate.dtype == object)
        if self.exact:
            if self.log:
                raise TypeError(f"exact (object) inputs need {ndecay}= (rational gates), not log-gates {ng}")
            if scale is None:
                raise TypeError("exact (object) inputs need a rational scale (K^-1/2 is not one): pass scale")
            arrays = {n: as_fractions(n, a) for n, a in arrays.items()}
            gate = None if gate is None else as_fractions(gate_name, gate)
            scale = Fraction(scale)
        else:
            arrays = {n: a.astype(np.float64) for n, a in arrays.items()}
            gate = None if gate is None else gate.astype(np.float64)
            scale = K ** -0.5 if scale is None else finite_real("scale", scale)
        if not all(0 <= b <= 2 for b in np.asarray(arrays[nbeta]).flat):
            raise ValueError(f"{nbeta} must lie in [0, 2]")
        if gate is not None and self.log and (np.isnan(gate).any() or (gate > 0).any()):
            raise ValueError(f"{gate_name} must hold log-gates <= 0 (-inf resets the state); got a value > 0 or NaN")
        if gate is not None and not self.log and not all(0 <= a <= 1 for a in gate.flat):
            raise ValueError(f"{gate_name} must lie in [0, 1]")
        q, k, v, beta, self.S0 = arrays.values()
        self.scale = scale
        self.q, self.k, self.v = (_heads_first(a) for a in (q * scale, k, v))
        self.beta = _heads_first(beta[..., None])[..., 0]  # (B, H, T)
        self.gate = None if gate is None else _heads_first(gate[..., None])[..., 0]
        self.one = Fraction(1) if self.exact else 1.0

    def step(self, t):
        """a_t (B, H)."""
        if self.gate is None:
            return self.one
        return np.exp(self.gate[..., t]) if self.log else self.gate[..., t]

    def within(self, start, stop):
        """(P (B, H, c, c) = prod_{j<s<=i} a_s, gamma (B, H, c) = prod_{start<=s<=i} a_s); ones without a gate."""
        c = stop - start
        if self.gate is None:
            lower = np.tril(np.ones((c, c), dtype=object if self.exact else np.float64))
            ones = np.ones(self.q.shape[:2] + (c,), dtype=object if self.exact else np.float64)
            return np.broadcast_to(lower * self.one, self.q.shape[:2] + (c, c)), ones * self.one
        gates = self.gate[..., start:stop]
        if self.log:
            return np.exp(segsum(gates)), np.exp(np.cumsum(gates, axis=-1))
        return segprod(gates), np.cumprod(gates, axis=-1)


def _recurrent(p: _Delta):
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for t in range(p.q.shape[2]):
        a = p.step(t)
        a = a if np.ndim(a) == 0 else a[..., None, None]
        S = a * S
        u = p.beta[:, :, t, None] * (p.v[:, :, t] - np.einsum("bhk,bhkv->bhv", p.k[:, :, t], S))
        S = S + p.k[:, :, t, :, None] * u[:, :, None, :]
        outs.append(np.einsum("bhk,bhkv->bhv", p.q[:, :, t], S)[:, None])
    return np.concatenate(outs, axis=1), S


def _chunked(p: _Delta, chunk_size):
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for start in range(0, p.q.shape[2], chunk_size):
        stop = min(start + chunk_size, p.q.shape[2])
        qc, kc, vc, bc = p.q[:, :, start:stop], p.k[:, :, start:stop], p.v[:, :, start:stop], p.beta[:, :, start:stop]
        P, gamma = p.within(start, stop)
        kk = (kc @ np.swapaxes(kc, -1, -2)) * P  # P_ij (k_i . k_j), 0 above the diagonal
        rhs = bc[..., None] * (vc - gamma[..., None] * (kc @ S))  # beta_i (v_i - gamma_i k_i^T S_prev)
        U = []
        for i in range(stop - start):  # forward substitution of the unit lower-triangular system
            earlier = np.einsum("bhj,bhjv->bhv", kk[:, :, i, :i], np.stack(U, axis=2)) if U else 0
            U.append(rhs[:, :, i] - bc[:, :, i, None] * earlier)
        U = np.stack(U, axis=2)
        scores = (qc @ np.swapaxes(kc, -1, -2)) * P
        outs.append(_heads_first(gamma[..., None] * (qc @ S) + scores @ U))
        S = gamma[..., -1, None, None] * S + np.swapaxes(kc * P[..., -1, :, None], -1, -2) @ U
    return np.concatenate(outs, axis=1), S


def delta_rule_recurrent(q, k, v, beta, *, g=None, decay=None, scale=None, initial_state=None, return_state=False):
    """The (gated) delta rule one step at a time (module docstring; ``delta_rule_recurrence``).
    Returns o (B, T, H, V), and the final state (B, H, K, V) with ``return_state``."""
    check_bool("return_state", return_state)
    out, S = _recurrent(_Delta(q, k, v, beta, g, decay, scale, initial_state))
    return (out, S) if return_state else out


def delta_rule_chunked(q, k, v, beta, *, chunk_size, g=None, decay=None, scale=None, initial_state=None,
                       return_state=False):
    """The (gated) delta rule by chunks of ``chunk_size`` steps (the last may be shorter): the
    UT/WY system within a chunk, the state across chunks (module docstring). Same result as the
    recurrent form up to rounding, exactly on Fractions."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    out, S = _chunked(_Delta(q, k, v, beta, g, decay, scale, initial_state), chunk_size)
    return (out, S) if return_state else out


def delta_rule_step(q_t, k_t, v_t, beta_t, *, state, g_t=None, decay_t=None, scale=None):
    """One decoding step from ``state`` (B, H, K, V) (None: zeros); q_t, k_t (B, H, K), v_t (B, H, V),
    beta_t (and g_t or decay_t) (B, H). Returns (o_t (B, H, V), state)."""
    q_t, k_t, v_t = (as_real(n, a, exact_ok=True) for n, a in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)))
    check_layout("q_t", q_t, "(B, H, K)", ("B",))
    check_shape("k_t", k_t, q_t.shape, "(B, H, K)", match="q_t")
    check_layout("v_t", v_t, "(B, H, V)", ("B",))
    check_shape("v_t", v_t, q_t.shape[:2] + v_t.shape[2:], "(B, H, V)", match="q_t")
    timed = [None if x is None else as_real(n, x, exact_ok=True)[:, None]
             for n, x in (("beta_t", beta_t), ("g_t", g_t), ("decay_t", decay_t))]
    p = _Delta(q_t[:, None], k_t[:, None], v_t[:, None], *timed, scale, state,
               names=("q_t", "k_t", "v_t", "beta_t", "g_t", "decay_t", "state"))
    out, state = _recurrent(p)
    return out[:, 0], state
