"""Deliberately wrong linear attentions: each must be rejected by a claim.

Small NumPy functions with the form's signature (the state as seqcheck's adapter passes it:
[S | z], (B, H, D, M + 1)); only what each mutant needs is implemented.
"""

import numpy as np

from seqcheck.equiv.families.linear import augmented_state, linear_attention_chunked, state_pair
from seqcheck.reference.linear_attention import elu_feature_map, identity_feature_map, linear_attention_step

PHI = {"elu": elu_feature_map, "identity": identity_feature_map}


def parallel_eps_per_key(q, k, v, *, feature_map="elu", eps=1e-6, causal=True):
    """The masked quadratic form with eps added to every attention weight (inside the sum over
    keys) instead of once to the denominator."""
    Q, K = PHI[feature_map](q), PHI[feature_map](k)
    T = Q.shape[1]
    A = np.einsum("bihd,bjhd->bhij", Q, K) + eps
    A = np.where(np.tril(np.ones((T, T), bool)), A, 0)
    return np.einsum("bhij,bjhm->bihm", A, v) / np.moveaxis(A.sum(-1), 1, 2)[..., None]


def _chunks(q, k, v, *, chunk_size, feature_map, eps, initial_state, return_state, use_eps=True,
            carry_z=True):
    Q, K = PHI[feature_map](q), PHI[feature_map](k)
    batch, T, H, D = Q.shape
    if initial_state is None:
        S, z = np.zeros((batch, H, D, v.shape[3])), np.zeros((batch, H, D))
    else:
        S, z = state_pair(initial_state)
        z = z if carry_z else np.zeros_like(z)
    outs = []
    for start in range(0, T, chunk_size):
        Qc, Kc, Vc = (a[:, start:start + chunk_size] for a in (Q, K, v))
        A = np.einsum("bihd,bjhd->bhij", Qc, Kc)
        A = np.where(np.tril(np.ones(A.shape[-2:], bool)), A, 0)
        num = np.einsum("bihd,bhdm->bihm", Qc, S) + np.einsum("bhij,bjhm->bihm", A, Vc)
        den = np.einsum("bihd,bhd->bih", Qc, z) + np.moveaxis(A.sum(-1), 1, 2)
        outs.append(num / (den + eps if use_eps else den)[..., None])
        S = S + np.einsum("bjhd,bjhm->bhdm", Kc, Vc)
        z = z + Kc.sum(axis=1)
    out = np.concatenate(outs, axis=1)
    return (out, augmented_state(S, z)) if return_state else out


def chunked_without_eps(q, k, v, *, chunk_size, feature_map="elu", eps=1e-6, initial_state=None,
                        return_state=False):
    """The chunked form whose normaliser forgets eps: num / den."""
    return _chunks(q, k, v, chunk_size=chunk_size, feature_map=feature_map, eps=eps, initial_state=initial_state,
                   return_state=return_state, use_eps=False)


def chunked_ignoring_initial_z(q, k, v, *, chunk_size, feature_map="elu", eps=1e-6, initial_state=None,
                               return_state=False):
    """The chunked form that carries S from the initial state but restarts the normaliser z at 0."""
    return _chunks(q, k, v, chunk_size=chunk_size, feature_map=feature_map, eps=eps, initial_state=initial_state,
                   return_state=return_state, carry_z=False)


def step_normalising_before_the_update(q_t, k_t, v_t, *, state, feature_map="elu", eps=1e-6):
    """A decoding step whose denominator uses z before adding phi(k_t) (the numerator after)."""
    phi = PHI[feature_map]
    out, (S, z) = linear_attention_step(q_t, k_t, v_t, state=state, feature_map=feature_map, eps=eps)
    Q = phi(q_t)
    z_before = z - phi(k_t)
    num = np.einsum("bhd,bhdm->bhm", Q, S)
    return num / (np.einsum("bhd,bhd->bh", Q, z_before) + eps)[..., None], (S, z)


def chunked_in_float64(q, k, v, *, chunk_size, feature_map="elu", eps=1e-6, initial_state=None, return_state=False):
    """Rational inputs rounded to float64 first: right to rounding, not exactly."""
    def to_float(a):
        return None if a is None else np.asarray(a, dtype=np.float64)

    return linear_attention_chunked(to_float(q), to_float(k), to_float(v), chunk_size=chunk_size,
                                    feature_map=feature_map, eps=eps, initial_state=to_float(initial_state),
                                    return_state=return_state)


MUTANTS = {
    "linear.attention.parallel == linear.attention.recurrent": parallel_eps_per_key,
    "linear.attention.chunked == linear.attention.recurrent": chunked_without_eps,
    "linear.attention.continuation": chunked_ignoring_initial_z,
    "linear.attention.step": step_normalising_before_the_update,
    "linear.attention.exact": chunked_in_float64,
}
"""The mutant each claim of the family must reject, by claim key."""
