"""Deliberately wrong delta rules: each must be rejected by a claim. Small NumPy functions with the
form's signature; each one bug of the kind delta-rule users reported (fla #285: a sequence != two
chunks carried through the cache)."""

import numpy as np

from seqcheck.reference.delta import delta_rule_chunked


def chunked_without_the_triangular_solve(q, k, v, beta, *, chunk_size, g=None, decay=None, scale=None,
                                         initial_state=None, return_state=False):
    """Each chunk's new values u_i = beta_i (v_i - gamma_i k_i^T S_prev) from the chunk's starting
    state only, as if the delta rule were linear attention inside a chunk (the UT transform
    forgotten): right with chunks of one step."""
    B, T, H, K = q.shape
    scale = K ** -0.5 if scale is None else scale
    gates = np.ones((B, T, H)) if g is None and decay is None else (np.exp(g) if decay is None else np.asarray(decay))
    S = np.zeros((B, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    outs = []
    for start in range(0, T, chunk_size):
        qc, kc, vc = (np.swapaxes(x[:, start:start + chunk_size], 1, 2) for x in (q, k, v))
        bc, ac = (np.swapaxes(x[:, start:start + chunk_size], 1, 2) for x in (beta, gates))  # (B, H, c)
        gamma = np.cumprod(ac, axis=-1)
        P = np.tril(gamma[..., :, None] / np.where(gamma[..., None, :] > 0, gamma[..., None, :], 1.0))
        U = bc[..., None] * (vc - gamma[..., None] * (kc @ S))
        outs.append(np.swapaxes(scale * (gamma[..., None] * (qc @ S) + ((qc @ np.swapaxes(kc, -1, -2)) * P) @ U), 1, 2))
        S = gamma[..., -1, None, None] * S + np.swapaxes(kc * P[..., -1, :, None], -1, -2) @ U
    out = np.concatenate(outs, axis=1) if outs else np.zeros(q.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


def chunked_ignoring_initial_state(q, k, v, beta, *, chunk_size, g=None, decay=None, scale=None, initial_state=None,
                                   return_state=False):
    """Starts every call from zeros: a second chunk carried through the state forgets the first (fla #285)."""
    return delta_rule_chunked(q, k, v, beta, chunk_size=chunk_size, g=g, decay=decay, scale=scale,
                              return_state=return_state)


def step_erasing_without_beta(q_t, k_t, v_t, beta_t, *, state, g_t=None, decay_t=None, scale=None):
    """S_t = a (S - k k^T S) + beta k v^T: beta on the write only, the erase at full strength."""
    B, H, K = q_t.shape
    scale = K ** -0.5 if scale is None else scale
    a = np.ones((B, H)) if g_t is None and decay_t is None else (np.exp(g_t) if decay_t is None else decay_t)
    S = np.zeros((B, H, K, v_t.shape[2])) if state is None else np.asarray(state, dtype=np.float64)
    S = a[..., None, None] * S
    S = S - k_t[..., None] * np.einsum("bhk,bhkv->bhv", k_t, S)[:, :, None, :] \
        + beta_t[..., None, None] * k_t[..., None] * v_t[:, :, None, :]
    return scale * np.einsum("bhk,bhkv->bhv", q_t, S), S


def chunked_in_float64(q, k, v, beta, *, chunk_size, g=None, decay=None, scale=None, initial_state=None,
                       return_state=False):
    """The chunked form evaluated in float64: right to rounding, not exactly."""
    floats = [np.asarray(x, dtype=np.float64) for x in (q, k, v, beta)]
    state = None if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    return delta_rule_chunked(*floats, chunk_size=chunk_size, g=g,
                              decay=None if decay is None else np.asarray(decay, dtype=np.float64),
                              scale=float(scale), initial_state=state, return_state=return_state)


MUTANTS = {
    "delta.delta_rule.chunked == delta.delta_rule.recurrent": chunked_without_the_triangular_solve,
    "delta.delta_rule.continuation": chunked_ignoring_initial_state,
    "delta.delta_rule.step": step_erasing_without_beta,
    "delta.delta_rule.exact": chunked_in_float64,
}
"""The mutant each claim of the family must reject, by claim key."""

