"""The Jamba stack (reference/hybrid) against a torch float64 port of Hugging Face's Jamba
(tests/peers/hf_jamba.py), its decode branch against the conv-state semantics of HF's cache, and
the claims' extra mutants: a conv state cached in float32 (the layer claim's tight bound), a
Mamba mixer blind to the padding mask."""

import numpy as np
import pytest

from mutants import hybrid as wrong
from seqcheck import equiv
from seqcheck.reference.hybrid import JambaConfig, jamba_params, jamba_parallel, jamba_step

torch = pytest.importorskip("torch")

CONFIGS = [JambaConfig(), JambaConfig(layers=3, attention_period=1, attention_offset=0),
           JambaConfig(layers=2, attention_period=2, attention_offset=1, expert_period=1, expert_offset=0, kv_heads=2,
                       heads=2, d_conv=1, top_k=1)]


@pytest.mark.parametrize("config", CONFIGS, ids=["default", "attention_only", "mha_k1"])
@pytest.mark.parametrize("seed", range(2))
def test_the_stack_matches_hf_jamba(config, seed):
    from peers.hf_jamba import forward

    params = jamba_params(config, seed)
    x = np.random.default_rng(seed).standard_normal((2, 7, config.dim))
    np.testing.assert_allclose(jamba_parallel(x, params), forward(x, params).numpy(), rtol=1e-13, atol=1e-13)


def test_left_padding_matches_hf_jamba_masks():
    from peers.hf_jamba import forward

    params = jamba_params(JambaConfig(), 1)
    rng = np.random.default_rng(1)
    x, valid = rng.standard_normal((2, 6, 8)), np.ones((2, 6), bool)
    valid[0, :2] = False
    ours = jamba_parallel(x, params, valid=valid)
    theirs = forward(x, params, valid).numpy()
    np.testing.assert_allclose(ours[valid], theirs[valid], rtol=1e-13, atol=1e-13)


def test_the_step_matches_hf_mamba_decode_branch():
    from peers.hf_jamba import mamba, mamba_decode, rms_norm

    c = JambaConfig(layers=1, attention_period=2, attention_offset=1, expert_period=2, expert_offset=1)
    params = jamba_params(c, 2)
    w = params.layers[0]
    x = np.random.default_rng(2).standard_normal((1, 5, 8))
    r = rms_norm(torch.tensor(x[:, :4]), w["input_norm"], c.eps)
    _, ssm_state, conv_state = mamba(r, w, c)
    out, conv_state, ssm_state = mamba_decode(rms_norm(torch.tensor(x[:, 4:]), w["input_norm"], c.eps), w, c,
                                              conv_state, ssm_state)
    cache = None
    for t in range(5):
        _, cache = jamba_step(x[:, t], params, cache)
    np.testing.assert_allclose(cache[0][0], conv_state.numpy(), rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(cache[0][1], ssm_state.numpy(), rtol=1e-12, atol=1e-14)


def test_a_float32_conv_state_is_rejected_by_the_layer_bound():
    result = equiv.run_claim("hybrid.jamba_layer.prefill_decode == hybrid.jamba_layer.parallel",
                             impl=wrong.layer_decode_with_a_float32_conv_state, seed=0, max_examples=200)
    assert not result.passed and result.worst_ratio > 1e3


def test_a_mamba_mixer_blind_to_padding_is_rejected():
    result = equiv.run_claim("hybrid.jamba.left_padding", impl=wrong.mamba_blind_to_padding, seed=0, max_examples=200)
    assert not result.passed


def test_the_params_rebuild_from_their_recipe():
    params = jamba_params(JambaConfig(dim=4, layers=2), 5)
    assert repr(params) == f"jamba_params({params.config!r}, seed=5)"
    again = jamba_params(*params.__seqcheck_recipe__[2])
    assert all(np.array_equal(a[n], b[n]) for a, b in zip(params.layers, again.layers) for n in a)
