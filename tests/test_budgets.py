"""The low-precision budget: no false alarm where the old rule flaked, and still no pass for a
kernel materially less accurate than its dtype allows (docs/tolerance.md; the false-alarm
benchmark in benchmarks/false_alarms/ measures the same over many seeds and implementations)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqcheck import equiv
from seqcheck.properties import inputs_for

FLASH = "attention.flash.tiled"
PLAIN_FLASH = inputs_for(FLASH, softcap=None, alibi_slopes=None, window=None, key_padding_mask=False,
                         return_lse=False)


def sdpa_bottom_right(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None, alibi_slopes=None,
                      softcap=None, return_lse=False):
    """torch's SDPA with flash-attention's bottom-right causal mask, fully masked rows set to 0."""
    Tq, Tk = q.shape[1], k.shape[1]
    mask = None
    if causal:
        mask = (torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + Tk - Tq)[None, None]
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask,
                                         scale=scale, enable_gqa=True)
    if mask is not None:
        out = torch.where(mask.any(-1, keepdim=True), out, torch.zeros_like(out))
    return out.transpose(1, 2)


@pytest.mark.parametrize("seed", [0, 10, 31])
def test_torch_sdpa_in_float32_passes_on_the_seeds_the_old_floor_flaked_on(seed):
    result = equiv.check(sdpa_bottom_right, FLASH, dtype="float32", backend="torch", inputs=PLAIN_FLASH, seed=seed,
                         progress=False)
    assert result.passed, str(result)
    assert result.worst_ratio < 0.5


def sdpa_probabilities_in_bfloat16(q, k, v, *, scale=None, causal=False, **unused):
    """A float32 kernel that rounds P to bfloat16 before P @ V, as bfloat16 FlashAttention does."""
    s = torch.einsum("bthd,bshd->bhts", q, k) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if causal:
        Tq, Tk = q.shape[1], k.shape[1]
        s = s.masked_fill(~(torch.arange(Tk)[None, :] <= torch.arange(Tq)[:, None] + Tk - Tq), -torch.inf)
    p = torch.nan_to_num(torch.softmax(s, dim=-1)).bfloat16().float()
    return torch.einsum("bhts,bshd->bthd", p, v)


def test_probabilities_rounded_to_bfloat16_fail_a_float32_claim():
    inputs = inputs_for(FLASH, softcap=None, alibi_slopes=None, window=None, key_padding_mask=False,
                        return_lse=False, group=1)
    result = equiv.check(sdpa_probabilities_in_bfloat16, FLASH, dtype="float32", backend="torch", inputs=inputs,
                         seed=0, progress=False)
    assert result.status == "failed" and result.worst_ratio > 10


def hugging_face_rope(x, positions=None, *, base=10000.0, interpolation_factor=1.0, angle_dtype=torch.float32):
    """transformers' LlamaRotaryEmbedding + rotate_half, in float32 (inv_freq and angles too)."""
    D = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    position = torch.arange(x.shape[1]).float() if positions is None else positions.float()
    angles = (position.to(angle_dtype)[..., None] / interpolation_factor * inv_freq.to(angle_dtype)).float()
    emb = torch.cat((angles, angles), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    cos, sin = (c[None, :, None, :] if c.ndim == 2 else c[:, :, None, :] for c in (cos, sin))
    return x * cos + torch.cat((-x[..., D // 2:], x[..., :D // 2]), dim=-1) * sin


LATE_POSITIONS = inputs_for("positional.rope.half", batch=1, seq_len=4).map(
    lambda args: {**args, "positions": np.array([[4090, 4093, 4094, 4095]])})


def test_hugging_face_rope_in_float32_passes_near_position_4096():
    result = equiv.check(hugging_face_rope, "positional.rope.half", dtype="float32", backend="torch",
                         inputs=LATE_POSITIONS, seed=0, max_examples=30, progress=False)
    assert result.passed, str(result)
    assert "definition evaluated in float32" in result.rule


def test_rope_angles_in_bfloat16_fail_a_float32_claim():
    def bf16_angles(x, positions=None, **options):
        return hugging_face_rope(x, positions, angle_dtype=torch.bfloat16, **options)

    result = equiv.check(bf16_angles, "positional.rope.half", dtype="float32", backend="torch",
                         inputs=LATE_POSITIONS, seed=0, max_examples=30, progress=False)
    assert result.status == "failed"


def test_the_rule_printed_names_the_magnitude_it_applies():
    for key in ("attention.softmax.parallel", "positional.rope.half", "mamba.ssd.recurrent",
                "linear.attention.recurrent", "ssm.lti.recurrent"):
        definition = equiv.get_form(key)
        rule = equiv.check(equiv.reference(key), key, dtype="float32", max_examples=1, progress=False).rule
        assert definition.magnitude is not None and definition.magnitude_rule in rule


def rwkv_float32(r, k, v, g, *, u, initial_state=None, return_state=False, state_dtype=np.float32):
    """RWKV-5/6 in NumPy float32, each step's decay exp(g) by float32 exp (not correctly rounded);
    the state rounded to ``state_dtype`` after every step."""
    r, k, v = (np.asarray(x, np.float32) for x in (r, k, v))
    B, T, H, K = r.shape
    g = np.asarray(g, np.float32)
    g = g[..., None] if g.shape in ((B, T, H), (H,)) else g
    decay = np.broadcast_to(np.exp(g), (B, T, H, K))
    bonus = np.broadcast_to(np.asarray(u, np.float32).reshape(H, -1), (H, K))
    S = np.zeros((B, H, K, v.shape[3]), np.float32) if initial_state is None else np.asarray(initial_state, np.float32)
    outs = []
    for t in range(T):
        kv = k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(np.einsum("bhk,bhkv->bhv", r[:, t], bonus[None, :, :, None] * kv + S))
        S = (decay[:, t, :, :, None] * S + kv).astype(state_dtype).astype(np.float32)
    out = np.stack(outs, axis=1) if outs else np.zeros(r.shape[:3] + v.shape[3:], np.float32)
    return (out, S) if return_state else out


@pytest.mark.parametrize("seed", [8, 13])
def test_rwkv5_decays_rounded_every_step_pass_a_float32_claim(seed):
    """RWKV-5's constant decays near 1 (g = -1e-6: float32 exp errs by 1 ulp of 1 - w every step,
    coherently): these seeds failed at ratios 1.3 and 3.1 before the floor counted t + 1 step
    roundings (``bounds.with_step_rounding``)."""
    assert equiv.check(rwkv_float32, "rwkv.wkv6.recurrent", dtype="float32", seed=seed, max_examples=300,
                       progress=False).passed


def test_an_rwkv_state_kept_in_bfloat16_still_fails_a_float32_claim():
    import ml_dtypes

    def state_in_bfloat16(r, k, v, g, **options):
        return rwkv_float32(r, k, v, g, **options, state_dtype=ml_dtypes.bfloat16)

    result = equiv.check(state_in_bfloat16, "rwkv.wkv6.recurrent", dtype="float32", seed=0, max_examples=100,
                         progress=False)
    assert result.status == "failed"
