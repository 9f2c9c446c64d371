"""Deliberately wrong wkv7 implementations: each must be rejected by a claim. Small NumPy functions
with the form's signature; each one bug of the kind RWKV-7 kernels are prone to (the rank-one term
read from the decayed state, as the gated delta rule orders it; a and b swapped between RWKV-LM's
and fla's naming; a second call forgetting the first's state; a chunk kernel that forgets the
triangular solve)."""

import numpy as np

from seqcheck.reference.rwkv7 import wkv7_chunked


def _decays(w, w_kind):
    w = np.asarray(w, dtype=np.float64)
    return {"log": np.exp(w), "decay": w, "loglog": np.exp(-np.exp(w))}[w_kind]


def _state(initial_state, shape):
    return np.zeros(shape) if initial_state is None else np.asarray(initial_state, dtype=np.float64)


def chunked_without_the_triangular_solve(r, w, k, v, a, b, *, chunk_size, w_kind="log", scale=1.0,
                                         initial_state=None, return_state=False):
    """Each chunk's reads u_i = a_i^T S_{i-1} from the chunk's starting state and the chunk's
    writes k_j v_j^T only, the earlier reads' own rank-one writes left out (the UT transform
    forgotten): right with chunks of one step."""
    B, T, H, K = r.shape
    d = _decays(w, w_kind)
    S = _state(initial_state, (B, H, K, v.shape[3]))
    outs = []
    for start in range(0, T, chunk_size):
        parts = [S, np.zeros_like(S), np.zeros_like(S)]  # S_prev decayed, the writes k v^T, the rank-one writes
        for t in range(start, min(start + chunk_size, T)):
            u = np.einsum("bhk,bhkv->bhv", a[:, t], parts[0] + parts[1])  # the rank-one writes left out
            parts = [d[:, t, :, :, None] * part for part in parts]
            parts[1] = parts[1] + k[:, t, :, :, None] * v[:, t, :, None, :]
            parts[2] = parts[2] + b[:, t, :, :, None] * u[:, :, None, :]
            outs.append(scale * np.einsum("bhk,bhkv->bhv", r[:, t], sum(parts)))
        S = sum(parts)
    out = np.stack(outs, axis=1) if outs else np.zeros(r.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


def chunked_ignoring_initial_state(r, w, k, v, a, b, *, chunk_size, w_kind="log", scale=1.0, initial_state=None,
                                   return_state=False):
    """Starts every call from zeros: a second chunk carried through the state forgets the first."""
    return wkv7_chunked(r, w, k, v, a, b, chunk_size=chunk_size, w_kind=w_kind, scale=scale,
                        return_state=return_state)


def step_with_a_and_b_swapped(r_t, w_t, k_t, v_t, a_t, b_t, *, state, w_kind="log", scale=1.0):
    """S_t = d o S + a (b^T S) + k v^T: the rank-one term's two vectors exchanged."""
    B, H, K = r_t.shape
    S = _state(state, (B, H, K, v_t.shape[2]))
    S = _decays(w_t, w_kind)[..., None] * S + a_t[..., None] * np.einsum("bhk,bhkv->bhv", b_t, S)[:, :, None, :] \
        + k_t[..., None] * v_t[:, :, None, :]
    return scale * np.einsum("bhk,bhkv->bhv", r_t, S), S


def chunked_in_float64(r, w, k, v, a, b, *, chunk_size, w_kind="log", scale=1.0, initial_state=None,
                       return_state=False):
    """The chunked form evaluated in float64: right to rounding, not exactly."""
    floats = [np.asarray(x, dtype=np.float64) for x in (r, w, k, v, a, b)]
    state = None if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    return wkv7_chunked(*floats, chunk_size=chunk_size, w_kind=w_kind, scale=float(scale), initial_state=state,
                        return_state=return_state)


def recurrent_decaying_before_the_read(r, w, k, v, a, b, *, w_kind="log", scale=1.0, initial_state=None,
                                       return_state=False):
    """S_t = d o S_{t-1} + b (a^T (d o S_{t-1})) + k v^T: the state decayed before the rank-one
    term reads it (the gated delta rule's order), so the gate counts twice in the erase."""
    B, T, H, K = r.shape
    d = _decays(w, w_kind)
    S = _state(initial_state, (B, H, K, v.shape[3]))
    outs = []
    for t in range(T):
        S = d[:, t, :, :, None] * S
        S = S + b[:, t, :, :, None] * np.einsum("bhk,bhkv->bhv", a[:, t], S)[:, :, None, :] \
            + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(scale * np.einsum("bhk,bhkv->bhv", r[:, t], S))
    out = np.stack(outs, axis=1) if outs else np.zeros(r.shape[:3] + v.shape[3:])
    return (out, S) if return_state else out


MUTANTS = {
    "rwkv.wkv7.chunked == rwkv.wkv7.recurrent": chunked_without_the_triangular_solve,
    "rwkv.wkv7.continuation": chunked_ignoring_initial_state,
    "rwkv.wkv7.step": step_with_a_and_b_swapped,
    "rwkv.wkv7.exact": chunked_in_float64,
    "rwkv.wkv7.delta_rule": recurrent_decaying_before_the_read,
}
"""The mutant each claim of the family must reject, by claim key."""
