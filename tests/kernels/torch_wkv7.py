"""RWKV-7's wkv7 in torch, the recurrence (autograd differentiates it), and a NumPy backward
with an off-by-one state.

- ``torch_wkv7``: correct, the three forms of w.
- ``vjp_reading_the_state_after_the_step``: the rank-one term's gradients (da_t = S du_t,
  db_t = G_t (a_t^T S)) read the state after step t, S_t, where the forward read S_{t-1}: a
  backward indexing its saved states one step late (hanbt/learn_dl #29: ``state_list[k+1]`` for
  ``state_list[k]``).
"""

import numpy as np
import torch

from seqcheck.reference.rwkv7 import wkv7_vjp


def _decay(w, w_kind):
    """d from w. For "loglog", w is clamped at 7 first: exp(-exp(7)) already underflows to 0, so the
    value is unchanged, and the slope -exp(w) d, 0 * inf at w = inf (a reset), becomes 0."""
    return torch.exp(w) if w_kind == "log" else w if w_kind == "decay" else torch.exp(-torch.exp(w.clamp(max=7)))


def torch_wkv7(r, w, k, v, a, b, *, w_kind="log", scale=1.0, initial_state=None, return_state=False):
    batch, T, H, K = r.shape
    S = r.new_zeros(batch, H, K, v.shape[3]) if initial_state is None else initial_state
    d, outs = _decay(w, w_kind), []
    for t in range(T):
        u = torch.einsum("bhk,bhkv->bhv", a[:, t], S)
        S = d[:, t, :, :, None] * S + b[:, t, :, :, None] * u[:, :, None, :] + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(scale * torch.einsum("bhk,bhkv->bhv", r[:, t], S))
    out = torch.stack(outs, dim=1) if outs else v.clone()
    return (out, S) if return_state else out


def vjp_reading_the_state_after_the_step(r, w, k, v, a, b, *, cotangent, state_cotangent=None, w_kind="log",
                                         scale=1.0, initial_state=None, return_state=False):
    """(``return_state``, the form's flag, only says whether ``state_cotangent`` is drawn.)"""
    right = wkv7_vjp(r, w, k, v, a, b, cotangent=cotangent, state_cotangent=state_cotangent, w_kind=w_kind,
                     scale=scale, initial_state=initial_state)
    r, w, k, v, a, b, dO = (np.asarray(x, dtype=np.float64) for x in (r, w, k, v, a, b, cotangent))
    batch, T, H, K = r.shape
    d = _decay(torch.tensor(w), w_kind).numpy()
    S = np.zeros((batch, H, K, v.shape[3])) if initial_state is None else np.asarray(initial_state, dtype=np.float64)
    states = [S]
    for t in range(T):
        S = d[:, t, ..., None] * S + b[:, t, ..., None] * np.einsum("bhk,bhkv->bhv", a[:, t], S)[:, :, None] \
            + k[:, t, ..., None] * v[:, t, :, None]
        states.append(S)
    G = np.zeros_like(S) if state_cotangent is None else np.asarray(state_cotangent, dtype=np.float64)
    da, db = np.zeros_like(a), np.zeros_like(b)
    for t in reversed(range(T)):
        G = G + scale * r[:, t, ..., None] * dO[:, t, :, None]
        late = states[t + 1]  # the forward read states[t]
        du = np.einsum("bhkv,bhk->bhv", G, b[:, t])
        da[:, t] = np.einsum("bhkv,bhv->bhk", late, du)
        db[:, t] = np.einsum("bhkv,bhv->bhk", G, np.einsum("bhk,bhkv->bhv", a[:, t], late))
        G = d[:, t, ..., None] * G + a[:, t, ..., None] * du[:, :, None]
    return {**right, "a": da, "b": db}
