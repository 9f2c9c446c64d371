"""A small Jamba stack (Lieber et al. 2024, "Jamba: A Hybrid Transformer-Mamba Language Model"):
attention and Mamba layers interleaved, MoE in every other layer, random weights from a seeded
generator; run over the whole sequence, token by token with its caches, or as a prefill of any
length followed by decoding.

Layer i is attention where i % attention_period == attention_offset (Jamba: 8, 4), else Mamba;
its feed-forward is an MoE where i % expert_period == expert_offset (2, 1), else one SwiGLU MLP.
Each layer, with RMSNorm(x) = w * x / sqrt(mean(x^2) + eps):

    h = x + mixer(RMSNorm_in(x)),   out = h + ffn(RMSNorm_ff(h)),   y = RMSNorm_final(last out)

- attention: GQA, causal, scale 1/sqrt(d), no positional encoding (Jamba has none), no biases;
- Mamba (Mamba-1 with Jamba's norms): x, z = in_proj(h); x masked; the causal depthwise conv of
  kernel d_conv with bias, silu; x masked again; dt, B, C = x_proj(x), each RMSNorm'd; delta =
  softplus(dt_proj(dt) + dt_bias); A = -exp(A_log); h_t = exp(delta_t A) h_{t-1} + delta_t B_t x_t,
  y_t = C_t h_t + D x_t; y silu(z); out_proj;
- MoE: p = softmax(h W_router), the top k experts weighted by p, not renormalised (Jamba's), each
  a SwiGLU (``moe.expert_ffn``); the router loss is Mixtral's load-balancing loss over the MoE
  layers' logits at the valid tokens.

``valid`` (B, T) marks the real tokens of a left-padded batch: padded keys are masked, the Mamba
input is zeroed at padded positions before and after the conv (so the conv and the scan see
zeros, as the unpadded sequence's zero start), and the router loss counts valid tokens only.

The caches (``JambaCache``): per attention layer the keys and values so far (B, n, Hkv, d); per
Mamba layer the conv state (B, Di, d_conv), the last d_conv inputs of the conv (pre-conv, masked,
zeros before the start), and the SSM state (B, Di, N).

huggingface/transformers: models/jamba/modeling_jamba.py JambaForCausalLM (JambaAttention eager,
JambaMambaMixer.slow_forward, JambaSparseMoeBlock, load_balancing_loss_func). Differences:
float64 throughout (HF casts the norms, the softmaxes and the scan to float32); no embedding
or lm_head (x and y are hidden states); weights drawn here, not loaded.
"""

import math
from dataclasses import dataclass, fields

import numpy as np
from scipy.special import expit

from .._checks import as_real, check_bool, check_layout, check_shape, int_in_range, positive_int


@dataclass(frozen=True)
class JambaConfig:
    """Sizes and schedule of a small Jamba stack (defaults: a four-layer stack with its
    attention at layer 2 and MoE at layers 1 and 3)."""

    dim: int = 8
    layers: int = 4
    attention_period: int = 4
    attention_offset: int = 2
    expert_period: int = 2
    expert_offset: int = 1
    heads: int = 2
    kv_heads: int = 1
    head_dim: int = 4
    experts: int = 4
    top_k: int = 2
    hidden: int = 16
    expand: int = 2
    d_state: int = 4
    d_conv: int = 4
    eps: float = 1e-6

    def __post_init__(self):
        for f in fields(self):
            if f.name not in ("eps", "attention_offset", "expert_offset"):
                positive_int(f.name, getattr(self, f.name))
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or not 0 < self.eps < float("inf"):
            raise ValueError(f"eps must be a positive finite number; got {self.eps!r}")
        int_in_range("attention_offset", self.attention_offset, 0, self.attention_period - 1)
        int_in_range("expert_offset", self.expert_offset, 0, self.expert_period - 1)
        int_in_range("top_k", self.top_k, 1, self.experts)
        if self.heads % self.kv_heads:
            raise ValueError(f"heads must be a multiple of kv_heads={self.kv_heads}; got {self.heads}")

    @property
    def inner(self) -> int:
        return self.expand * self.dim

    @property
    def dt_rank(self) -> int:
        return math.ceil(self.dim / 16)

    def is_attention(self, i: int) -> bool:
        return i % self.attention_period == self.attention_offset

    def is_moe(self, i: int) -> bool:
        return i % self.expert_period == self.expert_offset

    @property
    def __seqcheck_recipe__(self):
        return ("seqcheck.reference.hybrid", "JambaConfig", tuple(getattr(self, f.name) for f in fields(self)))


@dataclass(frozen=True, repr=False, eq=False)
class JambaParams:
    """The weights of a stack, drawn by ``jamba_params(config, seed)`` (which its repr calls)."""

    config: JambaConfig
    seed: int
    layers: tuple
    final_norm: np.ndarray

    def __repr__(self) -> str:
        return f"jamba_params({self.config!r}, seed={self.seed})"

    @property
    def __seqcheck_recipe__(self):
        """How a reproducer rebuilds it: ``jamba_params(config, seed)``."""
        return ("seqcheck.reference.hybrid", "jamba_params", (self.config, self.seed))


def jamba_params(config, seed):
    """Weights N(0, 1) / sqrt(fan-in) from ``numpy.random.default_rng(seed)``; norms' weights
    1 + N(0, 0.1); Mamba's A_log = log(1..N) and D = 1 (Mamba's init), dt_bias the inverse
    softplus of a dt log-uniform in [1e-3, 1e-1]."""
    if not isinstance(config, JambaConfig):
        raise TypeError(f"config must be a JambaConfig; got {type(config).__name__}")
    seed = int_in_range("seed", seed, 0)
    rng = np.random.default_rng(seed)
    c = config

    def w(*shape):
        return rng.standard_normal(shape) / np.sqrt(shape[0] if len(shape) > 1 else 1)

    def norm(n):
        return 1 + 0.1 * rng.standard_normal(n)

    def swiglu(n=None):
        lead = () if n is None else (n,)
        return {"w_gate": rng.standard_normal(lead + (c.dim, c.hidden)) / np.sqrt(c.dim),
                "w_up": rng.standard_normal(lead + (c.dim, c.hidden)) / np.sqrt(c.dim),
                "w_down": rng.standard_normal(lead + (c.hidden, c.dim)) / np.sqrt(c.hidden)}

    layers = []
    for i in range(c.layers):
        layer = {"input_norm": norm(c.dim), "ff_norm": norm(c.dim)}
        if c.is_attention(i):
            layer.update(wq=w(c.dim, c.heads, c.head_dim), wk=w(c.dim, c.kv_heads, c.head_dim),
                         wv=w(c.dim, c.kv_heads, c.head_dim),
                         wo=rng.standard_normal((c.heads, c.head_dim, c.dim)) / np.sqrt(c.heads * c.head_dim))
        else:
            dt = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), c.inner))
            layer.update(in_proj=w(c.dim, 2 * c.inner), conv_weight=rng.standard_normal((c.inner, c.d_conv)) / 2,
                         conv_bias=0.1 * rng.standard_normal(c.inner), x_proj=w(c.inner, c.dt_rank + 2 * c.d_state),
                         dt_proj=w(c.dt_rank, c.inner), dt_bias=dt + np.log(-np.expm1(-dt)),
                         A_log=np.log(np.broadcast_to(np.arange(1.0, c.d_state + 1), (c.inner, c.d_state))).copy(),
                         D=np.ones(c.inner), out_proj=w(c.inner, c.dim), dt_norm=norm(c.dt_rank),
                         b_norm=norm(c.d_state), c_norm=norm(c.d_state))
        if c.is_moe(i):
            layer.update(router=w(c.dim, c.experts), **swiglu(c.experts))
        else:
            layer.update(swiglu())
        layers.append(layer)
    return JambaParams(config, seed, tuple(layers), norm(c.dim))


# ----------------------------------------------------------------------------- the arithmetic


class Float64:
    """The operations the parallel pass is written in, on float64 NumPy arrays; ``equiv``
    evaluates the same code on arrays that carry a bound on their rounding error."""

    exp = staticmethod(np.exp)
    sqrt = staticmethod(np.sqrt)
    sigmoid = staticmethod(expit)
    where = staticmethod(np.where)
    einsum = staticmethod(np.einsum)

    @staticmethod
    def softplus(a):
        return np.logaddexp(0.0, a)

    @staticmethod
    def sum(a, axis, keepdims=False):
        return a.sum(axis=axis, keepdims=keepdims)

    @staticmethod
    def max(a, axis):
        return a.max(axis=axis, keepdims=True, initial=-np.inf)

    @staticmethod
    def stack(arrays, axis):
        return np.stack(arrays, axis=axis)

    @staticmethod
    def concatenate(arrays, axis):
        return np.concatenate(arrays, axis=axis)


def _value(a):
    """The float64 values of a plain or error-carrying array (for the discrete choices)."""
    return getattr(a, "value", a)


def _rms_norm(x, weight, eps, ar):
    return x * weight / ar.sqrt(ar.sum(x * x, -1, keepdims=True) / x.shape[-1] + eps)


def _silu(x, ar):
    return x * ar.sigmoid(x)


def _softmax(scores, visible, axis, ar):
    """The softmax along ``axis`` of the visible scores (a row with none visible: 0)."""
    top = ar.max(ar.where(visible, scores, -np.inf), axis)
    top = ar.where(np.isfinite(_value(top)), top, 0.0)
    weights = ar.where(visible, ar.exp(ar.where(visible, scores - top, 0.0)), 0.0)
    total = ar.sum(weights, axis, keepdims=True)
    return weights / ar.where(_value(total) > 0, total, 1.0)


# ----------------------------------------------------------------------------- the parallel pass


def _attention(x, layer, c, valid, ar):
    """Causal GQA over (B, T, D); returns (out, (k, v)) the keys and values for a cache."""
    group = c.heads // c.kv_heads
    q = ar.einsum("btd,dhe->bthe", x, layer["wq"])
    k, v = ar.einsum("btd,dhe->bthe", x, layer["wk"]), ar.einsum("btd,dhe->bthe", x, layer["wv"])
    heads_k = ar.einsum("bjge,hg->bjhe", k, np.repeat(np.eye(c.kv_heads), group, axis=0))
    heads_v = ar.einsum("bjge,hg->bjhe", v, np.repeat(np.eye(c.kv_heads), group, axis=0))
    T = x.shape[1]
    visible = np.tri(T, dtype=bool)[None, :, :, None]  # (1, T, T', 1)
    if valid is not None:
        visible = visible & valid[:, None, :, None]
    P = _softmax(ar.einsum("bihe,bjhe->bijh", q, heads_k) * c.head_dim ** -0.5, visible, 2, ar)
    return ar.einsum("bthe,hed->btd", ar.einsum("bijh,bjhe->bihe", P, heads_v), layer["wo"]), (k, v)


def _ssm_inputs(u, layer, c, ar):
    """delta, B, C of the Mamba mixer from its post-conv input u (..., Di)."""
    dbc = ar.einsum("...i,ir->...r", u, layer["x_proj"])
    R, N = c.dt_rank, c.d_state
    dt = _rms_norm(dbc[..., :R], layer["dt_norm"], c.eps, ar)
    Bm = _rms_norm(dbc[..., R:R + N], layer["b_norm"], c.eps, ar)
    Cm = _rms_norm(dbc[..., R + N:], layer["c_norm"], c.eps, ar)
    return ar.softplus(ar.einsum("...r,ri->...i", dt, layer["dt_proj"]) + layer["dt_bias"]), Bm, Cm


def _mamba(x, layer, c, valid, ar):
    """The Mamba mixer over (B, T, D) from zero states; returns (out, (conv state (B, Di, K),
    ssm state (B, Di, N)))."""
    B, T, _ = x.shape
    xz = ar.einsum("btd,de->bte", x, layer["in_proj"])
    u, z = xz[..., :c.inner], xz[..., c.inner:]
    if valid is not None:
        u = u * valid[..., None]
    history = ar.concatenate([np.zeros((B, c.d_conv - 1, c.inner)), u], 1)  # (B, K - 1 + T, Di)
    conv = layer["conv_bias"] + ar.sum(ar.stack([history[:, j:j + T] * layer["conv_weight"][:, j]
                                                 for j in range(c.d_conv)], 0), 0)
    conv_state = np.swapaxes(np.concatenate([np.zeros((B, 1, c.inner)), _value(history)], 1)[:, -c.d_conv:], 1, 2)
    u = _silu(conv, ar)
    if valid is not None:
        u = u * valid[..., None]
    delta, Bm, Cm = _ssm_inputs(u, layer, c, ar)
    A = -ar.exp(layer["A_log"])
    h, ys = np.zeros((B, c.inner, c.d_state)), []
    for t in range(T):
        h = ar.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[..., None] * Bm[:, t, None, :]
        ys.append(ar.sum(h * Cm[:, t, None, :], -1) + layer["D"] * u[:, t])
    y = (ar.stack(ys, 1) if ys else u) * _silu(z, ar)
    return ar.einsum("bti,id->btd", y, layer["out_proj"]), (conv_state, _value(h))


def _moe(x, layer, c, ar):
    """Top-k of softmax(x W_router), not renormalised; returns (out, router logits)."""
    logits = ar.einsum("btd,de->bte", x, layer["router"])
    probs = _softmax(logits, np.ones(logits.shape, dtype=bool), -1, ar)
    order = np.argsort(-_value(probs), axis=-1, kind="stable")[..., :c.top_k]
    chosen = np.zeros(logits.shape, dtype=bool)
    np.put_along_axis(chosen, order, True, axis=-1)
    gates = ar.where(chosen, probs, 0.0)
    h = _silu(ar.einsum("btd,edf->btef", x, layer["w_gate"]), ar) * ar.einsum("btd,edf->btef", x, layer["w_up"])
    return ar.sum(gates[..., None] * ar.einsum("btef,efd->bted", h, layer["w_down"]), 2), logits


def _mlp(x, layer, ar):
    h = _silu(ar.einsum("btd,df->btf", x, layer["w_gate"]), ar) * ar.einsum("btd,df->btf", x, layer["w_up"])
    return ar.einsum("btf,fd->btd", h, layer["w_down"])


def _block(h, layer, i, c, valid, ar):
    """Layer i's residual block over (B, T, D): (out, its cache after the last token, the
    router logits of an MoE layer or None)."""
    mixer = _attention if c.is_attention(i) else _mamba
    mixed, cache = mixer(_rms_norm(h, layer["input_norm"], c.eps, ar), layer, c, valid, ar)
    h = h + mixed
    r = _rms_norm(h, layer["ff_norm"], c.eps, ar)
    out, logits = _moe(r, layer, c, ar) if c.is_moe(i) else (_mlp(r, layer, ar), None)
    return h + out, tuple(_value(a) for a in cache), logits


def forward(x, params, valid, ar):
    """The parallel pass in the arithmetic ``ar``: (y, the MoE layers' router logits, the caches
    after the last token)."""
    h, logits, caches = x, [], []
    for i, layer in enumerate(params.layers):
        h, cache, layer_logits = _block(h, layer, i, params.config, valid, ar)
        caches.append(cache)
        if layer_logits is not None:
            logits.append(layer_logits)
    return _rms_norm(h, params.final_norm, params.config.eps, ar), logits, tuple(caches)


# ----------------------------------------------------------------------------- the public forms


def _check(x, params, name="x", layout="(B, T, D)"):
    if not isinstance(params, JambaParams):
        raise TypeError(f"params must be a JambaParams from jamba_params(config, seed); got {type(params).__name__}")
    x = as_real(name, x)
    shape = check_layout(name, x, layout)
    if shape[-1] != params.config.dim:
        raise ValueError(f"{name} must have shape {layout} with D={params.config.dim} to match params; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x


def _check_valid(valid, x, name="x"):
    if valid is None:
        return None
    mask = np.asarray(valid)
    if mask.dtype != bool:
        raise TypeError(f"valid must be a bool array (True at real tokens); got dtype {mask.dtype}")
    check_shape("valid", mask, x.shape[:2], "(B, T)", match=name)
    return mask


def router_loss(logits, valid, config):
    """Mixtral's load-balancing loss (``moe.load_balancing_loss``, variant "mixtral") over the
    MoE layers' router logits at the valid tokens, as HF's ``load_balancing_loss_func`` with an
    attention mask; 0 without MoE layers or valid tokens."""
    from ..moe import load_balancing_loss, topk_routing

    rows = [np.asarray(_value(a))[valid] if valid is not None else np.asarray(_value(a)).reshape(-1, config.experts)
            for a in logits]
    if not rows or not sum(len(r) for r in rows):
        return 0.0
    stacked = np.concatenate(rows)[None]  # (1, layers x valid tokens, E)
    return load_balancing_loss(stacked, topk_routing(stacked, top_k=config.top_k)[0], variant="mixtral")


def jamba_parallel(x, params, *, valid=None, return_router_loss=False):
    """The stack over the whole sequence (module docstring): x (B, T, D) hidden states, ``valid``
    (B, T) bool or None (every token real). Returns y (B, T, D), and the router loss if
    ``return_router_loss``."""
    x = _check(x, params)
    mask = _check_valid(valid, x)
    y, logits, _ = forward(x, params, mask, Float64)
    return (y, router_loss(logits, mask, params.config)) if check_bool("return_router_loss", return_router_loss) else y


def _check_cache(cache, params, batch):
    """cache None (empty) or one (k, v) / (conv, ssm) pair per layer, as ``jamba_step`` returns."""
    c = params.config
    if cache is None:
        return tuple((np.zeros((batch, 0, c.kv_heads, c.head_dim)),) * 2 if c.is_attention(i) else
                     (np.zeros((batch, c.inner, c.d_conv)), np.zeros((batch, c.inner, c.d_state)))
                     for i in range(c.layers))
    if not isinstance(cache, tuple) or len(cache) != c.layers or not all(
            isinstance(pair, tuple) and len(pair) == 2 for pair in cache):
        raise TypeError(f"cache must be None or a tuple of {c.layers} pairs of arrays (as jamba_step returns); "
                        f"got {type(cache).__name__}")
    checked = []
    for i, (a, b) in enumerate(cache):
        a, b = as_real("cache", a), as_real("cache", b)
        if c.is_attention(i):
            ok = a.ndim == 4 and a.shape[0] == batch and a.shape[2:] == (c.kv_heads, c.head_dim) and b.shape == a.shape
            want = f"keys and values (B, n, Hkv, d)=({batch}, n, {c.kv_heads}, {c.head_dim})"
        else:
            ok = (a.shape, b.shape) == ((batch, c.inner, c.d_conv), (batch, c.inner, c.d_state))
            want = (f"conv state (B, Di, d_conv)={(batch, c.inner, c.d_conv)} and SSM state (B, Di, N)="
                    f"{(batch, c.inner, c.d_state)}")
        if not ok:
            raise ValueError(f"cache must hold layer {i}'s {want} to match params and x_t; got {a.shape} and {b.shape}")
        checked.append((a, b))
    return tuple(checked)


def jamba_step(x_t, params, cache=None):
    """One decoding step: x_t (B, D) the next token's hidden state, ``cache`` the states after the
    tokens before it (None: none). Returns (y_t (B, D), the cache with x_t appended): attention
    layers append k_t, v_t to their keys and values and attend over all of them; Mamba layers roll
    the conv state left by one, write the new input last, apply the conv to it, and advance the
    SSM state one step."""
    x_t = _check(x_t, params, "x_t", "(B, D)")
    c = params.config
    cache = _check_cache(cache, params, x_t.shape[0])
    h, new_cache = x_t[:, None], []
    for i, (layer, state) in enumerate(zip(params.layers, cache)):
        h, state = _block_step(h, layer, i, c, state)
        new_cache.append(state)
    return _rms_norm(h, params.final_norm, c.eps, Float64)[:, 0], tuple(new_cache)


def _block_step(h, layer, i, c, state):
    """Layer i's residual block on one token h (B, 1, D) from its ``state``: (out, state)."""
    step = _attention_step if c.is_attention(i) else _mamba_step
    mixed, state = step(_rms_norm(h, layer["input_norm"], c.eps, Float64), layer, c, state)
    h = h + mixed
    r = _rms_norm(h, layer["ff_norm"], c.eps, Float64)
    return h + (_moe(r, layer, c, Float64)[0] if c.is_moe(i) else _mlp(r, layer, Float64)), state


def _attention_step(r, layer, c, state):
    keys = np.concatenate([state[0], np.einsum("btd,dhe->bthe", r, layer["wk"])], 1)
    values = np.concatenate([state[1], np.einsum("btd,dhe->bthe", r, layer["wv"])], 1)
    group = c.heads // c.kv_heads
    q = np.einsum("btd,dhe->bthe", r, layer["wq"])
    scores = np.einsum("bhe,bjhe->bjh", q[:, 0], np.repeat(keys, group, axis=2)) * c.head_dim ** -0.5
    P = _softmax(scores, np.ones(scores.shape, dtype=bool), 1, Float64)
    out = np.einsum("bjh,bjhe->bhe", P, np.repeat(values, group, axis=2))
    return np.einsum("bhe,hed->bd", out, layer["wo"])[:, None], (keys, values)


def _mamba_step(r, layer, c, state):
    conv_state, h = state
    xz = np.einsum("btd,de->bte", r, layer["in_proj"])[:, 0]
    u, z = xz[:, :c.inner], xz[:, c.inner:]
    conv_state = np.concatenate([conv_state[..., 1:], u[..., None]], -1)  # roll left, write last
    u = _silu((conv_state * layer["conv_weight"]).sum(-1) + layer["conv_bias"], Float64)
    delta, Bm, Cm = _ssm_inputs(u, layer, c, Float64)
    h = np.exp(delta[..., None] * -np.exp(layer["A_log"])) * h + (delta * u)[..., None] * Bm[:, None, :]
    y = ((h * Cm[:, None, :]).sum(-1) + layer["D"] * u) * _silu(z, Float64)
    return (y @ layer["out_proj"])[:, None], (conv_state, h)


def jamba_recurrent(x, params):
    """The stack token by token from an empty cache (``jamba_step``). Returns y (B, T, D)."""
    x = _check(x, params)
    return _decode(x, params, None, 0)


def jamba_prefill_decode(x, params, *, prefill):
    """The first ``prefill`` tokens in one parallel pass (its caches: the keys and values, the
    last d_conv conv inputs, the final SSM state), the rest decoded token by token from them.
    Returns y (B, T, D)."""
    x = _check(x, params)
    P = int_in_range("prefill", prefill, 0, x.shape[1])
    y, _, cache = forward(x[:, :P], params, None, Float64)
    return _decode(x, params, cache if P else None, P, first=y)


def _decode(x, params, cache, start, first=None):
    ys = [first] if first is not None else []
    for t in range(start, x.shape[1]):
        y_t, cache = jamba_step(x[:, t], params, cache)
        ys.append(y_t[:, None])
    return np.concatenate(ys, 1) if ys else np.zeros_like(x)


# ----------------------------------------------------------------------------- one layer


def _layer(params, layer):
    if not isinstance(params, JambaParams):
        raise TypeError(f"params must be a JambaParams from jamba_params(config, seed); got {type(params).__name__}")
    return int_in_range("layer", layer, 0, params.config.layers - 1)


def jamba_layer_parallel(h, params, *, layer, valid=None):
    """Layer ``layer``'s residual block (mixer and feed-forward, each after its RMSNorm, each added)
    over the whole sequence h (B, T, D). Returns its output (B, T, D)."""
    i = _layer(params, layer)
    h = _check(h, params, "h")
    return _block(h, params.layers[i], i, params.config, _check_valid(valid, h, "h"), Float64)[0]


def jamba_layer_prefill_decode(h, params, *, layer, prefill):
    """Layer ``layer``'s block over the first ``prefill`` tokens of h in one pass, then token by
    token from the cache that pass leaves (``prefill=0``: every token stepped from an empty
    cache). Returns its output (B, T, D)."""
    i = _layer(params, layer)
    h = _check(h, params, "h")
    P = int_in_range("prefill", prefill, 0, h.shape[1])
    c, weights = params.config, params.layers[i]
    first, state, _ = _block(h[:, :P], weights, i, c, None, Float64)
    state = state if P else _check_cache(None, params, h.shape[0])[i]
    outs = [first]
    for t in range(P, h.shape[1]):
        out, state = _block_step(h[:, t:t + 1], weights, i, c, state)
        outs.append(out)
    return np.concatenate(outs, 1)
