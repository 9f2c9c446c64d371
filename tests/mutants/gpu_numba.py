"""Deliberately wrong Numba CUDA kernels: each must be rejected by ``equiv.check``.

Each mutant is the project's own kernel module (``seqcheck.gpu.flash_numba``, dense and block-sparse,
``seqcheck.gpu.flash_bwd_numba``, ``seqcheck.gpu.scan_numba``, ``seqcheck.gpu.gla_numba``,
``seqcheck.gpu.wkv_numba``) with one edit to its source, the way a kernel author's bug looks,
compiled afresh (so it runs on a GPU or under the simulator like the original). An edit whose
text no longer occurs exactly once in the module fails loudly: the mutants follow the kernels.
"""

from __future__ import annotations

import functools

from mutants import mutate

FLASH = "seqcheck.gpu.flash_numba"
FLASH_BWD = "seqcheck.gpu.flash_bwd_numba"
SCAN = "seqcheck.gpu.scan_numba"
GLA = "seqcheck.gpu.gla_numba"
WKV = "seqcheck.gpu.wkv_numba"


@functools.cache
def _mutant(module_name: str, function: str, name: str, edits: tuple):
    return mutate(module_name, name, list(edits))[function]


def _flash(name, *edits):
    def candidate(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None, return_lse=False,
                  block_q=16, block_k=16, alibi_slopes=None, softcap=None):
        return _mutant(FLASH, "flash_attention", name, edits)(
            q, k, v, scale=scale, causal=causal, window=window, key_padding_mask=key_padding_mask,
            return_lse=return_lse, block_q=block_q, block_k=block_k, alibi_slopes=alibi_slopes, softcap=softcap)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def _block_sparse(name, *edits):
    def candidate(q, k, v, block_mask, *, block_size, token_mask=None, scale=None, return_lse=False):
        return _mutant(FLASH, "block_sparse_attention", name, edits)(
            q, k, v, block_mask, block_size=block_size, token_mask=token_mask, scale=scale, return_lse=return_lse)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def _flash_bwd(name, *edits):
    def candidate(q, k, v, *, cotangent, lse_cotangent=None, scale=None, causal=False, window=None,
                  key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False, block_q=16, block_k=16):
        return _mutant(FLASH_BWD, "flash_attention_vjp", name, edits)(
            q, k, v, cotangent=cotangent, lse_cotangent=lse_cotangent, scale=scale, causal=causal, window=window,
            key_padding_mask=key_padding_mask, alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse,
            block_q=block_q, block_k=block_k)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def _scan(name, *edits):
    def candidate(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False,
                  initial_state=None, return_state=False):
        return _mutant(SCAN, "selective_scan", name, edits)(
            u, delta, A, B, C, D, z, delta_bias=delta_bias, delta_softplus=delta_softplus,
            initial_state=initial_state, return_state=return_state)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def _gla(name, *edits):
    def candidate(q, k, v, g, *, chunk_size, scale=None, initial_state=None, return_state=False):
        return _mutant(GLA, "gla_chunked", name, edits)(
            q, k, v, g, chunk_size=chunk_size, scale=scale, initial_state=initial_state, return_state=return_state)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


def _wkv(name, *edits):
    def candidate(k, v, w, u, *, initial_state=None, return_state=False):
        return _mutant(WKV, "wkv4_recurrent", name, edits)(k, v, w, u, initial_state=initial_state,
                                                           return_state=return_state)

    candidate.__name__ = candidate.__qualname__ = name
    return candidate


flash_without_rescale = _flash(
    "flash_without_rescale",
    # the running output is not rescaled by exp(m_old - m_new) when the row max grows
    ("                    a = alpha * acc[jj]\n", "                    a = acc[jj]\n"))

flash_causal_off_by_one = _flash(
    "flash_causal_off_by_one",
    # causal lets each query see one key past its diagonal
    ("    if causal:\n        right = 0\n", "    if causal:\n        right = 1\n"))

flash_last_query_block_unwritten = _flash(
    "flash_last_query_block_unwritten",
    # the grid rounds the number of query blocks down: a ragged last block is never launched
    # (its rows keep the NaN the outputs were filled with)
    ("    return (-(-Tq // block_q), H, B), ", "    return (Tq // block_q, H, B), "))

flash_gqa_head_modulo = _flash(
    "flash_gqa_head_modulo",
    # query head h reads kv head h % Hkv instead of h // (H / Hkv)
    ("        kv_head = h // (H // Hkv)\n", "        kv_head = h % Hkv\n"))

block_sparse_one_tile_short = _block_sparse(
    "block_sparse_one_tile_short",
    # the visit list's length (FlexAttention's kv_num_blocks) is one short: each query tile skips
    # the last key tile its block mask sets (the ragged last tile, where T is not a multiple of b,
    # is the one most often lost: pytorch/pytorch #141126)
    ("    count = visit.sum(axis=1).astype(np.int32)\n",
     "    count = np.maximum(visit.sum(axis=1) - 1, 0).astype(np.int32)\n"))

block_sparse_tiles_as_full = _block_sparse(
    "block_sparse_tiles_as_full",
    # a visited tile is taken as fully visible: the token mask is not applied inside it (a partial
    # block treated as a full one, FlexAttention's full_kv_num_blocks)
    ("                        and (not TOKEN_MASKED or token_valid[i, j] != 0)):", "                        ):"))

flash_bwd_dq_without_scale = _flash_bwd(
    "flash_bwd_dq_without_scale",
    # dQ accumulates dS K without the softmax scale (dK keeps it: only dq is off)
    ("                    dq_acc[jj] += scale * a\n", "                    dq_acc[jj] += a\n"))

flash_bwd_causal_blind = _flash_bwd(
    "flash_bwd_causal_blind",
    # the backward's masks ignore causal (the forward, called with it, is right): triton-lang/triton #4541
    ("    right = 0 if causal else unbounded if right is None else int(right)\n",
     "    right = unbounded if right is None else int(right)\n"))

flash_bwd_first_query_head_only = _flash_bwd(
    "flash_bwd_first_query_head_only",
    # GQA: a kv head's dK, dV take the first of its query heads only, not the sum over the group
    ("        for hq in range(hk * group, hk * group + group):\n", "        for hq in range(hk * group, hk * group + 1):\n"))

scan_state_not_carried = _scan(
    "scan_state_not_carried",
    # every chunk starts again from the initial state instead of the previous chunk's last one
    ("            steps = min(CHUNK, T - t0)\n",
     "            steps = min(CHUNK, T - t0)\n"
     "            if active:\n"
     "                for n in range(N):\n"
     "                    x[n] = h0[batch, d, n] if has_h0 else float32(0.0)\n"))

scan_ragged_chunk_dropped = _scan(
    "scan_ragged_chunk_dropped",
    # the time loop covers whole chunks only: the last T % chunk steps are never written
    ("        for t0 in range(0, T, CHUNK):\n", "        for t0 in range(0, T - CHUNK + 1, CHUNK):\n"))

gla_state_not_decayed = _gla(
    "gla_state_not_decayed",
    # the carried state is not decayed across the chunk: S = S_prev + sum_j (k_j o P_last,j)^T v_j
    ("                acc = last_decay[kk] * s_tile[kk, vv]\n", "                acc = s_tile[kk, vv]\n"))

gla_cross_decay_once_per_chunk = _gla(
    "gla_cross_decay_once_per_chunk",
    # the state's contribution to every row of a chunk is decayed to the chunk's end (Q_last), not
    # to each row's step (Q_i)
    ("                    q_tile[s, kk] *= math.exp(b_tile[s, kk])\n",
     "                    q_tile[s, kk] *= math.exp(b_tile[last, kk])\n"))

gla_ragged_chunk_dropped = _gla(
    "gla_ragged_chunk_dropped",
    # the time loop covers whole chunks only: the last T % chunk steps are never written
    ("        for t0 in range(0, T, chunk):\n", "        for t0 in range(0, T - chunk + 1, chunk):\n"))

wkv_without_running_max = _wkv(
    "wkv_without_running_max",
    # no running maximum exponent: p and q are the plain sums e^{k_i} v_i, which overflow in
    # float32 once k passes about 88 (inf / inf = NaN where the reference is finite)
    ("                    top = max(o, uk)\n", "                    top = float32(0.0)\n"),
    ("                    top = max(ow, kt)\n", "                    top = float32(0.0)\n"))

wkv_state_not_carried = _wkv(
    "wkv_state_not_carried",
    # every chunk starts again from an empty state instead of the previous chunk's (p, q, o)
    ("            steps = min(CHUNK, T - t0)\n",
     "            steps = min(CHUNK, T - t0)\n"
     "            p = float32(0.0)\n"
     "            q = float32(0.0)\n"
     "            o = float32(NEG_INF)\n"))

FLASH_MUTANTS = [flash_without_rescale, flash_causal_off_by_one, flash_last_query_block_unwritten,
                 flash_gqa_head_modulo]
BLOCK_SPARSE_MUTANTS = [block_sparse_one_tile_short, block_sparse_tiles_as_full]
FLASH_BWD_MUTANTS = [flash_bwd_dq_without_scale, flash_bwd_causal_blind, flash_bwd_first_query_head_only]
SCAN_MUTANTS = [scan_state_not_carried, scan_ragged_chunk_dropped]
GLA_MUTANTS = [gla_state_not_decayed, gla_cross_decay_once_per_chunk, gla_ragged_chunk_dropped]
WKV_MUTANTS = [wkv_without_running_max, wkv_state_not_carried]
