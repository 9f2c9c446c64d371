"""Deliberately wrong Jamba stacks: each must be rejected by a claim. Each is one bug of the kind
hybrid decoders hit (the step-versus-forward mismatches of state-spaces/mamba #500 and #683 are
this class): the current token attending before its key is cached, the conv state dropped
across the prefill/decode split, the SSM state handed over one step stale, the router loss
counting padded positions; and, for the tests, the conv state cached in float32 and a Mamba
mixer blind to the padding mask."""

import numpy as np

from seqcheck.reference.hybrid import jamba as J


def _block_step(h, layer, i, c, state, *, attention_step=None, mamba_step=None):
    step = (attention_step or J._attention_step) if c.is_attention(i) else (mamba_step or J._mamba_step)
    mixed, state = step(J._rms_norm(h, layer["input_norm"], c.eps, J.Float64), layer, c, state)
    h = h + mixed
    r = J._rms_norm(h, layer["ff_norm"], c.eps, J.Float64)
    return h + (J._moe(r, layer, c, J.Float64)[0] if c.is_moe(i) else J._mlp(r, layer, J.Float64)), state


def _decode(x, params, cache, start, first=None, **steps):
    c = params.config
    cache = J._check_cache(cache, params, x.shape[0])
    ys = [first] if first is not None else []
    for t in range(start, x.shape[1]):
        h, new_cache = x[:, t:t + 1], []
        for i, (layer, state) in enumerate(zip(params.layers, cache)):
            h, state = _block_step(h, layer, i, c, state, **steps)
            new_cache.append(state)
        cache = tuple(new_cache)
        ys.append(J._rms_norm(h, params.final_norm, c.eps, J.Float64))
    return np.concatenate(ys, 1) if ys else np.zeros_like(x)


def _attending_before_appending(r, layer, c, state):
    """Attention over the cached keys only, the current token's appended afterwards."""
    out = _over(r, layer, c, state) if state[0].shape[1] else np.zeros_like(r)
    _, new_state = J._attention_step(r, layer, c, state)
    return out, new_state


def _over(r, layer, c, state):
    """Attention of r's query over exactly the cached keys and values ``state``."""
    group = c.heads // c.kv_heads
    q = np.einsum("btd,dhe->bthe", r, layer["wq"])[:, 0]
    scores = np.einsum("bhe,bjhe->bjh", q, np.repeat(state[0], group, axis=2)) * c.head_dim ** -0.5
    P = J._softmax(scores, np.ones(scores.shape, dtype=bool), 1, J.Float64)
    out = np.einsum("bjh,bjhe->bhe", P, np.repeat(state[1], group, axis=2))
    return np.einsum("bhe,hed->bd", out, layer["wo"])[:, None]


def recurrent_attending_before_appending(x, params):
    """Each token attends over the cache before its own key and value are appended."""
    return _decode(np.asarray(x, dtype=np.float64), params, None, 0, attention_step=_attending_before_appending)


def prefill_decode_without_the_conv_state(x, params, *, prefill):
    """The prefill's conv states not handed to the decoder (zeros, as a fresh cache)."""
    x = np.asarray(x, dtype=np.float64)
    y, _, cache = J.forward(x[:, :prefill], params, None, J.Float64)
    if not prefill:
        return _decode(x, params, None, 0)
    cache = tuple(state if params.config.is_attention(i) else (np.zeros_like(state[0]), state[1])
                  for i, state in enumerate(cache))
    return _decode(x, params, cache, prefill, first=y)


def _layer_decode(h, params, layer, prefill, hand_over):
    c, weights = params.config, params.layers[layer]
    h = np.asarray(h, dtype=np.float64)
    first, state, _ = J._block(h[:, :prefill], weights, layer, c, None, J.Float64)
    state = hand_over(h, weights, layer, c, prefill, state) if prefill else J._check_cache(None, params, h.shape[0])[layer]
    outs = [first]
    for t in range(prefill, h.shape[1]):
        out, state = J._block_step(h[:, t:t + 1], weights, layer, c, state)
        outs.append(out)
    return np.concatenate(outs, 1)


def _stale_ssm_state(h, weights, layer, c, prefill, state):
    """The SSM state of the prefill's second-to-last step (the last state returned one step early)."""
    if c.is_attention(layer):
        return state
    _, (_, before_last), _ = J._block(h[:, :prefill - 1], weights, layer, c, None, J.Float64)
    return state[0], before_last


def layer_decode_with_a_stale_ssm_state(h, params, *, layer, prefill):
    """One layer's decoding from the SSM state one step before the prefill's end."""
    return _layer_decode(h, params, layer, prefill, _stale_ssm_state)


def layer_decode_with_a_float32_conv_state(h, params, *, layer, prefill):
    """The conv state cached in float32 (a kernel's half-precision cache), everything else float64."""
    def rounded(h, weights, layer, c, prefill, state):
        return state if c.is_attention(layer) else (state[0].astype(np.float32).astype(np.float64), state[1])

    return _layer_decode(h, params, layer, prefill, rounded)


def router_loss_over_padded_positions(x, params, *, valid=None, return_router_loss=False):
    """The router loss averaged over every position, padding included."""
    y, logits, _ = J.forward(np.asarray(x, dtype=np.float64), params, J._check_valid(valid, np.asarray(x)), J.Float64)
    return (y, J.router_loss(logits, None, params.config)) if return_router_loss else y


def mamba_blind_to_padding(x, params, *, valid=None, return_router_loss=False):
    """The Mamba mixer run without the mask (attention and the router loss still masked): the
    padding's values reach the real tokens through the conv window and the SSM state."""
    x = np.asarray(x, dtype=np.float64)
    original = J._mamba

    def unmasked_mamba(h, layer, c, valid, ar):
        return original(h, layer, c, None, ar)

    J._mamba = unmasked_mamba
    try:
        y, logits, _ = J.forward(x, params, J._check_valid(valid, x), J.Float64)
    finally:
        J._mamba = original
    return (y, J.router_loss(logits, J._check_valid(valid, x), params.config)) if return_router_loss else y


MUTANTS = {
    "hybrid.jamba.recurrent == hybrid.jamba.parallel": recurrent_attending_before_appending,
    "hybrid.jamba.prefill_decode == hybrid.jamba.parallel": prefill_decode_without_the_conv_state,
    "hybrid.jamba_layer.prefill_decode == hybrid.jamba_layer.parallel": layer_decode_with_a_stale_ssm_state,
    "hybrid.jamba.left_padding": router_loss_over_padded_positions,
}
"""The mutant each claim of the family must reject, by claim key."""
