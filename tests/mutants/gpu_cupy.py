"""Deliberately wrong CuPy (array-module) implementations, each one bug a GPU author could write,
each rejected by ``equiv.check`` (or, for the tie rule, by the reference selection itself):

- chunked SSD that passes states between chunks without the chunks' decay;
- chunked SSD whose output write skips the last chunk (caught by the NaN-filled output);
- FFT convolution without zero padding (n = T: a circular convolution that wraps around);
- top-k with the highest-index tie rule (the opposite of the project's);
- TOVA that evicts the highest score (argmax) instead of keeping the top k;
- the MoE dispatch form whose queue positions come from a cumsum over a singleton axis (never drops).

They reuse the real modules' steps and replace one, so the rest is the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from seqcheck.gpu import conv_cupy, eviction_cupy, moe_cupy, ssd_cupy
from seqcheck.gpu.xp import array_module, compute_dtype, nan_filled, to_device, to_host
from seqcheck.reference.eviction import TOVA, simulate_decoding


def _ssd(x, dt, A, B, C, chunk_size, initial_state, return_state, **hooks):
    xp = array_module(None)
    work = compute_dtype(x.dtype)
    x, dt, B, C, A = (to_device(a, xp, work) for a in (x, dt, B, C, A))
    y, state = ssd_cupy.ssd_chunked_device(x, dt, A, B, C, int(chunk_size), to_device(initial_state, xp, work), xp,
                                           **hooks)
    return (to_host(y), to_host(state)) if return_state else to_host(y)


def _pass_without_decay(states, chunk_logs, h0, xp):
    """Step 3 with every chunk decay taken as 1: the states are summed, not decayed."""
    return ssd_cupy.pass_chunk_states(states, xp.zeros_like(chunk_logs), h0, xp)


def ssd_without_inter_chunk_decay(x, dt, A, B, C, *, chunk_size, initial_state=None, return_state=False):
    """Chunked SSD whose inter-chunk recurrence forgets the decay of the chunks in between."""
    return _ssd(x, dt, A, B, C, chunk_size, initial_state, return_state, pass_states=_pass_without_decay)


def _write_all_but_last(out, Y):
    out[:, :-1] = Y[:, :-1]


def ssd_last_chunk_unwritten(x, dt, A, B, C, *, chunk_size, initial_state=None, return_state=False):
    """Chunked SSD whose write loop stops one chunk early (``range(n - 1)``): the last chunk's
    outputs stay as allocated (NaN)."""
    return _ssd(x, dt, A, B, C, chunk_size, initial_state, return_state, write=_write_all_but_last)


def fft_circular(u, Abar, Bbar, C, D=None):
    """The LTI FFT convolution with n = T instead of T + L: the kernel's tail wraps around."""
    xp = array_module(None)
    work = compute_dtype(u.dtype)
    u, D = to_device(u, xp, work), to_device(D, xp, work)
    K = conv_cupy.krylov_kernel(*(to_device(a, xp, np.float64) for a in (Abar, Bbar, C)), u.shape[1], xp).astype(work)
    T = u.shape[1]
    out = nan_filled(xp, u.shape, u.dtype)
    out[...] = xp.fft.irfft(xp.fft.rfft(u, n=T, axis=1) * xp.fft.rfft(K, n=T, axis=1).T[None], n=T, axis=1)
    if D is not None:
        out += D * u
    return to_host(out)


def topk_highest_index(scores, k):
    """Top k with ties to the highest index (a descending sort of (score, index) pairs)."""
    scores = np.asarray(scores)
    n = scores.shape[-1]
    order = np.argsort(-scores[..., ::-1], axis=-1, kind="stable")[..., :k]
    return np.sort(n - 1 - order, axis=-1)


@dataclass(frozen=True)
class _ArgmaxTOVA(TOVA):
    name: ClassVar[str] = "tova"

    def select(self, state, t, cand, budget, prefill):
        xp = array_module(None)
        n = cand.shape[-1]
        if n <= budget:
            return np.ones(cand.shape, dtype=bool), np.full(cand.shape[:-1], np.inf)
        scores = eviction_cupy.tova_scores(to_device(state, xp), to_device(cand, xp), xp)
        keep, margin = eviction_cupy.keep_top(-scores, budget, xp)  # keeps the lowest: evicts the argmax
        return to_host(keep), to_host(margin)


def tova_argmax_eviction(q, k, v, *, budget, prefill_len=0, rope=None, rope_base=10000.0, position_offset=0,
                         scale=None):
    """TOVA decoding that evicts the most attended token instead of the least."""
    res = simulate_decoding(q, k, v, policy=_ArgmaxTOVA(), budget=budget, prefill_len=prefill_len, rope=rope,
                            rope_base=rope_base, position_offset=position_offset, scale=scale, return_rows=False)
    return res.outputs, res.kept.astype(np.float64)


def _locations_over_a_singleton_axis(index, capacity, E, xp):
    """Step 1 with the cumulative count over a singleton axis (HF transformers PR #48421): every
    queue position 0, so no slot is ever dropped."""
    order, _ = moe_cupy.locate(index, None, E, xp)
    return order, order >= 0


def moe_capacity_never_enforced(x, expert_index, gate, w_gate, w_up, w_down, *, capacity=None):
    """The dispatch form whose capacity never drops a token."""
    xp = array_module(None)
    work = compute_dtype(x.dtype)
    args = [to_device(a, xp, work) for a in (x, gate, w_gate, w_up, w_down)]
    index = to_device(expert_index, xp).astype(xp.int64)
    y = moe_cupy.moe_dispatch_device(args[0], index, *args[1:], capacity, xp,
                                     locate_slots=_locations_over_a_singleton_axis)
    return to_host(y.astype(x.dtype))
