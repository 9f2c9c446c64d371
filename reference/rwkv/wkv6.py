"""RWKV-5 and RWKV-6 time mixing ("Eagle" and "Finch", Peng et al. 2024, arXiv:2404.05892), per
head with a matrix state S (K x V):

    o_t = r_t (diag(u) k_t^T v_t + S_{t-1}),   S_t = diag(w_t) S_{t-1} + k_t^T v_t     (S_{-1} = S_0)

r, k (B, T, H, K), v (B, T, H, V), the bonus u (H, K) or (H,), state S (B, H, K, V). The decay
w_t = exp(g_t) in [0, 1] from the log-decay g <= 0: RWKV-6 data-dependent, g (B, T, H, K) (the
model's g = -exp(time_decay + lora(x))), or (B, T, H) one per head; RWKV-5 constant in time, g
(H, K) (v5.2) or (H,) (v5.0). Unlike GLA, o_t reads the state *before* step t's decay and
update, and the current token enters through the bonus u instead.

The chunked form, per chunk with P_ij = prod_{j<s<i} w_s (j < i, per key channel) and
Q_i = prod_{start<=s<i} w_s:

    o_i = (r_i o Q_i) S_prev + sum_{j<i} (r_i o P_ij) . k_j v_j + (r_i o u) . k_i v_i
    S   = diag(Q_last w_last) S_prev + sum_j (k_j o prod_{j<s<=last} w_s)^T v_j

and the parallel form is one chunk of T steps; the products are formed as GLA's chunked form
forms them (``reference.gla``: sub-chunks, running sums of g, never a difference), read one step
earlier. ``wkv_group_norm`` is the per-head GroupNorm the model applies to o.

Matches the ``rwkv`` pip package (BlinkDL/ChatRWKV ``rwkv/model.py``: ``att_seq_v5`` (its
parallel form with w^(T-1-i) powers), ``att_seq_v5_2``, ``att_seq_v6_0`` (the loop)) and
``BlinkDL/RWKV-LM: RWKV-v6/cuda/wkv6_cuda.cu``. Differences: float64; the model's w = exp(g) is
given by its log g (``decay=`` takes w itself); any chunk size; batch-first (B, T, H, .) where
the package is (T, H*N) per sequence.

Exact mode: ``decay=`` rational w in [0, 1]; if any input is an object array everything becomes
``fractions.Fraction`` and the result is exact.
"""

import numpy as np

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, finite_real, positive_int
from ..gla.gla import _GLA, _heads_first, chunked

NAMES = ("r", "k", "v", "initial_state", "g", "decay")


def _constant_in_time(name, rates, shape):
    """RWKV-5's decays (H,) or (H, K), broadcast to (B, T, H, K); anything else unchanged."""
    if rates is None:
        return None
    rates = np.asarray(rates)
    if rates.shape in (shape[2:3], shape[2:]):
        return np.broadcast_to(rates if rates.ndim == 2 else rates[:, None], shape)
    return rates


def _prepare(r, k, v, g, decay, u, initial_state, names=NAMES):
    nr, nu = names[0], "u"
    r = as_real(nr, r, exact_ok=True)
    check_layout(nr, r, "(B, T, H, K)")
    u = as_real(nu, u, exact_ok=True)
    H, K = r.shape[2:]
    if u.shape == (H,):
        u = np.broadcast_to(u[:, None], (H, K))
    check_shape(nu, u, (H, K), "(H, K) or (H,)", match=nr)
    if u.dtype == object:
        r = r.astype(object)  # exact mode for every input
    g, decay = (_constant_in_time(n, x, r.shape) for n, x in ((names[4], g), (names[5], decay)))
    p = _GLA(r, k, v, g, decay, 1, initial_state, names=names)
    p.u = as_fractions(nu, u) if p.exact else u.astype(np.float64)
    return p


def _bonus(p, start, stop):
    """(r_i o u) . k_i v_i for steps [start, stop), heads first (B, H, c, V)."""
    weights = np.einsum("bhik,hk,bhik->bhi", p.q[:, :, start:stop], p.u, p.k[:, :, start:stop])
    return weights[..., None] * p.v[:, :, start:stop]


def _recurrent(p):
    S, outs = p.S0, [_heads_first(p.v[:, :, :0])]
    for t in range(p.q.shape[2]):
        out = np.einsum("bhk,bhkv->bhv", p.q[:, :, t], S) + _bonus(p, t, t + 1)[:, :, 0]
        outs.append(out[:, None])
        S = p.steps(t)[..., None] * S + p.k[:, :, t, :, None] * p.v[:, :, t, None, :]
    return np.concatenate(outs, axis=1), S


def _chunked(p, chunk_size):
    """GLA's chunks with the read before each step's decay (j < i), plus the bonus."""
    out, S = chunked(p, chunk_size, strict=True)
    return out + _heads_first(_bonus(p, 0, p.q.shape[2])), S


def wkv6_recurrent(r, k, v, g=None, *, u, decay=None, initial_state=None, return_state=False):
    """o_t = r_t (diag(u) k_t^T v_t + S_{t-1}), S_t = diag(w_t) S_{t-1} + k_t^T v_t, one step at a
    time (the package's ``att_seq_v6_0`` loop). Returns o (B, T, H, V), and the final state
    (B, H, K, V) with ``return_state``."""
    check_bool("return_state", return_state)
    out, S = _recurrent(_prepare(r, k, v, g, decay, u, initial_state))
    return (out, S) if return_state else out


def wkv6_chunked(r, k, v, g=None, *, u, chunk_size, decay=None, initial_state=None, return_state=False):
    """RWKV-5/6 by chunks of ``chunk_size`` steps (the last may be shorter): within a chunk the
    quadratic form over earlier tokens with stable segment products plus the bonus, across chunks
    the state (module docstring). Exactly the recurrence on Fractions."""
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    out, S = _chunked(_prepare(r, k, v, g, decay, u, initial_state), chunk_size)
    return (out, S) if return_state else out


def wkv6_parallel(r, k, v, g=None, *, u, decay=None):
    """o_i = sum_{j<i} (r_i o prod_{j<s<i} w_s) . k_j v_j + (r_i o u) . k_i v_i over the whole
    sequence (one chunk of T steps, no state; RWKV-5's ``att_seq_v5``). Memory O(B H K T^2)."""
    p = _prepare(r, k, v, g, decay, u, None)
    return _chunked(p, max(p.q.shape[2], 1))[0]


def wkv6_step(r_t, k_t, v_t, g_t=None, *, u, state, decay_t=None):
    """One decoding step from ``state`` (B, H, K, V) (None: zeros); r_t, k_t (B, H, K), v_t
    (B, H, V), g_t (B, H, K) or (B, H) (or decay_t), u (H, K) or (H,). Returns (o_t (B, H, V),
    the state after the step)."""
    r_t, k_t, v_t = (as_real(n, a, exact_ok=True) for n, a in (("r_t", r_t), ("k_t", k_t), ("v_t", v_t)))
    check_layout("r_t", r_t, "(B, H, K)", ("B",))
    check_shape("k_t", k_t, r_t.shape, "(B, H, K)", match="r_t")
    check_layout("v_t", v_t, "(B, H, V)", ("B",))
    check_shape("v_t", v_t, r_t.shape[:2] + v_t.shape[2:], "(B, H, V)", match="r_t")
    timed = (None if x is None else as_real(n, x, exact_ok=True)[:, None]
             for n, x in (("g_t", g_t), ("decay_t", decay_t)))
    p = _prepare(r_t[:, None], k_t[:, None], v_t[:, None], *timed, u, state,
                 names=("r_t", "k_t", "v_t", "state", "g_t", "decay_t"))
    out, state = _recurrent(p)
    return out[:, 0], state


def wkv_group_norm(o, *, weight, bias, eps=64e-5):
    """The model's output norm: each head's V values normalised by their mean and variance, then
    scaled per channel, o (B, T, H, V), weight and bias (H * V,) (``F.group_norm(out,
    num_groups=H, weight, bias, eps=64e-5)`` on (T, H * V))."""
    o = as_real("o", o)
    B, T, H, V = check_layout("o", o, "(B, T, H, V)", ("B", "T"))
    weight, bias = as_real("weight", weight), as_real("bias", bias)
    check_shape("weight", weight, (H * V,), "(H * V,)", match="o")
    check_shape("bias", bias, (H * V,), "(H * V,)", match="o")
    eps = finite_real("eps", eps)
    if eps < 0:
        raise ValueError(f"eps must be >= 0; got {eps}")
    mean = o.mean(axis=-1, keepdims=True)
    variance = ((o - mean) ** 2).mean(axis=-1, keepdims=True)
    normed = (o - mean) / np.sqrt(variance + eps)
    return normed * weight.reshape(H, V) + bias.reshape(H, V)
