"""Gated linear attention (GLA: Yang et al. 2024, "Gated Linear Attention Transformers with
Hardware-Efficient Training", arXiv:2312.06635), per head, with a decay per key channel:

    S_t = diag(a_t) S_{t-1} + k_t^T v_t,   o_t = (scale q_t) S_t      (S_{-1} = S_0)

a_t = exp(g_t) in [0, 1] from the log-decay g_t <= 0 (-inf resets the state), q, k (B, T, H, K),
v (B, T, H, V), g (B, T, H, K), or (B, T, H) for one decay per head ("simple GLA", which
broadcasts over K); state S (B, H, K, V); scale defaults to K^-1/2. The chunked form, per chunk
with P_ij = prod_{j<s<=i} a_s (per key channel) and Q_i = prod_{start<=s<=i} a_s:

    o_i = scale (q_i o Q_i) S_prev + sum_{j<=i} scale (q_i o P_ij) . k_j v_j
    S   = diag(Q_last) S_prev + sum_j (k_j o P_last,j)^T v_j

and the parallel form is one chunk of T steps. Within a chunk, sub-chunks of ``SUB_CHUNK`` steps
(fla's secondary chunking): inside one, P from running products of a_s = exp(g_s)
(``reference.mamba.segprod``); between sub-chunks J < I, P_ij factors into
prod_{start(I)<=s<=i} a_s, the whole sub-chunks between, and prod_{j<s<=end(J)} a_s, each exp
of a running sum from one end, so those scores are matrix products. Nowhere a difference of
sums and no division: g near -inf underflows to 0 where ``exp(cumsum(g)_i - cumsum(g)_j)``
gives inf - inf = NaN.

Matches ``fla-org/flash-linear-attention: fla/ops/gla/naive.py naive_recurrent_gla`` (gk is g,
q scaled by K^-1/2) and ``fla/ops/simple_gla/naive.py`` for g (B, T, H). Differences: float64;
a ``scale`` argument for GLA as well; any chunk size (fla's naive chunk pads T to a multiple);
the stable segment sums above (fla's naive chunked form takes cumsum differences).

Exact mode: give the decays themselves, ``decay=`` a_t in [0, 1] instead of g; if any input is
an object array everything becomes ``fractions.Fraction`` (``scale`` must then be given, a
rational) and the result is exact.
"""

from fractions import Fraction

import numpy as np

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, finite_real, positive_int
from ..mamba.ssd import segprod


def _heads_first(a):
    return np.swapaxes(a, 1, 2)  # (B, T, H, .) -> (B, H, T, .)


class _GLA:
    """Prepared arguments, heads first: q (scaled), k, v (B, H, T, .), the decays per key channel
    as ``log`` (float64 log-decays) or ``linear`` (a_t itself, float64 or Fraction) (B, H, K, T),
    and S0 (B, H, K, V)."""

    def __init__(self, q, k, v, g, decay, scale, initial_state,
                 names=("q", "k", "v", "initial_state", "g", "decay")):
        nq, nk, nv, nstate, ng, ndecay = names
        q, k, v = (as_real(n, a, exact_ok=True) for n, a in ((nq, q), (nk, k), (nv, v)))
        batch, T, H, K = check_layout(nq, q, "(B, T, H, K)")
        check_shape(nk, k, q.shape, "(B, T, H, K)", match=nq)
        check_layout(nv, v, "(B, T, H, V)")
        check_shape(nv, v, q.shape[:3] + v.shape[3:], "(B, T, H, V)", match=nq)
        if (g is None) == (decay is None):
            raise TypeError(f"give exactly one of {ng} (log-decays) and {ndecay} (the decays themselves)")
        name, rates = (ng, g) if decay is None else (ndecay, decay)
        log = decay is None
        rates = as_real(name, rates, exact_ok=not log)
        if rates.shape == (batch, T, H):
            rates = np.broadcast_to(rates[..., None], q.shape)
        check_shape(name, rates, q.shape, "(B, T, H, K) or (B, T, H)", match=nq)
        state = (np.zeros((batch, H, K, v.shape[3])) if initial_state is None
                 else as_real(nstate, initial_state, exact_ok=True))
        check_shape(nstate, state, (batch, H, K, v.shape[3]), "(B, H, K, V)", match=f"{nq} and {nv}")
        arrays = {nq: q, nk: k, nv: v, name: rates, nstate: state}
        self.exact = any(a.dtype == object for a in arrays.values())
        if self.exact:
            if log:
                raise TypeError(f"exact (object) inputs need {ndecay}= (rational decays), not log-decays {ng}")
            if scale is None:
                raise TypeError("exact (object) inputs need a rational scale (K^-1/2 is not one): pass scale")
            arrays = {n: as_fractions(n, a) for n, a in arrays.items()}
            scale = Fraction(scale)
            if not all(0 <= a <= 1 for a in arrays[name].flat):
                raise ValueError(f"{name} must lie in [0, 1]")
        else:
            arrays = {n: a.astype(np.float64) for n, a in arrays.items()}
            scale = K ** -0.5 if scale is None else finite_real("scale", scale)
            r = arrays[name]
            if log and (np.isnan(r).any() or (r > 0).any()):
                raise ValueError(f"{name} must hold log-decays <= 0 (-inf resets the state); got a value > 0 or NaN")
            if not log and not ((r >= 0) & (r <= 1)).all():
                raise ValueError(f"{name} must lie in [0, 1]")
        q, k, v, rates, self.S0 = arrays.values()
        self.scale = scale
        # contiguous heads-first copies: every chunk slices them along time
        self.q, self.k, self.v = (np.ascontiguousarray(_heads_first(a)) for a in (q * scale, k, v))
        self.rates = np.ascontiguousarray(np.moveaxis(_heads_first(rates), -1, 2))  # (B, H, K, T)
        self.log = log

    def steps(self, t):
        """a_t (B, H, K)."""
        return np.exp(self.rates[..., t]) if self.log else self.rates[..., t]


def _segments(rates, log):
    """prod_{j<s<=i} a_s along the last axis, (..., n) -> (..., n, n), 0 above the diagonal:
    running products of the a_s (no division; a reset's a = 0 makes the products across it 0)."""
    return segprod(np.exp(rates) if log else rates)


def _segments_per_channel(decays):
    """prod_{j<s<=i} a_s for decays (..., n, K) along the steps' axis -> (..., n, n, K), 0 for j > i,
    the channels last so that the scores below reduce over contiguous memory."""
    n = decays.shape[-2]
    out = np.zeros(decays.shape[:-1] + decays.shape[-2:], dtype=decays.dtype)  # an object array's zeros are 0
    for i in range(n):  # row i = row i-1 times a_i
        if i:
            out[..., i, :i, :] = out[..., i - 1, :i, :] * decays[..., i, None, :]
        out[..., i, i, :] = 1
    return out


def running(rates, log):
    """prod_{first<=s<=i} a_s along the last axis (running sums of g, never differences); ``log``:
    the rates are log-decays g, else the decays a themselves."""
    return np.exp(np.cumsum(rates, axis=-1)) if log else np.cumprod(rates, axis=-1)


def after(rates, log):
    """prod_{i<s<=last} a_s along the last axis (running sums from the end)."""
    reversed_running = np.flip(running(np.flip(rates[..., 1:], axis=-1), log), axis=-1)
    return np.concatenate([reversed_running, _ones(rates[..., :1], log)], axis=-1)


def _total(rates, log):
    """The rates of whole segments combined along the last axis: sum of g, or product of a."""
    return rates.sum(axis=-1) if log else np.prod(rates, axis=-1)


def _ones(like, log):
    """Ones shaped like ``like``: float, or the object array's own 1 for Fractions."""
    return np.ones(like.shape) if log else np.ones_like(like)


def _padded(a, length, axis, fill):
    """``a`` extended along ``axis`` to ``length`` entries of ``fill`` (in a's dtype)."""
    shape = list(a.shape)
    shape[axis] = length - a.shape[axis]
    return np.concatenate([a, np.full(shape, fill, dtype=a.dtype)], axis=axis)


def _rows_later(P, axis=-2):
    """prod over j < s < i from prod over j < s <= i (rows along ``axis``): the rows moved one step
    later."""
    P = np.moveaxis(P, axis, 0)
    return np.moveaxis(np.concatenate([np.zeros_like(P[:1]), P[:-1]]), 0, axis)


def later(Q, axis=-1):
    """prod over first <= s < i from prod over first <= s <= i (steps along ``axis``): moved one
    step later."""
    Q = np.moveaxis(Q, axis, 0)
    return np.moveaxis(np.concatenate([np.ones_like(Q[:1]), Q[:-1]]), 0, axis)


SUB_CHUNK = 8
"""Steps per sub-chunk: within one, decays are segment products (K s^2 products each); between the
sub-chunks of a chunk, products of three factors that never divide, so the scores are matrix
products (fla's secondary chunking, with sub-chunks of 16 there; 8 is faster in NumPy)."""


class ChunkDecays:
    """The decays of chunks, rates (..., K, c) (log-decays with ``log``, else the decays), for the
    scores sum_k x_ik P_ijk y_jk with P_ij = prod_{j<s<=i} a_s per key channel. Sub-chunk I's row i
    and sub-chunk J's column j (J < I) are coupled by prod_{start(I)<=s<=i} a_s * prod over the
    sub-chunks between * prod_{j<s<=end(J)} a_s, so those scores are matrix products; segment
    products only inside a sub-chunk."""

    def __init__(self, rates, log):
        self.c = rates.shape[-1]
        self.size = min(SUB_CHUNK, self.c)
        self.n = -(-self.c // self.size)
        sub = _padded(rates, self.n * self.size, -1, 0 if log else 1)
        sub = np.swapaxes(sub.reshape(sub.shape[:-1] + (self.n, self.size)), -3, -2)  # (..., n, K, s)
        steps = np.swapaxes(sub, -1, -2)  # (..., n, s, K)
        self.P = _segments_per_channel(np.exp(steps) if log else steps)  # (..., n, s, s, K)
        self.A = np.swapaxes(running(sub, log), -1, -2)  # prod_{start(I)<=s<=i} (..., n, s, K)
        total = np.swapaxes(_total(sub, log), -1, -2)  # each sub-chunk's product (..., K, n)
        between = _rows_later(_segments(total, log))  # prod over the sub-chunks J < L < I (..., K, I, J)
        self.between = np.moveaxis(between, -3, -1)[..., None, :]  # (..., I, J, 1, K)
        self.after = np.swapaxes(after(sub, log), -1, -2)  # prod_{j<s<=end(J)} (..., n, s, K)

    def _split(self, a):
        """(..., c, K) -> (..., n, s, K), zero-padded."""
        a = _padded(a, self.n * self.size, -2, 0)
        return a.reshape(a.shape[:-2] + (self.n, self.size, a.shape[-1]))

    def scores(self, x, ys, strict=False):
        """[sum_k x_ik P_ijk y_jk for j <= i, 0 above the diagonal, for y in ys]: x, y (..., c, K)
        -> (..., c, c). ``strict``: products over j < s < i, for reads before step i's decay
        (RWKV-6's bonus, RWKV-7's rank-one term), and 0 on the diagonal: row i of x's strict scores
        is row i - 1 of the scores of x moved one step earlier."""
        if strict:
            earlier = np.concatenate([x[..., 1:, :], np.zeros_like(x[..., :1, :])], axis=-2)
            return [_rows_later(scores) for scores in self.scores(earlier, ys)]
        xs = self._split(x)
        X = xs * self.A  # (..., I, s, K)
        ysubs = [self._split(y) for y in ys]
        Ys = [np.swapaxes(y * self.after, -1, -2) for y in ysubs]  # (..., J, K, s)
        n, s = self.n, self.size
        out = [np.zeros(xs.shape[:-3] + (n, n, s, s), dtype=np.result_type(x, y)) for y in ys]
        for I in range(n):  # one row of sub-chunks at a time keeps the products small
            coupled = X[..., I, None, :, :] * self.between[..., I, :I, :, :]  # (..., J < I, s, K)
            for scores, y, Y in zip(out, ysubs, Ys):
                scores[..., I, :I, :, :] = coupled @ Y[..., :I, :, :]
                scores[..., I, I, :, :] = np.einsum("...ijk,...ik,...jk->...ij", self.P[..., I, :, :, :], xs[..., I, :, :],
                                                    y[..., I, :, :])
        return [np.swapaxes(scores, -3, -2).reshape(scores.shape[:-4] + (n * s, n * s))[..., :self.c, :self.c]
                for scores in out]


def _chunk(p: _GLA, start, stop, S, strict):
    """Outputs (B, H, c, V) of steps [start, stop) from the state S before them, and the state
    after. ``strict``: products over j < s < i (a read before step i's decay, RWKV's), the
    diagonal left to the caller."""
    q, k, v = (a[:, :, start:stop] for a in (p.q, p.k, p.v))  # (B, H, c, .)
    rates = p.rates[..., start:stop]  # (B, H, K, c)
    Q = running(rates, p.log)
    read = later(Q) if strict else Q
    [scores] = ChunkDecays(rates, p.log).scores(q, [k], strict)
    out = scores @ v + (q * np.swapaxes(read, -1, -2)) @ S
    S = Q[..., -1, None] * S + np.swapaxes(k * np.swapaxes(after(rates, p.log), -1, -2), -1, -2) @ v
    return out, S


def chunked(p: _GLA, chunk_size, strict=False):
    """Every chunk of ``chunk_size`` steps in turn (the last may be shorter), the state carried:
    outputs (B, T, H, V) and the final state."""
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for start in range(0, p.q.shape[2], chunk_size):
        out, S = _chunk(p, start, min(start + chunk_size, p.q.shape[2]), S, strict)
        outs.append(_heads_first(out))
    return np.concatenate(outs, axis=1), S


def _recurrent(p: _GLA):
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for t in range(p.q.shape[2]):
        S = p.steps(t)[..., None] * S + p.k[:, :, t, :, None] * p.v[:, :, t, None, :]
        outs.append(np.einsum("bhk,bhkv->bhv", p.q[:, :, t], S)[:, None])
    return np.concatenate(outs, axis=1), S


def gla_recurrent(q, k, v, g=None, *, decay=None, scale=None, initial_state=None, return_state=False):
    """S_t = diag(a_t) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t, one step at a time
    (``naive_recurrent_gla``). Returns o (B, T, H, V), and the final state (B, H, K, V) with
    ``return_state``."""
    check_bool("return_state", return_state)
    out, S = _recurrent(_GLA(q, k, v, g, decay, scale, initial_state))
    return (out, S) if return_state else out


def gla_chunked(q, k, v, g=None, *, chunk_size, decay=None, scale=None, initial_state=None, return_state=False):
    """GLA by chunks of ``chunk_size`` steps (the last one may be shorter): within a chunk the
    quadratic form with stable segment products, across chunks the state (module docstring).
    Same result as the recurrent form up to rounding, exactly on Fractions."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    out, S = chunked(_GLA(q, k, v, g, decay, scale, initial_state), chunk_size)
    return (out, S) if return_state else out


def gla_parallel(q, k, v, g=None, *, decay=None, scale=None):
    """o_i = sum_{j<=i} scale (q_i o P_ij) . k_j v_j over the whole sequence, P_ij = prod_{j<s<=i} a_s
    (one chunk of T steps, no state). Memory O(B H K T^2)."""
    p = _GLA(q, k, v, g, decay, scale, None)
    return chunked(p, max(p.q.shape[2], 1))[0]


def gla_step(q_t, k_t, v_t, g_t=None, *, state, decay_t=None, scale=None):
    """One decoding step from ``state`` (B, H, K, V) (None: zeros); q_t, k_t (B, H, K), v_t (B, H, V),
    g_t (B, H, K) or (B, H) (or decay_t). Returns (o_t (B, H, V), state)."""
    q_t, k_t, v_t = (as_real(n, a, exact_ok=True) for n, a in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)))
    check_layout("q_t", q_t, "(B, H, K)", ("B",))
    check_shape("k_t", k_t, q_t.shape, "(B, H, K)", match="q_t")
    check_layout("v_t", v_t, "(B, H, V)", ("B",))
    check_shape("v_t", v_t, q_t.shape[:2] + v_t.shape[2:], "(B, H, V)", match="q_t")
    timed = (None if x is None else as_real(n, x, exact_ok=True)[:, None]
             for n, x in (("g_t", g_t), ("decay_t", decay_t)))
    p = _GLA(q_t[:, None], k_t[:, None], v_t[:, None], *timed, scale, state,
             names=("q_t", "k_t", "v_t", "state", "g_t", "decay_t"))
    out, state = _recurrent(p)
    return out[:, 0], state
