"""Independent implementations of every form with a low-precision budget, and their registry.

Every candidate here is written from the equations in the references' docstrings (none imports
``seqcheck.reference``): batch-first layouts, bottom-right causal alignment, fully masked rows 0
(lse -inf), default scale 1/sqrt(D), query head h reading kv head h // (H / Hkv), the selective
scan's and SSD's conventions. A candidate takes the form's arguments in the backend's arrays
(NumPy or torch, already in the working dtype; non-data float arrays such as A, D, ALiBi slopes
or initial states arrive in float32, complex ones in complex128) and omits tiling arguments
(block sizes, splits, chunk sizes, trees), which the engine then does not pass.

Two kinds:

- CORRECT: a faithful evaluation in the claimed dtype, by another algorithm or another order of
  summation (torch SDPA, torch ports, NumPy float32 with keys reversed or a blocked exp2 online
  softmax, sequential / chunked / doubling scans, Krylov and FFT convolutions, HF-style RoPE).
  A failure of one of these is a false alarm of the budget rule (or, first, a semantic mismatch:
  ``float64_agreement`` runs each in float64 against the reference to rule that out).
- INACCURATE: a kernel that claims float32 but loses precision on purpose (partial sums rounded
  to bfloat16, no max subtraction, P rounded to bfloat16, states kept in bfloat16, RoPE angles in
  bfloat16, ...). A pass of one of these is a missed detection.

``ENTRIES`` lists (name, form key, dtype, backend, inputs narrowing, expected, candidate).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import ml_dtypes
import numpy as np
from hypothesis import strategies as st

F32 = np.float32
BF16 = ml_dtypes.bfloat16
LOG2E = 1.4426950408889634


def _torch():
    import torch

    return torch


def _complex_dtype():
    """complex64, or complex128 under ``float64_mode``."""
    torch = _torch()
    return torch.complex128 if F32 is np.float64 else torch.complex64


def _bf_np(x):
    """Round a float32 (or complex64) NumPy array to bfloat16 and back."""
    x = np.asarray(x)
    if np.iscomplexobj(x):
        return (_bf_np(x.real) + 1j * _bf_np(x.imag)).astype(np.complex64)
    return x.astype(BF16).astype(F32)


def _bf_t(x):
    """Round a float32 (or complex64) tensor to bfloat16 and back."""
    torch = _torch()
    if x.is_complex():
        return torch.complex(x.real.bfloat16().float(), x.imag.bfloat16().float())
    return x.bfloat16().float()


def _np_bool(mask):
    if mask is None:
        return None
    if hasattr(mask, "detach"):
        return mask.detach().cpu().numpy().astype(bool)
    return np.asarray(mask, dtype=bool)


def _np_float(x, dtype=None):
    dtype = F32 if dtype is None else dtype
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if x.is_complex():
            return x.numpy()
        return x.float().numpy().astype(dtype)
    x = np.asarray(x)
    return x if np.iscomplexobj(x) else x.astype(dtype)


# =============================================================================== attention

def visible_mask(batch, Tq, Tk, *, causal=False, window=None, key_padding_mask=None):
    """bool (B, 1, Tq, Tk): query i sees key j iff i + Tk - Tq - left <= j <= i + Tk - Tq + right
    (right = 0 when causal) and key j is valid (bottom-right alignment, as FlashAttention)."""
    left, right = (None, None) if window is None else tuple(window)
    if causal:
        right = 0
    diagonal = np.arange(Tq)[:, None] + Tk - Tq
    j = np.arange(Tk)[None, :]
    vis = np.ones((Tq, Tk), bool)
    if left is not None:
        vis &= j >= diagonal - left
    if right is not None:
        vis &= j <= diagonal + right
    vis = np.broadcast_to(vis, (batch, 1, Tq, Tk)).copy()
    kpm = _np_bool(key_padding_mask)
    if kpm is not None:
        vis &= kpm[:, None, None, :]
    return vis


def alibi_bias(slopes, H, Tq, Tk):
    """float32 (B or 1, H, Tq, Tk): -slope_h |i + Tk - Tq - j|."""
    slopes = _np_float(slopes).reshape(-1, H)
    distance = np.abs(np.arange(Tq)[:, None] + Tk - Tq - np.arange(Tk)[None, :]).astype(F32)
    return -(slopes[:, :, None, None] * distance)


def _np_scores(q, k, *, scale, softcap, alibi_slopes):
    """float32 scores (B, H, Tq, Tk), unmasked, and v-independent shapes."""
    q, k = np.asarray(q, F32), np.asarray(k, F32)
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    kr = np.repeat(k, H // Hkv, axis=2)  # head h reads kv head h // (H / Hkv)
    s = np.einsum("bihd,bjhd->bhij", q, kr).astype(F32)
    s = s * F32(1.0 / math.sqrt(D) if scale is None else scale)
    if softcap:
        c = F32(softcap)
        s = c * np.tanh(s / c)
    if alibi_slopes is not None:
        s = s + alibi_bias(alibi_slopes, H, Tq, Tk)
    return s.astype(F32)


def _np_values(v, H):
    v = np.asarray(v, F32)
    return np.repeat(v, H // v.shape[2], axis=2).transpose(0, 2, 1, 3)  # (B, H, Tk, Dv)


def _np_finish(out, lse, return_lse):
    """out (B, H, Tq, Dv) -> (B, Tq, H, Dv); lse (B, H, Tq) -> (B, Tq, H)."""
    out = np.ascontiguousarray(out.transpose(0, 2, 1, 3)).astype(F32)
    if return_lse:
        return out, np.ascontiguousarray(lse.transpose(0, 2, 1)).astype(F32)
    return out


def attention_numpy_reversed(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                             alibi_slopes=None, softcap=None, return_lse=False):
    """NumPy float32, keys summed one at a time in reverse order, normalisation deferred."""
    B, Tq, H, _ = q.shape
    Tk = k.shape[1]
    s = _np_scores(q, k, scale=scale, softcap=softcap, alibi_slopes=alibi_slopes)
    vis = visible_mask(B, Tq, Tk, causal=causal, window=window, key_padding_mask=key_padding_mask)
    vv = _np_values(v, H)
    m = np.where(vis, s, -np.inf).max(-1)
    m = np.where(np.isfinite(m), m, F32(0)).astype(F32)
    e = np.where(vis, np.exp(np.where(vis, s - m[..., None], F32(0))), F32(0)).astype(F32)
    l = np.zeros(m.shape, F32)
    acc = np.zeros(m.shape + (vv.shape[-1],), F32)
    for j in reversed(range(Tk)):
        l = (l + e[..., j]).astype(F32)
        acc = (acc + e[..., j, None] * vv[:, :, None, j, :]).astype(F32)
    out = acc / np.where(l == 0, F32(1), l)[..., None]
    with np.errstate(divide="ignore"):
        lse = m + np.log(l)
    return _np_finish(out, lse, return_lse)


def attention_numpy_flash_exp2(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                               alibi_slopes=None, softcap=None, return_lse=False, block=3):
    """NumPy float32 FlashAttention-2 forward: key blocks of 3, online softmax in base 2
    (scores times log2 e, exp2), rescaling deferred to the end."""
    B, Tq, H, _ = q.shape
    Tk = k.shape[1]
    s = _np_scores(q, k, scale=scale, softcap=softcap, alibi_slopes=alibi_slopes)
    vis = visible_mask(B, Tq, Tk, causal=causal, window=window, key_padding_mask=key_padding_mask)
    s2 = np.where(vis, s * F32(LOG2E), -np.inf).astype(F32)
    vv = _np_values(v, H)
    m = np.full((B, H, Tq), -np.inf, F32)
    l = np.zeros((B, H, Tq), F32)
    acc = np.zeros((B, H, Tq, vv.shape[-1]), F32)
    with np.errstate(invalid="ignore"):
        for k0 in range(0, Tk, block):
            sb = s2[..., k0:k0 + block]
            m_new = np.maximum(m, sb.max(-1))
            shift = np.where(np.isfinite(m_new), m_new, F32(0)).astype(F32)
            alpha = np.exp2(m - shift).astype(F32)
            p = np.exp2(sb - shift[..., None]).astype(F32)
            l = (alpha * l + p.sum(-1, dtype=F32)).astype(F32)
            acc = (alpha[..., None] * acc + p @ vv[:, :, k0:k0 + block]).astype(F32)
            m = m_new
    out = acc / np.where(l == 0, F32(1), l)[..., None]
    with np.errstate(divide="ignore"):
        lse = (np.where(np.isfinite(m), m, F32(0)) + np.log2(l)) / F32(LOG2E)
    return _np_finish(out, lse, return_lse)


def attention_torch_port(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                         alibi_slopes=None, softcap=None, return_lse=False):
    """torch port: einsum scores, masked_fill(-inf), torch.softmax, torch.logsumexp, computed in
    float32 and returned in the input dtype (an upcasting kernel for float16/bfloat16)."""
    torch = _torch()
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    k, v = k.repeat_interleave(H // Hkv, dim=2), v.repeat_interleave(H // Hkv, dim=2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * (1.0 / math.sqrt(D) if scale is None else scale)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if alibi_slopes is not None:
        s = s + torch.from_numpy(alibi_bias(alibi_slopes, H, Tq, Tk))
    vis = torch.from_numpy(visible_mask(B, Tq, Tk, causal=causal, window=window, key_padding_mask=key_padding_mask))
    s = s.masked_fill(~vis, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0)
    out = torch.einsum("bhij,bjhd->bihd", p, v).to(dtype)
    return (out, lse.transpose(1, 2).contiguous().to(dtype)) if return_lse else out


def attention_torch_sdpa(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                         alibi_slopes=None, softcap=None, return_lse=False):
    """torch.nn.functional.scaled_dot_product_attention in the input dtype with an explicit
    bottom-right mask (bool, or float with the ALiBi bias), enable_gqa; fully masked rows 0.
    No softcap, no lse: narrow the inputs (softcap=None, return_lse=False)."""
    torch = _torch()
    if softcap or return_lse:
        raise ValueError("SDPA has no softcap and returns no lse")
    B, Tq, H, _ = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    vis = torch.from_numpy(visible_mask(B, Tq, Tk, causal=causal, window=window, key_padding_mask=key_padding_mask))
    if alibi_slopes is not None:
        bias = torch.from_numpy(alibi_bias(alibi_slopes, H, Tq, Tk)).to(q.dtype)
        mask = bias.masked_fill(~vis, float("-inf"))
    else:
        mask = vis
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, scale=scale,
        enable_gqa=H != Hkv)
    out = torch.where(vis.any(-1, keepdim=True), out, torch.zeros((), dtype=out.dtype))
    return out.transpose(1, 2)


def attention_torch_sdpa_builtin_causal(q, k, v, *, scale=None, causal=False, **unused):
    """SDPA as the issue's reproduction: bottom-right causal mask only (no window, padding, ALiBi)."""
    return attention_torch_sdpa(q, k, v, scale=scale, causal=causal)


# ----------------------------------------------------------------------------- attention, inaccurate

def attention_sdpa_in_bfloat16(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                               alibi_slopes=None, softcap=None, return_lse=False):
    """INACCURATE: SDPA computed in bfloat16, returned as float32 while claiming float32."""
    return attention_torch_sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16(), scale=scale, causal=causal, window=window,
                                key_padding_mask=key_padding_mask, alibi_slopes=alibi_slopes, softcap=softcap,
                                return_lse=return_lse).float()


def attention_no_max_subtraction(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                                 alibi_slopes=None, softcap=None, return_lse=False):
    """INACCURATE: float32 softmax without subtracting the row max (overflows on large scores)."""
    B, Tq, H, _ = q.shape
    Tk = k.shape[1]
    s = _np_scores(q, k, scale=scale, softcap=softcap, alibi_slopes=alibi_slopes)
    vis = visible_mask(B, Tq, Tk, causal=causal, window=window, key_padding_mask=key_padding_mask)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.where(vis, np.exp(np.where(vis, s, F32(0))), F32(0)).astype(F32)
        l = e.sum(-1, dtype=F32)
        out = (e @ _np_values(v, H)) / np.where(l == 0, F32(1), l)[..., None]
        lse = np.log(l)
    return _np_finish(out, lse, return_lse)


def attention_p_in_bfloat16(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                            alibi_slopes=None, softcap=None, return_lse=False):
    """INACCURATE: the float32 torch port with P rounded to bfloat16 before P @ V."""
    torch = _torch()
    options = {"scale": scale, "causal": causal, "window": window, "key_padding_mask": key_padding_mask,
               "alibi_slopes": alibi_slopes, "softcap": softcap}
    q, k, v = q.float(), k.float(), v.float()
    B, Tq, H, D = q.shape
    Tk, Hkv = k.shape[1], k.shape[2]
    k, v = k.repeat_interleave(H // Hkv, dim=2), v.repeat_interleave(H // Hkv, dim=2)
    scale, softcap = options.get("scale"), options.get("softcap")
    s = torch.einsum("bihd,bjhd->bhij", q, k) * (1.0 / math.sqrt(D) if scale is None else scale)
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if options.get("alibi_slopes") is not None:
        s = s + torch.from_numpy(alibi_bias(options["alibi_slopes"], H, Tq, Tk))
    vis = torch.from_numpy(visible_mask(B, Tq, Tk, causal=options.get("causal", False), window=options.get("window"),
                                        key_padding_mask=options.get("key_padding_mask")))
    s = s.masked_fill(~vis, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = _bf_t(torch.nan_to_num(torch.softmax(s, dim=-1), nan=0.0))
    out = torch.einsum("bhij,bjhd->bihd", p, v)
    return (out, lse.transpose(1, 2).contiguous()) if return_lse else out


def attention_bf16_accumulation(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                                alibi_slopes=None, softcap=None, return_lse=False):
    """INACCURATE: float32 inputs and outputs, but every partial sum of the softmax denominator
    and of P @ V rounded to bfloat16."""
    B, Tq, H, _ = q.shape
    Tk = k.shape[1]
    s = _np_scores(q, k, scale=scale, softcap=softcap, alibi_slopes=alibi_slopes)
    vis = visible_mask(B, Tq, Tk, causal=causal, window=window, key_padding_mask=key_padding_mask)
    vv = _np_values(v, H)
    m = np.where(vis, s, -np.inf).max(-1)
    m = np.where(np.isfinite(m), m, F32(0)).astype(F32)
    e = np.where(vis, np.exp(np.where(vis, s - m[..., None], F32(0))), F32(0)).astype(F32)
    l = np.zeros(m.shape, F32)
    acc = np.zeros(m.shape + (vv.shape[-1],), F32)
    for j in range(Tk):
        l = _bf_np(l + e[..., j])
        acc = _bf_np(acc + e[..., j, None] * vv[:, :, None, j, :])
    out = acc / np.where(l == 0, F32(1), l)[..., None]
    with np.errstate(divide="ignore"):
        lse = m + np.log(l)
    return _np_finish(out, lse, return_lse)


# =============================================================================== RoPE

def _positions_t(x, positions):
    torch = _torch()
    T = x.shape[1]
    pos = torch.arange(T) if positions is None else positions
    return pos.reshape(-1, T)  # (1 or B, T)


def _hf_freqs(x, positions, base, interpolation_factor):
    """Hugging Face's angles in float32: inv_freq = 1 / base ** (arange(0, D, 2) / D), positions
    as float / factor (linear scaling), freqs = positions x inv_freq: (1 or B, T, D/2)."""
    torch = _torch()
    D = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    pos = _positions_t(x, positions).float() / interpolation_factor
    return pos[..., None] * inv_freq


def _rotate_t(x, cos, sin, pairing):
    """Rotate the pairs of ``pairing`` of x (B, T, H, D) by cos, sin (b, T, D/2), in x's dtype."""
    torch = _torch()
    cos, sin = cos[:, :, None, :].to(x.dtype), sin[:, :, None, :].to(x.dtype)
    D = x.shape[-1]
    if pairing == "half":
        a, b = x[..., :D // 2], x[..., D // 2:]
        return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)


def _rope_hf(pairing):
    def rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
        freqs = _hf_freqs(x, positions, base, interpolation_factor)
        return _rotate_t(x, freqs.cos(), freqs.sin(), pairing)
    rope.__name__ = rope.__qualname__ = f"rope_hf_{pairing}"
    rope.__doc__ = ("Hugging Face style RoPE: float32 inv_freq and angles (the definition evaluated in float32), "
                    "cos/sin cast to x's dtype, rotation in x's dtype.")
    return rope


def _rope_complex(pairing):
    def rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
        torch = _torch()
        D = x.shape[-1]
        freqs = _hf_freqs(x, positions, base, interpolation_factor)
        cis = torch.polar(torch.ones_like(freqs), freqs)[:, :, None, :]
        xf = x.float()
        if pairing == "half":
            pairs = torch.stack([xf[..., :D // 2], xf[..., D // 2:]], dim=-1)
        else:
            pairs = xf.reshape(x.shape[:-1] + (D // 2, 2))
        rotated = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * cis)
        if pairing == "half":
            return torch.cat([rotated[..., 0], rotated[..., 1]], dim=-1).to(x.dtype)
        return rotated.flatten(-2).to(x.dtype)
    rope.__name__ = rope.__qualname__ = f"rope_complex_{pairing}"
    rope.__doc__ = "Meta llama's complex form: freqs_cis = polar(1, float32 angles), x as complex pairs."
    return rope


def _rope_f64_table(pairing):
    def rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
        x = np.asarray(x)
        T, D = x.shape[1], x.shape[-1]
        pos = (np.arange(T) if positions is None else np.asarray(positions)).reshape(-1, T).astype(np.float64)
        theta = (pos / interpolation_factor)[..., None] * base ** (-np.arange(0, D, 2) / D)
        cos, sin = np.cos(theta).astype(F32)[:, :, None, :], np.sin(theta).astype(F32)[:, :, None, :]
        xf = x.astype(F32)
        first = np.arange(D // 2) if pairing == "half" else np.arange(0, D, 2)
        second = first + D // 2 if pairing == "half" else first + 1
        a, b = xf[..., first], xf[..., second]
        out = np.empty_like(xf)
        out[..., first] = a * cos - b * sin
        out[..., second] = b * cos + a * sin
        return out
    rope.__name__ = rope.__qualname__ = f"rope_f64_table_{pairing}"
    rope.__doc__ = "NumPy: cos/sin table computed in float64 and stored in float32, rotation in float32."
    return rope


def _rope_bf16_angles(pairing):
    def rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
        freqs = _bf_t(_hf_freqs(x, positions, base, interpolation_factor))
        return _rotate_t(x, freqs.cos(), freqs.sin(), pairing)
    rope.__name__ = rope.__qualname__ = f"rope_bf16_angles_{pairing}"
    rope.__doc__ = "INACCURATE: RoPE angles rounded to bfloat16 while claiming float32."
    return rope


def _rope_bf16_table(pairing):
    def rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0):
        freqs = _hf_freqs(x, positions, base, interpolation_factor)
        return _rotate_t(x, _bf_t(freqs.cos()), _bf_t(freqs.sin()), pairing)
    rope.__name__ = rope.__qualname__ = f"rope_bf16_table_{pairing}"
    rope.__doc__ = "INACCURATE: cos/sin tables stored in bfloat16 while claiming float32."
    return rope


# =============================================================================== linear attention

def _phi_t(x, feature_map):
    torch = _torch()
    if feature_map == "elu":
        return torch.nn.functional.elu(x) + 1
    if feature_map == "identity":
        return x
    raise ValueError(f"feature_map {feature_map!r}")


def _phi_np(x, feature_map):
    x = np.asarray(x, F32)
    if feature_map == "elu":
        return np.where(x > 0, x + F32(1), np.exp(np.minimum(x, F32(0)))).astype(F32)
    if feature_map == "identity":
        return x
    raise ValueError(f"feature_map {feature_map!r}")


def _linear_state0_t(initial_state, B, H, D, M):
    torch = _torch()
    if initial_state is None:
        return torch.zeros(B, H, D, M), torch.zeros(B, H, D)
    s = initial_state.float()
    return s[..., :M], s[..., M]


def _linear_recurrent_t(round_state):
    def linear(q, k, v, *, feature_map="elu", eps=1e-6, initial_state=None, return_state=False, causal=True):
        torch = _torch()
        Q, K, v = _phi_t(q.float(), feature_map), _phi_t(k.float(), feature_map), v.float()
        B, T, H, D = Q.shape
        M = v.shape[-1]
        S, z = _linear_state0_t(initial_state, B, H, D, M)
        outs = []
        for t in range(T):
            z = round_state(z + K[:, t])
            S = round_state(S + K[:, t, :, :, None] * v[:, t, :, None, :])
            num = torch.einsum("bhd,bhdm->bhm", Q[:, t], S)
            den = torch.einsum("bhd,bhd->bh", Q[:, t], z)
            outs.append(num / (den + eps)[..., None])
        out = torch.stack(outs, dim=1)
        return (out, torch.cat([S, z[..., None]], dim=-1)) if return_state else out
    return linear


linear_torch_recurrent = _linear_recurrent_t(lambda x: x)
linear_torch_recurrent.__name__ = linear_torch_recurrent.__qualname__ = "linear_torch_recurrent"
linear_torch_recurrent.__doc__ = "torch float32 recurrence: S += phi(k) v^T, z += phi(k), out = phi(q)S / (phi(q).z + eps)."
linear_state_in_bfloat16 = _linear_recurrent_t(_bf_t)
linear_state_in_bfloat16.__name__ = linear_state_in_bfloat16.__qualname__ = "linear_state_in_bfloat16"
linear_state_in_bfloat16.__doc__ = "INACCURATE: the recurrence with S and z kept in bfloat16 while claiming float32."


def _linear_parallel_np(round_scores):
    def linear(q, k, v, *, feature_map="elu", eps=1e-6, initial_state=None, return_state=False, causal=True):
        Q, K, v = _phi_np(q, feature_map), _phi_np(k, feature_map), np.asarray(v, F32)
        B, T, H, D = Q.shape
        M = v.shape[-1]
        A = round_scores(np.einsum("bihd,bjhd->bhij", Q, K).astype(F32))
        A = np.where(np.tril(np.ones((T, T), bool)), A, F32(0))
        num = np.einsum("bhij,bjhm->bihm", A, v).astype(F32)
        den = np.moveaxis(A.sum(-1, dtype=F32), 1, 2)
        if initial_state is None:
            S0, z0 = np.zeros((B, H, D, M), F32), np.zeros((B, H, D), F32)
        else:
            s = _np_float(initial_state)
            S0, z0 = s[..., :M], s[..., M]
            num = num + np.einsum("bihd,bhdm->bihm", Q, S0)
            den = den + np.einsum("bihd,bhd->bih", Q, z0)
        out = (num / (den + F32(eps))[..., None]).astype(F32)
        if not return_state:
            return out
        S = S0 + np.einsum("bjhd,bjhm->bhdm", K, v)
        z = z0 + K.sum(1, dtype=F32)
        return out, np.concatenate([S, z[..., None]], -1).astype(F32)
    return linear


linear_numpy_parallel = _linear_parallel_np(lambda a: a)
linear_numpy_parallel.__name__ = linear_numpy_parallel.__qualname__ = "linear_numpy_parallel"
linear_numpy_parallel.__doc__ = "NumPy float32 masked quadratic form (A = phi(Q) phi(K)^T, tril) plus the initial state."
linear_scores_in_bfloat16 = _linear_parallel_np(_bf_np)
linear_scores_in_bfloat16.__name__ = linear_scores_in_bfloat16.__qualname__ = "linear_scores_in_bfloat16"
linear_scores_in_bfloat16.__doc__ = "INACCURATE: the quadratic form with A rounded to bfloat16 while claiming float32."


def linear_torch_chunked(q, k, v, *, feature_map="elu", eps=1e-6, initial_state=None, return_state=False,
                         causal=True, chunk=4):
    """torch float32 chunks of 4: intra-chunk quadratic form, inter-chunk state (S, z)."""
    torch = _torch()
    Q, K, v = _phi_t(q.float(), feature_map), _phi_t(k.float(), feature_map), v.float()
    B, T, H, D = Q.shape
    M = v.shape[-1]
    S, z = _linear_state0_t(initial_state, B, H, D, M)
    outs = []
    for start in range(0, T, chunk):
        Qc, Kc, Vc = Q[:, start:start + chunk], K[:, start:start + chunk], v[:, start:start + chunk]
        L = Qc.shape[1]
        A = torch.einsum("bihd,bjhd->bhij", Qc, Kc) * torch.tril(torch.ones(L, L))
        num = torch.einsum("bihd,bhdm->bihm", Qc, S) + torch.einsum("bhij,bjhm->bihm", A, Vc)
        den = torch.einsum("bihd,bhd->bih", Qc, z) + A.sum(-1).transpose(1, 2)
        outs.append(num / (den + eps)[..., None])
        S = S + torch.einsum("bjhd,bjhm->bhdm", Kc, Vc)
        z = z + Kc.sum(1)
    out = torch.cat(outs, dim=1)
    return (out, torch.cat([S, z[..., None]], dim=-1)) if return_state else out


# =============================================================================== selective scan

def _ss_channel_t(M, batch, T, D, complex_):
    """B or C of any layout as (batch, T, D, N), complex64 with a complex A."""
    torch = _torch()
    if M.ndim == 2:
        out = M[None, None].expand(batch, T, D, M.shape[-1])
    elif M.ndim == 3:
        out = M[:, :, None, :].expand(batch, T, D, M.shape[-1])
    else:
        out = M.repeat_interleave(D // M.shape[2], dim=2)
    if complex_:
        return out.to(_complex_dtype())
    return out.float()


def _ss_prepare_t(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state, exp=None):
    """(dA, dBu, C, h0, finish) for the selective scan in float32 / complex64 torch."""
    torch = _torch()
    complex_ = A.is_complex()
    u = u.float()
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()
    if delta_softplus:
        dt = torch.nn.functional.softplus(dt)
    A = A.to(_complex_dtype()) if complex_ else A.float()
    batch, T, Dch = u.shape
    Bf, Cf = _ss_channel_t(B, batch, T, Dch, complex_), _ss_channel_t(C, batch, T, Dch, complex_)
    dtA = dt[..., None] * A
    dA = torch.exp(dtA) if exp is None else exp(dtA)
    dBu = (dt * u)[..., None] * Bf
    N = A.shape[-1]
    if initial_state is None:
        h0 = torch.zeros(batch, Dch, N, dtype=dA.dtype)
    else:
        h0 = initial_state.to(dA.dtype)

    def finish(states, return_state):
        y = (states * Cf).sum(-1)
        if complex_:
            y = 2 * y.real
        out = y if D is None else y + u * D.float()
        if z is not None:
            out = out * torch.nn.functional.silu(z.float())
        return (out, states[:, -1]) if return_state else out

    return dA, dBu, h0, finish, dtA


def _ss_recurrent_t(round_state=None, exp=None):
    def scan(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False, initial_state=None,
             return_state=False):
        torch = _torch()
        dA, dBu, x, finish, _ = _ss_prepare_t(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state,
                                              exp=exp)
        states = []
        for t in range(dA.shape[1]):
            x = dA[:, t] * x + dBu[:, t]
            if round_state is not None:
                x = round_state(x)
            states.append(x)
        return finish(torch.stack(states, dim=1), return_state)
    return scan


scan_torch_recurrent = _ss_recurrent_t()
scan_torch_recurrent.__name__ = scan_torch_recurrent.__qualname__ = "scan_torch_recurrent"
scan_torch_recurrent.__doc__ = "torch float32 / complex64 sequential recurrence, as mamba's selective_scan_ref."
scan_state_in_bfloat16 = _ss_recurrent_t(round_state=_bf_t)
scan_state_in_bfloat16.__name__ = scan_state_in_bfloat16.__qualname__ = "scan_state_in_bfloat16"
scan_state_in_bfloat16.__doc__ = "INACCURATE: the recurrence with its state rounded to bfloat16 every step, claiming float32."
scan_exp_in_bfloat16 = _ss_recurrent_t(exp=lambda x: _bf_t(_torch().exp(_bf_t(x))))
scan_exp_in_bfloat16.__name__ = scan_exp_in_bfloat16.__qualname__ = "scan_exp_in_bfloat16"
scan_exp_in_bfloat16.__doc__ = "INACCURATE: dt A and exp(dt A) rounded to bfloat16, the rest float32."


def scan_torch_doubling(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False,
                        initial_state=None, return_state=False):
    """torch float32 parallel scan by recursive doubling (Hillis-Steele) over (dA, dBu) pairs:
    (a1, b1) o (a2, b2) = (a1 a2, a2 b1 + b2), the initial state folded into step 0."""
    dA, dBu, h0, finish, _ = _ss_prepare_t(u, delta, A, B, C, D, z, delta_bias, delta_softplus, initial_state)
    a, b = dA.clone(), dBu.clone()
    b[:, 0] = a[:, 0] * h0 + b[:, 0]
    T, off = a.shape[1], 1
    while off < T:
        b_new, a_new = b.clone(), a.clone()
        b_new[:, off:] = a[:, off:] * b[:, :-off] + b[:, off:]
        a_new[:, off:] = a[:, off:] * a[:, :-off]
        a, b, off = a_new, b_new, 2 * off
    return finish(b, return_state)


def _scan_chunked_np(mode):
    """NumPy float32 / complex64 chunked scan (chunks of 4), closed form per chunk:
    x_t = P(start-1, t] x_start + sum_{s <= t} P(s, t] dBu_s with P the product of the decays.
    ``mode`` "products": P by running products of exp(dt A) (stable); "cumsum": P = exp(cs_t - cs_s)
    from the chunk's cumulative sum of dt A, as Mamba-2's chunk kernels."""
    def scan(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False, initial_state=None,
             return_state=False, chunk=4):
        torch = _torch()
        to_t = lambda a: None if a is None else torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        dA, dBu, x, finish, dtA = _ss_prepare_t(*(to_t(a) for a in (u, delta, A, B, C, D, z, delta_bias)),
                                                delta_softplus, to_t(initial_state))
        dA, dBu, x, dtA = dA.numpy(), dBu.numpy(), x.numpy(), dtA.numpy()
        T = dA.shape[1]
        states = []
        for start in range(0, T, chunk):
            a, b, l = dA[:, start:start + chunk], dBu[:, start:start + chunk], dtA[:, start:start + chunk]
            L = a.shape[1]
            if mode == "products":
                P = np.zeros((L, L + 1) + a.shape[:1] + a.shape[2:], dtype=a.dtype)  # P[t, s+1], s = -1..L-1
                for t in range(L):
                    P[t, t + 1] = 1
                    for s in range(t - 1, -2, -1):
                        P[t, s + 1] = P[t, s + 2] * a[:, s + 1]
            else:
                cs = np.cumsum(l, axis=1)
                cs0 = np.concatenate([np.zeros_like(cs[:, :1]), cs], axis=1)  # cs0[s+1] = sum up to s
                P = np.zeros((L, L + 1) + a.shape[:1] + a.shape[2:], dtype=a.dtype)
                for t in range(L):
                    for s in range(-1, t + 1):
                        P[t, s + 1] = np.exp(cs0[:, t + 1] - cs0[:, s + 1])
            inputs = np.concatenate([x[:, None], b], axis=1)  # (batch, L+1, D, N)
            for t in range(L):
                terms = P[t, :t + 2] * np.moveaxis(inputs[:, :t + 2], 1, 0)
                states.append(terms.sum(0))
            x = states[-1]
        result = finish(torch.from_numpy(np.stack(states, axis=1)), return_state)
        return tuple(r.numpy() for r in result) if return_state else result.numpy()
    return scan


scan_numpy_chunked = _scan_chunked_np("products")
scan_numpy_chunked.__name__ = scan_numpy_chunked.__qualname__ = "scan_numpy_chunked"
scan_numpy_chunked_cumsum = _scan_chunked_np("cumsum")
scan_numpy_chunked_cumsum.__name__ = scan_numpy_chunked_cumsum.__qualname__ = "scan_numpy_chunked_cumsum"


# =============================================================================== SSD

def _ssd_prepare_t(x, dt, A, B, C, initial_state):
    torch = _torch()
    x, dt, A = x.float(), dt.float(), A.float()
    batch, T, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    Bh, Ch = B.float().repeat_interleave(H // G, dim=2), C.float().repeat_interleave(H // G, dim=2)
    h0 = torch.zeros(batch, H, P, N) if initial_state is None else initial_state.float()
    return x * dt[..., None], dt * A, Bh, Ch, h0


def _ssd_recurrent_t(round_state=None):
    def ssd(x, dt, A, B, C, *, decay=None, initial_state=None, return_state=False):
        torch = _torch()
        xdt, logs, Bh, Ch, h = _ssd_prepare_t(x, dt, A, B, C, initial_state)
        a = torch.exp(logs) if decay is None else decay.float()
        ys = []
        for t in range(xdt.shape[1]):
            h = a[:, t, :, None, None] * h + xdt[:, t, :, :, None] * Bh[:, t, :, None, :]
            if round_state is not None:
                h = round_state(h)
            ys.append(torch.einsum("bhpn,bhn->bhp", h, Ch[:, t]))
        y = torch.stack(ys, dim=1)
        return (y, h) if return_state else y
    return ssd


ssd_torch_recurrent = _ssd_recurrent_t()
ssd_torch_recurrent.__name__ = ssd_torch_recurrent.__qualname__ = "ssd_torch_recurrent"
ssd_torch_recurrent.__doc__ = "torch float32 recurrence h = exp(dt A) h + dt x B^T, y = h C."
ssd_state_in_bfloat16 = _ssd_recurrent_t(_bf_t)
ssd_state_in_bfloat16.__name__ = ssd_state_in_bfloat16.__qualname__ = "ssd_state_in_bfloat16"
ssd_state_in_bfloat16.__doc__ = "INACCURATE: the recurrence with h rounded to bfloat16 every step, claiming float32."


def _stable_segsum_np(l):
    """(..., L) -> (..., L, L): sum_{s < r <= t} l_r (t >= s), -inf above the diagonal; as
    ssd_minimal's segsum, a cumulative sum of masked increments."""
    L = l.shape[-1]
    rep = np.repeat(l[..., None], L, axis=-1)  # rep[..., r, s] = l_r
    rep = np.where(np.tril(np.ones((L, L), bool), -1), rep, F32(0))
    seg = np.cumsum(rep, axis=-2)
    return np.where(np.tril(np.ones((L, L), bool)), seg, -np.inf).astype(F32)


def _ssd_chunked_np(mode):
    """NumPy float32 SSD by chunks of 4 (ssd_minimal_discrete's four steps, chunk states passed
    on one chunk at a time). ``mode`` "stable": segment sums of masked increments;
    "cumsum": exp(cs_t - cs_s) from the chunk's cumulative sum of dt A (Mamba-2's Triton kernels)."""
    def ssd(x, dt, A, B, C, *, decay=None, initial_state=None, return_state=False, chunk=4):
        x, dt, A = np.asarray(x, F32), np.asarray(dt, F32), _np_float(A)
        batch, T, H, P = x.shape
        G, N = B.shape[2], B.shape[3]
        Bh = np.repeat(np.asarray(B, F32), H // G, axis=2)
        Ch = np.repeat(np.asarray(C, F32), H // G, axis=2)
        X = x * dt[..., None]
        logs = (dt * A).astype(F32)  # (batch, T, H)
        h = np.zeros((batch, H, P, N), F32) if initial_state is None else _np_float(initial_state)
        ys = []
        for start in range(0, T, chunk):
            l = np.moveaxis(logs[:, start:start + chunk], 1, -1)  # (batch, H, L)
            Xc, Bc, Cc = X[:, start:start + chunk], Bh[:, start:start + chunk], Ch[:, start:start + chunk]
            L = l.shape[-1]
            cs = np.cumsum(l, axis=-1).astype(F32)  # sum_{r <= t} within the chunk
            if mode == "stable":
                seg = _stable_segsum_np(l)
            else:
                seg = np.where(np.tril(np.ones((L, L), bool)), cs[..., :, None] - cs[..., None, :], -np.inf)
            Lm = np.exp(seg).astype(F32)  # (batch, H, L, L)
            scores = np.einsum("bthn,bshn->bhts", Cc, Bc).astype(F32)
            y_diag = np.einsum("bhts,bshp->bthp", scores * Lm, Xc)
            y_off = np.einsum("bthn,bhpn->bthp", Cc, h) * np.moveaxis(np.exp(cs), -1, 1)[..., None]
            ys.append((y_diag + y_off).astype(F32))
            to_end = Lm[..., -1, :]  # prod_{s < r <= end}
            h = (np.exp(cs[..., -1])[..., None, None] * h
                 + np.einsum("bshn,bhs,bshp->bhpn", Bc, to_end, Xc)).astype(F32)
        y = np.concatenate(ys, axis=1)
        return (y, h) if return_state else y
    return ssd


ssd_numpy_chunked = _ssd_chunked_np("stable")
ssd_numpy_chunked.__name__ = ssd_numpy_chunked.__qualname__ = "ssd_numpy_chunked"
ssd_numpy_chunked_cumsum = _ssd_chunked_np("cumsum")
ssd_numpy_chunked_cumsum.__name__ = ssd_numpy_chunked_cumsum.__qualname__ = "ssd_numpy_chunked_cumsum"


def _ssd_quadratic_np(round_decays):
    def ssd(x, dt, A, B, C, *, decay=None, initial_state=None, return_state=False):
        x, dt, A = np.asarray(x, F32), np.asarray(dt, F32), _np_float(A)
        batch, T, H, P = x.shape
        G, N = B.shape[2], B.shape[3]
        Bh = np.repeat(np.asarray(B, F32), H // G, axis=2)
        Ch = np.repeat(np.asarray(C, F32), H // G, axis=2)
        X = x * dt[..., None]
        l = np.moveaxis((dt * A).astype(F32), 1, -1)  # (batch, H, T)
        Lm = round_decays(np.exp(_stable_segsum_np(l)).astype(F32))
        scores = np.einsum("bthn,bshn->bhts", Ch, Bh).astype(F32)
        y = np.einsum("bhts,bshp->bthp", scores * Lm, X).astype(F32)
        cs = np.cumsum(l, axis=-1).astype(F32)
        if initial_state is not None:
            h0 = _np_float(initial_state)
            y = y + np.einsum("bthn,bhpn->bthp", Ch, h0) * np.moveaxis(np.exp(cs), -1, 1)[..., None]
        if not return_state:
            return y.astype(F32)
        h = np.einsum("bshn,bhs,bshp->bhpn", Bh, Lm[..., -1, :], X)
        if initial_state is not None:
            h = h + np.exp(cs[..., -1])[..., None, None] * h0
        return y.astype(F32), h.astype(F32)
    return ssd


ssd_numpy_quadratic = _ssd_quadratic_np(lambda a: a)
ssd_numpy_quadratic.__name__ = ssd_numpy_quadratic.__qualname__ = "ssd_numpy_quadratic"
ssd_numpy_quadratic.__doc__ = "NumPy float32 dual form (L o C B^T)(dt X), plus the initial state's decayed readout."
ssd_decays_in_bfloat16 = _ssd_quadratic_np(_bf_np)
ssd_decays_in_bfloat16.__name__ = ssd_decays_in_bfloat16.__qualname__ = "ssd_decays_in_bfloat16"
ssd_decays_in_bfloat16.__doc__ = "INACCURATE: the dual form with the decay matrix L rounded to bfloat16, claiming float32."


# =============================================================================== LTI

def _lti_system_np(Abar, Bbar, C):
    C = _np_float(C)
    A = _np_float(Abar)
    A = np.broadcast_to(A, (C.shape[0],) + (C.shape[1],) * 2)
    return A, _np_float(Bbar), C


def _lti_recurrent_t(round_state=None):
    def lti(u, Abar, Bbar, C, D=None, *, initial_state=None, return_state=False):
        torch = _torch()
        u, Bbar, C = u.float(), Bbar.float(), C.float()
        A = Abar.float().expand(C.shape[0], C.shape[1], C.shape[1])
        x = torch.zeros(u.shape[0], C.shape[0], C.shape[1]) if initial_state is None else initial_state.float()
        ys = []
        for t in range(u.shape[1]):
            x = torch.einsum("dmn,bdn->bdm", A, x) + Bbar * u[:, t, :, None]
            if round_state is not None:
                x = round_state(x)
            y = torch.einsum("dn,bdn->bd", C, x)
            ys.append(y if D is None else y + D.float() * u[:, t])
        y = torch.stack(ys, dim=1)
        return (y, x) if return_state else y
    return lti


lti_torch_recurrent = _lti_recurrent_t()
lti_torch_recurrent.__name__ = lti_torch_recurrent.__qualname__ = "lti_torch_recurrent"
lti_torch_recurrent.__doc__ = "torch float32 recurrence x = Abar x + Bbar u, y = C x + D u."
lti_state_in_bfloat16 = _lti_recurrent_t(_bf_t)
lti_state_in_bfloat16.__name__ = lti_state_in_bfloat16.__qualname__ = "lti_state_in_bfloat16"
lti_state_in_bfloat16.__doc__ = "INACCURATE: the recurrence with x rounded to bfloat16 every step, claiming float32."


def _krylov_np(A, B, C, T):
    """float32 K (Dch, T), K_l = C Abar^l Bbar by v_{l+1} = Abar v_l."""
    K = np.empty((C.shape[0], T), F32)
    v = B
    for l in range(T):
        K[:, l] = np.einsum("dn,dn->d", C, v)
        v = np.einsum("dmn,dn->dm", A, v).astype(F32)
    return K


def _initial_response_np(A, C, x0, T):
    """float32 (B, T, Dch): C Abar^{t+1} x0."""
    out = np.empty((x0.shape[0], T, C.shape[0]), F32)
    w = x0
    for t in range(T):
        w = np.einsum("dmn,bdn->bdm", A, w).astype(F32)
        out[:, t] = np.einsum("dn,bdn->bd", C, w)
    return out


def _lti_convolution_np(round_kernel):
    def lti(u, Abar, Bbar, C, D=None, *, initial_state=None, return_state=False):
        if return_state:
            raise ValueError("the convolution form returns no state")
        u = np.asarray(u, F32)
        A, Bb, Cc = _lti_system_np(Abar, Bbar, C)
        T = u.shape[1]
        K = round_kernel(_krylov_np(A, Bb, Cc, T))
        y = np.zeros(u.shape, F32)
        for t in range(T):  # y_t = sum_{l <= t} K_l u_{t-l}, lags in increasing order
            y[:, t] = np.einsum("dl,bld->bd", K[:, :t + 1], u[:, t::-1])
        if D is not None:
            y = y + _np_float(D) * u
        if initial_state is not None:
            y = y + _initial_response_np(A, Cc, _np_float(initial_state), T)
        return y.astype(F32)
    return lti


lti_numpy_convolution = _lti_convolution_np(lambda K: K)
lti_numpy_convolution.__name__ = lti_numpy_convolution.__qualname__ = "lti_numpy_convolution"
lti_numpy_convolution.__doc__ = "NumPy float32 Krylov kernel and direct causal convolution (+ C Abar^{t+1} x0)."
lti_kernel_in_bfloat16 = _lti_convolution_np(_bf_np)
lti_kernel_in_bfloat16.__name__ = lti_kernel_in_bfloat16.__qualname__ = "lti_kernel_in_bfloat16"
lti_kernel_in_bfloat16.__doc__ = "INACCURATE: the direct convolution with the kernel K rounded to bfloat16, claiming float32."


def lti_torch_fft(u, Abar, Bbar, C, D=None, *, initial_state=None, return_state=False):
    """torch float32 FFT convolution, n = 2T, with the float32 Krylov kernel (+ C Abar^{t+1} x0)."""
    torch = _torch()
    if return_state:
        raise ValueError("the FFT form returns no state")
    A, Bb, Cc = _lti_system_np(Abar, Bbar, C)
    T = u.shape[1]
    K = torch.from_numpy(_krylov_np(A, Bb, Cc, T))  # (Dch, T)
    uf = u.float()
    n = 2 * T
    y = torch.fft.irfft(torch.fft.rfft(uf, n=n, dim=1) * torch.fft.rfft(K, n=n, dim=1).T[None], n=n, dim=1)[:, :T]
    if D is not None:
        y = y + D.float() * uf
    if initial_state is not None:
        y = y + torch.from_numpy(_initial_response_np(A, Cc, _np_float(initial_state), T))
    return y


# =============================================================================== gated recurrences

# Retention, GLA and RWKV-5/6 share one recurrence, S_t = diag(a_t) S_{t-1} + k_t^T v_t per head:
# GLA and retention read o_t = q_t S_t, RWKV-5/6 o_t = r_t (S_{t-1} + diag(u) k_t^T v_t).


def _gated_logs(logs, shape):
    """Log-decays of any layout ((B, T, H, K), (B, T, H), (H, K), (H,)) as (B, T, H, K) float32."""
    g = _np_float(logs)
    B, T, H, K = shape
    if g.shape in ((B, T, H), (H,)):
        g = g[..., None]
    return np.broadcast_to(g, shape).astype(F32)


def _gated_recurrent_t(q, k, v, logs, initial_state, return_state, u=None, round_state=lambda s: s):
    """torch float32, one step at a time; ``u`` given: RWKV's read before the update, plus the bonus."""
    torch = _torch()
    q, k, v = q.float(), k.float(), v.float()
    B, T, H, K = q.shape
    a = torch.exp(torch.from_numpy(np.ascontiguousarray(_gated_logs(logs, (B, T, H, K)))))
    S = (torch.zeros(B, H, K, v.shape[-1]) if initial_state is None
         else torch.from_numpy(_np_float(initial_state)))
    bonus = None if u is None else torch.from_numpy(np.broadcast_to(_np_float(u).reshape(H, -1), (H, K)).copy())
    outs = []
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        if bonus is not None:
            outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S + bonus[None, :, :, None] * kv))
        S = round_state(a[:, t, :, :, None] * S + kv)
        if bonus is None:
            outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    out = torch.stack(outs, dim=1) if outs else v.clone()
    return (out, S) if return_state else out


def _gated_chunked_np(q, k, v, logs, initial_state, return_state, u=None, chunk=16):
    """NumPy float32 chunks of 16 with decays exp(cs_i - cs_j) from a chunk cumsum of the
    log-decays, as fla's Triton kernels (correct where no reset, g = -inf, makes inf - inf)."""
    q, k, v = _np_float(q), _np_float(k), _np_float(v)
    B, T, H, K = q.shape
    g = _gated_logs(logs, (B, T, H, K))
    S = np.zeros((B, H, K, v.shape[-1]), F32) if initial_state is None else _np_float(initial_state)
    strict = u is not None
    outs = []
    for start in range(0, T, chunk):
        qc, kc, vc, gc = (np.swapaxes(x[:, start:start + chunk], 1, 2) for x in (q, k, v, g))  # (B, H, c, .)
        c = qc.shape[2]
        cs = np.cumsum(gc, axis=2, dtype=F32)
        read = cs - gc if strict else cs  # the decays up to the read: before step i (RWKV) or through it
        mask = np.tril(np.ones((c, c), bool), -1 if strict else 0)
        decay = np.where(mask[..., None], np.exp(read[:, :, :, None] - cs[:, :, None]), F32(0)).astype(F32)
        scores = np.einsum("bhik,bhijk,bhjk->bhij", qc, decay, kc).astype(F32)
        out = scores @ vc + (qc * np.exp(read)) @ S
        if strict:
            uk = np.broadcast_to(_np_float(u).reshape(H, -1), (H, K))
            out = out + np.einsum("bhik,hk,bhik->bhi", qc, uk, kc)[..., None] * vc
        outs.append(np.swapaxes(out.astype(F32), 1, 2))
        S = (np.exp(cs[:, :, -1])[..., None] * S + np.swapaxes(kc * np.exp(cs[:, :, -1:] - cs), -1, -2) @ vc).astype(F32)
    out = np.concatenate(outs, axis=1) if outs else v.copy()
    return (out, S) if return_state else out


def _log_gamma(gamma):
    return np.log(_np_float(gamma).astype(np.float64)).astype(F32)


def _scaled_query(q, scale):
    K = q.shape[-1]
    return q * float(K ** -0.5 if scale is None else scale)


def retention_torch_recurrent(q, k, v, gamma, *, initial_state=None, return_state=False):
    """torch float32 S_n = gamma S_{n-1} + k_n^T v_n, o_n = q_n S_n."""
    return _gated_recurrent_t(q, k, v, _log_gamma(gamma), initial_state, return_state)


def retention_numpy_chunked(q, k, v, gamma, *, initial_state=None, return_state=False):
    """NumPy float32 chunks of 16, decays gamma^(i-j) as exp of cumsum differences."""
    return _gated_chunked_np(q, k, v, _log_gamma(gamma), initial_state, return_state)


def retention_state_in_bfloat16(q, k, v, gamma, *, initial_state=None, return_state=False):
    """INACCURATE: the recurrence with S rounded to bfloat16 every step while claiming float32."""
    return _gated_recurrent_t(q, k, v, _log_gamma(gamma), initial_state, return_state,
                              round_state=_bf_t)


def gla_torch_recurrent(q, k, v, g, *, scale=None, initial_state=None, return_state=False):
    """torch float32 S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t."""
    return _gated_recurrent_t(_scaled_query(q.float(), scale), k, v, g, initial_state, return_state)


def gla_numpy_chunked(q, k, v, g, *, scale=None, initial_state=None, return_state=False):
    """NumPy float32 chunks of 16 with cumsum-difference decays (fla's chunk kernels)."""
    return _gated_chunked_np(_scaled_query(_np_float(q), scale), k, v, g, initial_state, return_state)


def gla_state_in_bfloat16(q, k, v, g, *, scale=None, initial_state=None, return_state=False):
    """INACCURATE: S rounded to bfloat16 every step while claiming float32."""
    return _gated_recurrent_t(_scaled_query(q.float(), scale), k, v, g, initial_state, return_state,
                              round_state=_bf_t)


def wkv6_torch_recurrent(r, k, v, g, *, u, initial_state=None, return_state=False):
    """torch float32 o_t = r_t (S_{t-1} + diag(u) k_t^T v_t), S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t."""
    return _gated_recurrent_t(r, k, v, g, initial_state, return_state, u=u)


def wkv6_numpy_chunked(r, k, v, g, *, u, initial_state=None, return_state=False):
    """NumPy float32 chunks of 16 with cumsum-difference decays read before each step (fla's rwkv6 chunk)."""
    return _gated_chunked_np(r, k, v, g, initial_state, return_state, u=u)


def wkv6_state_in_bfloat16(r, k, v, g, *, u, initial_state=None, return_state=False):
    """INACCURATE: S rounded to bfloat16 every step while claiming float32."""
    return _gated_recurrent_t(r, k, v, g, initial_state, return_state, u=u, round_state=_bf_t)


def _delta_recurrent_t(q, k, v, beta, g, scale, initial_state, return_state, round_state=lambda s: s):
    """torch float32 S_t = a_t S_{t-1} + k_t u_t^T with u_t = beta_t (v_t - a_t k_t^T S_{t-1})."""
    torch = _torch()
    q, k, v = _scaled_query(q.float(), scale), k.float(), v.float()
    B, T, H, K = q.shape
    beta = torch.from_numpy(_np_float(beta))
    gates = torch.ones(B, T, H) if g is None else torch.exp(torch.from_numpy(_np_float(g)))
    S = (torch.zeros(B, H, K, v.shape[-1]) if initial_state is None
         else torch.from_numpy(_np_float(initial_state)))
    outs = []
    for t in range(T):
        S = gates[:, t, :, None, None] * S
        written = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = round_state(S + k[:, t, :, :, None] * written[:, :, None, :])
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    out = torch.stack(outs, dim=1) if outs else v.clone()
    return (out, S) if return_state else out


def delta_torch_recurrent(q, k, v, beta, *, g=None, scale=None, initial_state=None, return_state=False):
    """torch float32, the delta rule written as 'predict, write the correction' (DeltaNet's form)."""
    return _delta_recurrent_t(q, k, v, beta, g, scale, initial_state, return_state)


def delta_state_in_bfloat16(q, k, v, beta, *, g=None, scale=None, initial_state=None, return_state=False):
    """INACCURATE: S rounded to bfloat16 every step while claiming float32."""
    return _delta_recurrent_t(q, k, v, beta, g, scale, initial_state, return_state, round_state=_bf_t)


# =============================================================================== registry

@dataclass(frozen=True)
class Entry:
    name: str
    key: str
    dtype: str
    backend: str
    inputs: dict
    expected: str  # "correct" or "inaccurate"
    candidate: Callable = field(repr=False)
    note: str = ""


ATTENTION_FORMS = ("attention.softmax.parallel", "attention.flash.tiled", "attention.flash.split_kv")
ROPE_FORMS = ("positional.rope.half", "positional.rope.interleaved")
LINEAR_FORMS = ("linear.attention.recurrent", "linear.attention.parallel", "linear.attention.chunked")
SCAN_FORMS = ("mamba.selective_scan.recurrent", "mamba.selective_scan.parallel", "mamba.selective_scan.chunked")
SSD_FORMS = ("mamba.ssd.recurrent", "mamba.ssd.quadratic", "mamba.ssd.chunked")
LTI_FORMS = ("ssm.lti.recurrent", "ssm.lti.convolution", "ssm.lti.fft")
RETENTION_FORMS = ("retnet.retention.recurrent", "retnet.retention.parallel", "retnet.retention.chunked")
GLA_FORMS = ("gla.gla.recurrent", "gla.gla.parallel", "gla.gla.chunked")
WKV6_FORMS = ("rwkv.wkv6.recurrent", "rwkv.wkv6.parallel", "rwkv.wkv6.chunked")
DELTA_FORMS = ("delta.delta_rule.recurrent", "delta.delta_rule.chunked")
NO_RESETS = {"gate": st.sampled_from(["logsigmoid", "uniform"])}
NO_ZERO_GAMMA = {"decay": st.sampled_from(["torchscale", "uniform"])}

SDPA_INPUTS = {"softcap": None, "return_lse": False}
ISSUE_INPUTS = {"softcap": None, "alibi_slopes": None, "window": None, "key_padding_mask": False, "return_lse": False}


def _entries() -> list[Entry]:
    out = []

    def add(cand, key, dtype, backend, expected, inputs=None, note="", label=None):
        label = label or cand.__name__
        out.append(Entry(f"{key}:{label}:{dtype}", key, dtype, backend, dict(inputs or {}), expected, cand, note))

    for key in ATTENTION_FORMS:
        for dtype in ("float32", "float16", "bfloat16"):
            add(attention_torch_sdpa, key, dtype, "torch", "correct", SDPA_INPUTS)
        add(attention_torch_port, key, "float32", "torch", "correct")
        add(attention_torch_port, key, "bfloat16", "torch", "correct", note="computes in float32, rounds the outputs")
        add(attention_numpy_reversed, key, "float32", "numpy", "correct")
        add(attention_numpy_flash_exp2, key, "float32", "numpy", "correct")
        add(attention_sdpa_in_bfloat16, key, "float32", "torch", "inaccurate", SDPA_INPUTS)
        add(attention_no_max_subtraction, key, "float32", "numpy", "inaccurate")
        add(attention_p_in_bfloat16, key, "float32", "torch", "inaccurate")
        add(attention_bf16_accumulation, key, "float32", "numpy", "inaccurate")
    add(attention_torch_sdpa_builtin_causal, "attention.flash.tiled", "float32", "torch", "correct", ISSUE_INPUTS,
        note="the issue's reproduction: bottom-right causal only")

    for key in ROPE_FORMS:
        pairing = key.rsplit(".", 1)[1]
        add(_rope_hf(pairing), key, "float32", "torch", "correct",
            note="the definition in float32 (known false alarm near position 4096 while the baseline is the "
                 "float64 result rounded once)")
        add(_rope_hf(pairing), key, "bfloat16", "torch", "correct")
        add(_rope_hf(pairing), key, "float16", "torch", "correct")
        add(_rope_complex(pairing), key, "float32", "torch", "correct")
        add(_rope_f64_table(pairing), key, "float32", "numpy", "correct")
        add(_rope_bf16_angles(pairing), key, "float32", "torch", "inaccurate")
        add(_rope_bf16_table(pairing), key, "float32", "torch", "inaccurate")

    for key in LINEAR_FORMS:
        add(linear_torch_recurrent, key, "float32", "torch", "correct")
        add(linear_numpy_parallel, key, "float32", "numpy", "correct")
        add(linear_torch_chunked, key, "float32", "torch", "correct")
        add(linear_state_in_bfloat16, key, "float32", "torch", "inaccurate")
        add(linear_scores_in_bfloat16, key, "float32", "numpy", "inaccurate")

    for key in SCAN_FORMS:
        add(scan_torch_recurrent, key, "float32", "torch", "correct")
        add(scan_torch_doubling, key, "float32", "torch", "correct")
        add(scan_numpy_chunked, key, "float32", "numpy", "correct")
        add(scan_numpy_chunked_cumsum, key, "float32", "numpy", "correct",
            note="decays exp(cs_t - cs_s) from a chunk cumsum, as Mamba-2's kernels")
        add(scan_state_in_bfloat16, key, "float32", "torch", "inaccurate")
        add(scan_exp_in_bfloat16, key, "float32", "torch", "inaccurate")

    for key in SSD_FORMS:
        add(ssd_torch_recurrent, key, "float32", "torch", "correct")
        add(ssd_numpy_chunked, key, "float32", "numpy", "correct")
        add(ssd_numpy_chunked_cumsum, key, "float32", "numpy", "correct",
            note="decays exp(cs_t - cs_s) from a chunk cumsum, as Mamba-2's Triton kernels")
        add(ssd_numpy_quadratic, key, "float32", "numpy", "correct")
        add(ssd_state_in_bfloat16, key, "float32", "torch", "inaccurate")
        add(ssd_decays_in_bfloat16, key, "float32", "numpy", "inaccurate")

    for key in LTI_FORMS:
        add(lti_torch_recurrent, key, "float32", "torch", "correct")
        add(lti_numpy_convolution, key, "float32", "numpy", "correct")
        add(lti_torch_fft, key, "float32", "torch", "correct")
        add(lti_state_in_bfloat16, key, "float32", "torch", "inaccurate")
        add(lti_kernel_in_bfloat16, key, "float32", "numpy", "inaccurate")

    for key in RETENTION_FORMS:
        add(retention_torch_recurrent, key, "float32", "torch", "correct")
        add(retention_numpy_chunked, key, "float32", "numpy", "correct", NO_ZERO_GAMMA,
            note="decays gamma^(i-j) as exp of cumsum differences within chunks of 16 (gamma > 0)")
        add(retention_state_in_bfloat16, key, "float32", "torch", "inaccurate")

    for key in GLA_FORMS:
        add(gla_torch_recurrent, key, "float32", "torch", "correct")
        add(gla_numpy_chunked, key, "float32", "numpy", "correct", NO_RESETS,
            note="decays exp(cs_i - cs_j) from a chunk cumsum, as fla's kernels (not through resets)")
        add(gla_state_in_bfloat16, key, "float32", "torch", "inaccurate")

    for key in WKV6_FORMS:
        add(wkv6_torch_recurrent, key, "float32", "torch", "correct")
        add(wkv6_numpy_chunked, key, "float32", "numpy", "correct", NO_RESETS,
            note="decays exp(cs_i - cs_j) from a chunk cumsum, as fla's rwkv6 kernels (not through resets)")
        add(wkv6_state_in_bfloat16, key, "float32", "torch", "inaccurate")

    for key in DELTA_FORMS:
        add(delta_torch_recurrent, key, "float32", "torch", "correct")
        add(delta_state_in_bfloat16, key, "float32", "torch", "inaccurate")

    names = [e.name for e in out]
    assert len(names) == len(set(names)), "entry names must be unique"
    return out


ENTRIES = _entries()
BY_NAME = {e.name: e for e in ENTRIES}


def inputs_of(entry: Entry):
    """The entry's strategy: the form's inputs narrowed by ``entry.inputs`` (None: the form's own)."""
    from seqcheck.properties import inputs_for

    return inputs_for(entry.key, **entry.inputs) if entry.inputs else None


# =============================================================================== semantic check

@contextlib.contextmanager
def float64_mode():
    """Evaluate the candidates in float64: the module's working NumPy dtype becomes float64,
    ``Tensor.float()`` becomes ``double()``, torch's default dtype float64 and complex64
    complex128. For checking semantics only (``float64_agreement``); never while benchmarking."""
    global F32
    torch = _torch()
    saved = F32, torch.Tensor.float, torch.get_default_dtype()
    F32 = np.float64
    torch.Tensor.float = torch.Tensor.double
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        F32, torch.Tensor.float = saved[0], saved[1]
        torch.set_default_dtype(saved[2])


def float64_agreement(entry: Entry, *, examples: int = 30, seed: int = 0, rtol: float = 1e-10) -> dict:
    """Run ``entry.candidate`` in float64 (``float64_mode``, float64 inputs) against the form's
    reference on ``examples`` draws of the entry's inputs: a semantic mismatch (a mask one key
    off, a wrong GQA mapping, a missed initial state) shows as an O(1) deviation, rounding as
    ~1e-15. Returns the worst deviation relative to the output's scale and the draws above
    ``rtol``; non-finite values must sit where the reference has them."""
    from hypothesis import HealthCheck, given, settings, seed as hseed
    from seqcheck import equiv
    from seqcheck.equiv.check import _tiling_args_not_taken
    from seqcheck.equiv.convert import to_backend, to_numpy
    from seqcheck.equiv.registry import as_outputs, get_form
    from seqcheck.properties import inputs_for

    form = get_form(entry.key)
    strategy = inputs_for(entry.key, **entry.inputs)
    worst = {"deviation": 0.0, "bad": [], "examples": 0}

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @hseed(seed)
    @given(strategy)
    def run(args):
        worst["examples"] += 1
        skipped = _tiling_args_not_taken(entry.candidate, form)
        inputs = {n: to_backend(v, entry.backend, np.float64) for n, v in args.items() if n not in skipped}
        with float64_mode():
            got = tuple(to_numpy(o) for o in as_outputs(entry.candidate(**inputs)))
        want = tuple(to_numpy(o) for o in as_outputs(equiv.reference(entry.key)(**args)))
        shapes = {k: list(np.shape(v)) for k, v in args.items() if isinstance(v, np.ndarray)}
        if len(got) != len(want):
            worst["bad"].append({"why": f"{len(got)} outputs, expected {len(want)}", "shapes": shapes})
            return
        for g, w in zip(got, want):
            if np.shape(g) != np.shape(w):
                worst["bad"].append({"why": f"shape {np.shape(g)} != {np.shape(w)}", "shapes": shapes})
                continue
            fin = np.isfinite(w)
            if not np.array_equal(fin, np.isfinite(g)) or not np.array_equal(w[~fin], g[~fin]):
                worst["bad"].append({"why": "non-finite values differ", "shapes": shapes})
                continue
            scale = float(np.abs(w[fin]).max(initial=0.0)) or 1.0
            dev = float(np.abs(g[fin] - w[fin]).max(initial=0.0)) / scale
            worst["deviation"] = max(worst["deviation"], dev)
            if dev > rtol:
                worst["bad"].append({"why": f"deviation {dev:.3g}", "shapes": shapes,
                                     "options": {k: v for k, v in args.items() if not isinstance(v, np.ndarray)}})

    run()
    return worst
