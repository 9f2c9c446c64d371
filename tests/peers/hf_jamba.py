"""huggingface/transformers' Jamba (models/jamba/modeling_jamba.py), ported to torch float64 for
the tests, on the weights of ``seqcheck.reference.hybrid.jamba_params``. Written from the
original's semantics, not copied: JambaRMSNorm (x * rsqrt(mean(x^2) + eps), then weight *),
JambaAttention (eager: repeat_kv, matmul / sqrt(head_dim), additive causal mask, softmax,
o_proj), JambaMambaMixer.slow_forward (channels-first: in_proj, chunk into hidden and gate, the
mask before and after the depthwise Conv1d with padding d_conv - 1, x_proj split into time step,
B, C, the three RMSNorms, softplus(dt_proj), A = -exp(A_log), the scan, + D u, * act(gate),
out_proj; and its decode branch: conv_state rolled by -1, the new input written last, sum of
conv_state * weight), JambaSparseMoeBlock (softmax, topk, no renormalisation), JambaMLP. The
originals' float32 casts are left out (float64 throughout).
"""

import torch
import torch.nn.functional as F


def _t(a):
    return torch.as_tensor(a, dtype=torch.float64)


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return _t(weight) * (x * torch.rsqrt(variance + eps))


def mlp(x, w):
    return (F.silu(x @ _t(w["w_gate"])) * (x @ _t(w["w_up"]))) @ _t(w["w_down"])


def sparse_moe(x, w, top_k):
    routing_weights = F.softmax(x @ _t(w["router"]), dim=-1)
    routing_weights, selected = torch.topk(routing_weights, top_k, dim=-1)
    out = torch.zeros_like(x)
    for e in range(w["router"].shape[1]):
        expert = {n: w[n][e] for n in ("w_gate", "w_up", "w_down")}
        weight = (routing_weights * (selected == e)).sum(-1, keepdim=True)
        out = out + weight * mlp(x, expert)
    return out


def attention(x, w, c, mask=None):
    B, T, _ = x.shape
    q = torch.einsum("btd,dhe->bhte", x, _t(w["wq"]))
    k = torch.einsum("btd,dhe->bhte", x, _t(w["wk"])).repeat_interleave(c.heads // c.kv_heads, dim=1)
    v = torch.einsum("btd,dhe->bhte", x, _t(w["wv"])).repeat_interleave(c.heads // c.kv_heads, dim=1)
    scores = q @ k.transpose(2, 3) / c.head_dim ** 0.5
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    allowed = causal if mask is None else causal & mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, torch.finfo(torch.float64).min)
    out = torch.softmax(scores, dim=-1) @ v
    return torch.einsum("bhte,hed->btd", out, _t(w["wo"]))


def mamba(x, w, c, mask=None):
    """slow_forward over the whole sequence from zero states; returns (out, conv_state, ssm_state)."""
    B, T, _ = x.shape
    projected = (x @ _t(w["in_proj"])).transpose(1, 2)  # (B, 2I, T)
    hidden, gate = projected.chunk(2, dim=1)
    if mask is not None:
        hidden = hidden * mask[:, None, :]
    conv_state = F.pad(hidden, (c.d_conv - T, 0)) if T < c.d_conv else hidden[..., -c.d_conv:]
    weight = _t(w["conv_weight"])[:, None, :]  # Conv1d (I, 1, K), groups=I
    hidden = F.silu(F.conv1d(hidden, weight, _t(w["conv_bias"]), padding=c.d_conv - 1, groups=c.inner)[..., :T])
    if mask is not None:
        hidden = hidden * mask[:, None, :]
    return _ssm(hidden, gate, w, c, torch.zeros(B, c.inner, c.d_state, dtype=torch.float64)) + (conv_state,)


def _ssm(hidden, gate, w, c, ssm_state):
    R, N = c.dt_rank, c.d_state
    ssm_parameters = hidden.transpose(1, 2) @ _t(w["x_proj"])
    time_step, Bm, Cm = torch.split(ssm_parameters, [R, N, N], dim=-1)
    time_step = rms_norm(time_step, w["dt_norm"], c.eps)
    Bm, Cm = rms_norm(Bm, w["b_norm"], c.eps), rms_norm(Cm, w["c_norm"], c.eps)
    discrete_time_step = F.softplus(time_step @ _t(w["dt_proj"]) + _t(w["dt_bias"])).transpose(1, 2)  # (B, I, T)
    A = -torch.exp(_t(w["A_log"]))
    discrete_A = torch.exp(A[None, :, None, :] * discrete_time_step[:, :, :, None])
    deltaB_u = discrete_time_step[:, :, :, None] * Bm[:, None, :, :] * hidden[:, :, :, None]
    ys = []
    for i in range(hidden.shape[2]):
        ssm_state = discrete_A[:, :, i] * ssm_state + deltaB_u[:, :, i]
        ys.append(ssm_state @ Cm[:, i, :, None])
    y = torch.cat(ys, -1) if ys else hidden * 0
    y = (y + hidden * _t(w["D"])[None, :, None]) * F.silu(gate)
    return (y.transpose(1, 2) @ _t(w["out_proj"]), ssm_state)


def mamba_decode(x_t, w, c, conv_state, ssm_state):
    """The decode branch on one token x_t (B, 1, D)."""
    projected = (x_t @ _t(w["in_proj"])).transpose(1, 2)
    hidden, gate = projected.chunk(2, dim=1)
    conv_state = torch.roll(conv_state, shifts=-1, dims=-1)
    conv_state[:, :, -1] = hidden[:, :, 0]
    hidden = torch.sum(conv_state * _t(w["conv_weight"]), dim=-1) + _t(w["conv_bias"])
    hidden = F.silu(hidden)[:, :, None]
    out, ssm_state = _ssm(hidden, gate, w, c, ssm_state)
    return out, conv_state, ssm_state


def forward(x, params, mask=None):
    """The stack over the whole sequence: y (B, T, D)."""
    c, h = params.config, _t(x)
    mask = None if mask is None else torch.as_tensor(mask)
    for i, w in enumerate(params.layers):
        residual = h
        r = rms_norm(h, w["input_norm"], c.eps)
        h = residual + (attention(r, w, c, mask) if c.is_attention(i) else mamba(r, w, c, mask)[0])
        r = rms_norm(h, w["ff_norm"], c.eps)
        h = h + (sparse_moe(r, w, c.top_k) if c.is_moe(i) else mlp(r, w))
    return rms_norm(h, params.final_norm, c.eps)
