"""Decoding with a KV cache of bounded size, one layer, token by token, in float64.

The first ``prefill_len`` = P tokens are one prefill: causal attention over the prompt, then the
policy reduces the cache once. Every later token t is one decoding step:

    C_t   = kept_{t-1} ∪ {t}                                   (per batch element and group)
    s_hj  = scale * <q_t, k_j>                                  j in C_t of head h's group
    P_h   = softmax_j(s_h),   out_t,h = sum_j P_hj v_j          (over the cache and the new token)
    kept_t = policy's selection from C_t, after the output      (policies.py)

GQA as ``softmax_attention``: query head h reads kv head h // (H / Hkv) and the policy's group
h // (H / G). RoPE (``rope_matrix``, "half" pairing, ``rope_base``) places q and k at:

- ``rope=None``: no rotation;
- ``"post"``: absolute positions ``position_offset + t``: keys are cached already rotated;
- ``"pre_shift"``: keys are cached unrotated and rotated at every step to their slot in the
  cache, ``position_offset + i`` for the i-th cached key in index order, the query at the new
  token's slot ``position_offset + |C_t| - 1``, so the output depends only on the cache's
  contents (StreamingLLM's position shift, ``mit-han-lab/streaming-llm:
  streaming_llm/pos_shift/modify_llama.py``: queries at position_ids = past length, keys at
  arange(kv_seq_len)). The prefill holds every prompt token, so slots are absolute positions.

With budget >= T nothing is evicted and every policy gives causal attention
(``softmax_attention(causal=True)`` at the absolute positions) up to float64 rounding.
"""

from typing import NamedTuple

import numpy as np

from .._checks import as_real, check_bool, check_choice, check_layout, finite_real, int_in_range
from ..positional import apply_rope, rope_angles
from .policies import Policy

_ROPE = (None, "post", "pre_shift")


class DecodeResult(NamedTuple):
    """What ``simulate_decoding`` records. Row t describes query t, the cache after step t.

    - ``outputs`` (B, T, H, Dv): attention outputs over the bounded cache.
    - ``kept`` bool (B, T, G, T): kept[b, t, g, j] = token j is in group g's cache after step t.
      Inside the prefill (t < P - 1) the cache is the whole prefix 0..t; the prefill's single
      reduction is row P - 1.
    - ``margins`` (B, T, G): the selection margin of each step (policies.py); inf where nothing
      was evicted or the rule has no score.
    - ``rows`` (B, T, H, T) or None: attention weights of query t over the absolute indices, 0
      outside the candidates (``return_rows=False`` skips this O(B T^2 H) array).
    - ``state``: the policy's state after the last step (for H2O the accumulated attention).
    """

    outputs: np.ndarray
    kept: np.ndarray
    margins: np.ndarray
    rows: np.ndarray | None
    state: object


# ----------------------------------------------------------------------------- checks

def _finite_array(name, x):
    """x as a new float64 array (``as_real``); ValueError unless every entry is finite."""
    a = as_real(name, x)
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (eviction decisions on NaN or inf are meaningless)")
    return a


def _inputs(q, k, v):
    q, k, v = (_finite_array(name, x) for name, x in (("q", q), ("k", k), ("v", v)))
    batch, length, heads, d = check_layout("q", q, "(B, T, H, D)")
    check_layout("k", k, "(B, T, Hkv, D)")
    if k.shape[:2] != (batch, length) or k.shape[3] != d:
        raise ValueError(f"k must have shape (B, T, Hkv, D)=({batch}, {length}, Hkv, {d}) to match q; got {k.shape}")
    check_layout("v", v, "(B, T, Hkv, Dv)")
    if v.shape[:3] != k.shape[:3]:
        raise ValueError(f"v must have shape (B, T, Hkv, Dv)=({batch}, {length}, {k.shape[2]}, Dv) to match k; "
                         f"got {v.shape}")
    if heads % k.shape[2]:
        raise ValueError(f"q's head count H={heads} must be a multiple of k's head count Hkv={k.shape[2]}")
    return q, k, v


def _options(policy, rope, rope_base, position_offset, scale, return_rows, d):
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a seqcheck eviction Policy (e.g. TOVA()); got {type(policy).__name__}")
    check_choice("rope", rope, _ROPE)
    if rope is not None and d % 2:
        raise ValueError(f"rope={rope!r} needs an even head dimension D; got q with D={d}")
    finite_real("rope_base", rope_base, "> 0")
    if scale is not None:
        finite_real("scale", scale, "> 0")
    int_in_range("position_offset", position_offset, 0)
    check_bool("return_rows", return_rows)


# ----------------------------------------------------------------------------- steps

def _rotate(x, positions, rope, base):
    return x if rope is None else apply_rope(x, positions, base=base)


def _softmax(s, visible):
    m = np.where(visible, s, -np.inf).max(axis=-1, keepdims=True)
    e = np.where(visible, np.exp(np.where(visible, s - m, 0.0)), 0.0)
    return e / e.sum(axis=-1, keepdims=True)


def _prefill(q, k, v, kv_of_head, scale):
    """Causal attention over the prompt: weights (B, H, P, P) and outputs (B, P, H, Dv)."""
    length = q.shape[1]
    s = scale * np.einsum("bqhd,bkhd->bhqk", q, k[:, :, kv_of_head])
    probs = _softmax(s, np.tri(length, dtype=bool))
    return probs, np.einsum("bhqk,bkhd->bqhd", probs, v[:, :, kv_of_head])


def _slot_rotation(offset, length, d, base):
    """cos and sin (length, D/2) of the RoPE angles at cache slots offset + 0..length-1."""
    angles = rope_angles(offset + np.arange(length), d, base=base)
    return np.cos(angles), np.sin(angles)


def _rotate_half(x, cos, sin):
    """``apply_rope``'s "half" pairing along the last axis: (x1, x2) -> (x1 c - x2 s, x1 s + x2 c)."""
    x1, x2 = np.split(x, 2, axis=-1)
    return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def _decode(q_t, keys, values, slots, scale):
    """One query over its group's cache: weights (B, H, n) and output (B, H, Dv).

    ``keys``, ``values`` (B, H, n, .) gathered from the cache in index order; with
    ``slots`` = (cos, sin) of the slot angles ("pre_shift") the keys are rotated to slots
    0..n-1 and the query to slot n-1.
    """
    if slots is not None:
        n = keys.shape[2]
        cos, sin = slots[0][:n], slots[1][:n]
        keys = _rotate_half(keys, cos, sin)
        q_t = _rotate_half(q_t, cos[-1], sin[-1])
    probs = _softmax(scale * np.einsum("bhd,bhnd->bhn", q_t, keys), True)
    return probs, np.einsum("bhn,bhnd->bhd", probs, values)


def _dense(cand_h, values, length):
    """Scatter (B, H, n) values at absolute indices cand_h into (B, H, length) zeros."""
    values = np.asarray(values)
    out = np.zeros(cand_h.shape[:2] + (length,), dtype=values.dtype)
    np.put_along_axis(out, cand_h, values, axis=-1)
    return out


# ----------------------------------------------------------------------------- public

def simulate_decoding(q, k, v, *, policy, budget, prefill_len=0, rope=None, rope_base=10000.0,
                      position_offset=0, scale=None, return_rows=True):
    """Prefill P = prefill_len tokens, then decode the rest one at a time under ``policy``.

    q (B, T, H, D), k (B, T, Hkv, D), v (B, T, Hkv, Dv): one layer's projections for the whole
    sequence (token t's query is used at step t only). ``budget`` >= 1 is the cache size the
    policy keeps (SnapKV: after the prefill only). ``rope``: None, "post" or "pre_shift" (module
    docstring). ``scale`` defaults to 1/sqrt(D). Batch elements are independent. Returns a
    ``DecodeResult``. Cost: O(T * budget * H * D) time after an O(P^2 H D) prefill, and
    O(B T^2 G) bytes for ``kept`` (plus O(B T^2 H) floats for ``rows``).
    """
    q, k, v = _inputs(q, k, v)
    batch, length, heads, d = q.shape
    kv_heads = k.shape[2]
    budget = int_in_range("budget", budget, 1)
    prefill = int_in_range("prefill_len", prefill_len, 0, length)
    _options(policy, rope, rope_base, position_offset, scale, return_rows, d)
    policy.check(budget)
    scale = 1 / np.sqrt(d) if scale is None else float(scale)
    groups = policy.groups(heads, kv_heads)
    group_of_head = np.arange(heads) // (heads // groups)
    kv_of_head = np.arange(heads) // (heads // kv_heads)

    positions = position_offset + np.arange(length)
    q_abs, k_abs = (_rotate(x, positions, rope, rope_base) for x in (q, k))
    shift = rope == "pre_shift"
    k_cached, q_step = (k, q) if shift else (k_abs, q_abs)
    slots = _slot_rotation(position_offset, length, d, rope_base) if shift else None
    outputs = np.empty((batch, length, heads, v.shape[-1]))
    kept = np.zeros((batch, length, groups, length), dtype=bool)
    margins = np.full((batch, length, groups), np.inf)
    rows = np.zeros((batch, length, heads, length)) if return_rows else None
    state = policy.init(batch, heads, length, prefill)
    cand = np.zeros((batch, groups, 0), dtype=np.int64)
    if batch == 0:  # nothing to decode (and the selections' reshapes below need a batch)
        return DecodeResult(outputs, kept, margins, rows, state)

    if prefill:
        probs, outputs[:, :prefill] = _prefill(q_abs[:, :prefill], k_abs[:, :prefill], v[:, :prefill],
                                               kv_of_head, scale)
        visible = np.broadcast_to(np.tri(prefill, dtype=bool), probs.shape)
        state = policy.observe(state, 0, probs, visible)
        cand = np.broadcast_to(np.arange(prefill), (batch, groups, prefill))
        keep, margins[:, prefill - 1] = policy.select(state, prefill - 1, cand, budget, True)
        cand = cand[keep].reshape(batch, groups, -1)
        kept[:, :prefill - 1, :, :prefill] = np.tri(prefill - 1, prefill, dtype=bool)[None, :, None]
        np.put_along_axis(kept[:, prefill - 1], cand, True, axis=-1)
        if return_rows:
            rows[:, :prefill, :, :prefill] = probs.transpose(0, 2, 1, 3)

    b = np.arange(batch)[:, None, None]
    for t in range(prefill, length):
        cand = np.concatenate([cand, np.full((batch, groups, 1), t)], axis=-1)
        cand_h = cand[:, group_of_head]
        gather = (b, cand_h, kv_of_head[:, None])
        probs, outputs[:, t] = _decode(q_step[:, t], k_cached[gather], v[gather], slots, scale)
        row = _dense(cand_h, probs, t + 1)
        state = policy.observe(state, t, row[:, :, None], _dense(cand_h, True, t + 1)[:, :, None])
        keep, margins[:, t] = policy.select(state, t, cand, budget, False)
        cand = cand[keep].reshape(batch, groups, -1)
        np.put_along_axis(kept[:, t], cand, True, axis=-1)
        if return_rows:
            rows[:, t, :, :t + 1] = row

    return DecodeResult(outputs, kept, margins, rows, state)


def simulate_layers(q, k, v, **options):
    """``simulate_decoding`` for each layer: q (L, B, T, H, D), k and v (L, B, T, Hkv, .), or
    sequences of L per-layer arrays; layers are independent. Returns a list of L DecodeResults.
    """
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not (isinstance(x, (list, tuple)) or np.ndim(x) == 5):
            raise ValueError(f"{name} must have a leading layer axis (L, B, T, H, D) or be a sequence of layers; "
                             f"got {type(x).__name__} of shape {np.shape(x) if isinstance(x, np.ndarray) else ()}")
    for name, x in (("k", k), ("v", v)):
        if len(x) != len(q):
            raise ValueError(f"{name} must have the same number of layers as q, L={len(q)}, to match q; got {len(x)}")
    return [simulate_decoding(ql, kl, vl, **options) for ql, kl, vl in zip(q, k, v)]
