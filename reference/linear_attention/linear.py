"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs", arXiv:2006.16236).

With a feature map phi applied to the last axis of queries and keys, per batch and head:

    out_i = (sum_{j<=i} (phi(q_i) . phi(k_j)) v_j) * 1 / (sum_{j<=i} phi(q_i) . phi(k_j) + eps)

q, k (B, T, H, D), v (B, T, H, M); state (S, z) with S = sum_j phi(k_j) v_j^T (B, H, D, M) and
z = sum_j phi(k_j) (B, H, D). eps is added to the denominator, whose reciprocal multiplies the
numerator, exactly as ``idiap/fast-transformers: fast_transformers/attention/
causal_linear_attention.py`` (``Z = 1/(Q . K.cumsum(1) + eps)``, ``V * Z``),
``attention/linear_attention.py`` (non-causal) and
``recurrent/attention/self_attention/linear_attention.py`` (the recurrent form).
Differences: float64; no key padding mask (``key_lengths``); batch-first (B, T, H, .) layout,
as fast-transformers' (N, L, H, E).

Exact mode: if any of q, k, v is an object array, all become ``fractions.Fraction`` arrays
(floats exactly), eps too, and the result is exact; this needs a rational feature map
("identity" or a callable that keeps Fractions). A zero denominator then raises
ZeroDivisionError; in float64 it gives inf/NaN as IEEE division does. NaN propagates.
"""

from fractions import Fraction

import numpy as np

from .._checks import as_fractions, as_real, check_bool, check_layout, check_shape, finite_real, positive_int


def elu_feature_map(x):
    """phi(x) = elu(x) + 1 = x + 1 for x > 0, exp(x) for x <= 0; float64.

    ``idiap/fast-transformers: fast_transformers/feature_maps/base.py elu_feature_map``
    (``torch.nn.functional.elu(x) + 1``). Difference: exp(x) is evaluated directly, one
    rounding; torch's (exp(x) - 1) + 1 rounds twice (within 1 ulp of 1, and 0 on the CPU
    where exp(x) < eps/2).
    """
    x = as_real("x", x)
    return np.where(x > 0, x + 1, np.exp(np.minimum(x, 0)))


def identity_feature_map(x):
    """phi(x) = x: float64, or the object array unchanged (exact on Fractions).

    Not a positive map, so denominators can vanish; fast-transformers takes any callable as
    ``feature_map``, and this one serves the exact checks of the algebra.
    """
    return as_real("x", x, exact_ok=True)


_FEATURE_MAPS = {"elu": elu_feature_map, "identity": identity_feature_map}


def _prepare(q, k, v, feature_map, eps, initial_state, causal, names=("q", "k", "v", "initial_state")):
    """(phi q, phi k, v, eps, S0, z0), all float64 or all Fraction; ``names``: the arguments' names."""
    nq, nk, nv, state_name = names
    finite_real("eps", eps, ">= 0")
    phi = _FEATURE_MAPS.get(feature_map) if isinstance(feature_map, str) else feature_map
    if not callable(phi):
        raise ValueError(f"feature_map must be 'elu', 'identity' or a callable; got {feature_map!r}")
    q, k, v = (as_real(n, a, exact_ok=True) for n, a in ((nq, q), (nk, k), (nv, v)))
    batch, T, H, D = check_layout(nq, q, "(B, T, H, D)")
    if causal:
        check_shape(nk, k, q.shape, "(B, T, H, D)", match=nq)
    else:  # non-causal: keys of any length S
        check_layout(nk, k, "(B, S, H, D)", ("B", "S"))
        check_shape(nk, k, (batch, k.shape[1], H, D), "(B, S, H, D)", match=nq)
    layout = "(B, T, H, M)" if causal else "(B, S, H, M)"
    check_layout(nv, v, layout, ("B", "T", "S"))
    check_shape(nv, v, k.shape[:3] + v.shape[3:], layout, match=nk)
    if initial_state is None:
        state = (np.zeros((batch, H, D, v.shape[3])), np.zeros((batch, H, D)))
    elif isinstance(initial_state, (tuple, list)) and len(initial_state) == 2:
        state = tuple(as_real(f"{state_name}[{i}]", a, exact_ok=True) for i, a in enumerate(initial_state))
        check_shape(f"{state_name}[0] (S)", state[0], (batch, H, D, v.shape[3]), "(B, H, D, M)", match=f"{nq} and {nv}")
        check_shape(f"{state_name}[1] (z)", state[1], (batch, H, D), "(B, H, D)", match=nq)
    else:
        raise TypeError(f"{state_name} must be a pair (S, z); got {type(initial_state).__name__}")
    arrays = {nq: q, nk: k, nv: v, f"{state_name}[0]": state[0], f"{state_name}[1]": state[1]}
    exact = any(a.dtype == object for a in (q, k, v))
    if exact:
        q, k, v, S0, z0 = (as_fractions(n, a) for n, a in arrays.items())
        eps = Fraction(eps)
    else:
        q, k, v, S0, z0 = (a.astype(np.float64) for a in arrays.values())
        eps = float(eps)
    Q, K = np.asarray(phi(q)), np.asarray(phi(k))
    if exact and (Q.dtype != object or K.dtype != object):
        raise TypeError(f"feature_map {feature_map!r} does not keep Fractions; exact (object) inputs "
                        "need feature_map='identity' or a rational callable")
    if Q.shape != q.shape or K.shape != k.shape:
        raise ValueError(f"feature_map must keep the shape; got {Q.shape} from q {q.shape}")
    return Q, K, v, eps, S0, z0


def _normalise(num, den, eps):
    """num (B, T, H, M) * 1 / (den (B, T, H) + eps), fast-transformers' order of operations."""
    return num * (1 / (den + eps))[..., None]


def linear_attention_parallel(q, k, v, *, feature_map="elu", eps=1e-6, causal=True):
    """Linear attention as a masked quadratic form (the attention matrix made explicit):

        A_ij = phi(q_i) . phi(k_j)   (0 for j > i if causal)
        out_i = (sum_j A_ij v_j) * 1 / (sum_j A_ij + eps)

    Non-causal (``fast_transformers/attention/linear_attention.py LinearAttention``) allows k, v
    of another length S. Same result as fast-transformers' O(T D M) evaluation up to rounding.
    """
    check_bool("causal", causal)
    Q, K, v, eps, _, _ = _prepare(q, k, v, feature_map, eps, None, causal)
    heads_first = lambda a: np.swapaxes(a, 1, 2)  # noqa: E731  (B, T, H, .) -> (B, H, T, .)
    A = heads_first(Q) @ np.swapaxes(heads_first(K), -1, -2)  # (B, H, T, S); matmul keeps Fractions
    if causal:
        A = np.where(np.tril(np.ones(A.shape[-2:], bool)), A, 0)
    return _normalise(heads_first(A @ heads_first(v)), np.moveaxis(A.sum(-1), 1, 2), eps)


def linear_attention_recurrent(q, k, v, *, feature_map="elu", eps=1e-6, initial_state=None,
                               return_state=False):
    """Causal linear attention as an RNN over prefix sums, one step at a time:

        S_t = S_{t-1} + phi(k_t) v_t^T,   z_t = z_{t-1} + phi(k_t)
        out_t = (phi(q_t)^T S_t) * 1 / (phi(q_t) . z_t + eps)

    ``fast_transformers/recurrent/attention/self_attention/linear_attention.py
    RecurrentLinearAttention``. initial_state / the returned state is the pair (S, z).
    """
    check_bool("return_state", return_state)
    out, state = _recurrent(*_prepare(q, k, v, feature_map, eps, initial_state, True))
    return (out, state) if return_state else out


def _recurrent(Q, K, v, eps, S, z):
    """out (B, T, H, M) and the final (S, z) of the recurrence, from prepared arrays."""
    outs = [v[:, :0]]  # T = 0: an empty output
    for t in range(Q.shape[1]):
        z = z + K[:, t]
        S = S + np.einsum("bhd,bhm->bhdm", K[:, t], v[:, t])
        outs.append(_normalise(np.einsum("bhd,bhdm->bhm", Q[:, t], S),
                               np.einsum("bhd,bhd->bh", Q[:, t], z), eps)[:, None])
    return np.concatenate(outs, axis=1), (S, z)


def linear_attention_chunked(q, k, v, *, chunk_size, feature_map="elu", eps=1e-6,
                             initial_state=None, return_state=False):
    """Causal linear attention by chunks of ``chunk_size`` (the last one may be shorter):

        num_i = phi(q_i)^T S_prev + sum_{start<=j<=i} A_ij v_j
        den_i = phi(q_i) . z_prev + sum_{start<=j<=i} A_ij
        S += sum_chunk phi(k_j) v_j^T,   z += sum_chunk phi(k_j)

    out_i = num_i * 1 / (den_i + eps). Same result as the recurrent form up to rounding
    (exactly, on Fractions).
    """
    check_bool("return_state", return_state)
    chunk_size = positive_int("chunk_size", chunk_size)
    Q, K, v, eps, S, z = _prepare(q, k, v, feature_map, eps, initial_state, True)
    outs = [v[:, :0]]  # T = 0: an empty output
    for start in range(0, Q.shape[1], chunk_size):
        Qc, Kc, Vc = (a[:, start:start + chunk_size] for a in (Q, K, v))
        A = np.einsum("bihd,bjhd->bhij", Qc, Kc)
        A = np.where(np.tril(np.ones(A.shape[-2:], bool)), A, 0)
        num = np.einsum("bihd,bhdm->bihm", Qc, S) + np.einsum("bhij,bjhm->bihm", A, Vc)
        den = np.einsum("bihd,bhd->bih", Qc, z) + np.moveaxis(A.sum(-1), 1, 2)
        outs.append(_normalise(num, den, eps))
        S = S + np.einsum("bjhd,bjhm->bhdm", Kc, Vc)
        z = z + Kc.sum(axis=1)
    out = np.concatenate(outs, axis=1)
    return (out, (S, z)) if return_state else out


def linear_attention_step(q_t, k_t, v_t, *, state, feature_map="elu", eps=1e-6):
    """One decoding step from ``state`` = (S, z) (None: zeros); q_t, k_t (B, H, D), v_t (B, H, M).

    Returns (out_t (B, H, M), (S, z)); ``RecurrentLinearAttention.forward`` one call.
    """
    q_t, k_t, v_t = (as_real(n, a, exact_ok=True) for n, a in (("q_t", q_t), ("k_t", k_t), ("v_t", v_t)))
    check_layout("q_t", q_t, "(B, H, D)", ("B",))
    check_shape("k_t", k_t, q_t.shape, "(B, H, D)", match="q_t")
    check_layout("v_t", v_t, "(B, H, M)", ("B",))
    check_shape("v_t", v_t, q_t.shape[:2] + v_t.shape[2:], "(B, H, M)", match="q_t")
    out, state = _recurrent(*_prepare(q_t[:, None], k_t[:, None], v_t[:, None], feature_map, eps, state, True,
                                      names=("q_t", "k_t", "v_t", "state")))
    return out[:, 0], state
