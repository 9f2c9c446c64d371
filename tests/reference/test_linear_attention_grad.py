"""Linear attention's gradient (``linear_attention_vjp``) against central differences and torch
autograd, elu + 1 and identity features, with an initial state and a state cotangent; bad input."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck.reference.linear_attention import linear_attention_recurrent, linear_attention_vjp

pytest.importorskip("torch")

NAMES = ("q", "k", "v")


def problem(seed, feature_map, B=2, T=6, H=2, D=3, M=4):
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal((B, T, H, D)), rng.standard_normal((B, T, H, D))
    if feature_map == "identity":
        q, k = np.abs(q) + 0.1, np.abs(k) + 0.1
    args = dict(q=q, k=k, v=rng.standard_normal((B, T, H, M)), feature_map=feature_map, eps=0.5,
                initial_state=(rng.standard_normal((B, H, D, M)), np.abs(rng.standard_normal((B, H, D)))))
    cotangents = (rng.standard_normal((B, T, H, M)), (rng.standard_normal((B, H, D, M)), rng.standard_normal((B, H, D))))
    return args, cotangents, rng


def _flat(args, cotangents):
    """The initial state and the state cotangent as separate arrays, for the directional check."""
    (S0, z0), (dS, dz) = args["initial_state"], cotangents[1]
    return {**args, "S0": S0, "z0": z0}, (cotangents[0], dS, dz)


@pytest.mark.parametrize("feature_map", ["elu", "identity"])
@pytest.mark.parametrize("seed", range(2))
def test_linear_attention_vjp_matches_central_differences(feature_map, seed):
    args, cotangents, rng = problem(seed, feature_map)
    grads = linear_attention_vjp(**args, cotangent=cotangents[0], state_cotangent=cotangents[1])
    flat, flat_cotangents = _flat(args, cotangents)
    grads = {**grads, "S0": grads["initial_state"][0], "z0": grads["initial_state"][1]}

    def forward(S0, z0, initial_state, **rest):
        out, (S, z) = linear_attention_recurrent(**rest, initial_state=(S0, z0), return_state=True)
        return out, S, z

    assert_central_differences(forward, flat, flat_cotangents, grads, NAMES + ("S0", "z0"), rng)


@pytest.mark.parametrize("feature_map", ["elu", "identity"])
def test_linear_attention_vjp_matches_torch_autograd(feature_map):
    from kernels.torch_linear import torch_linear_attention

    args, (dout, (dS, dz)), _ = problem(7, feature_map)
    grads = linear_attention_vjp(**args, cotangent=dout, state_cotangent=(dS, dz))
    S0, z0 = args["initial_state"]
    augmented = {**args, "initial_state": np.concatenate([S0, z0[..., None]], axis=-1), "return_state": True}
    grads = {**grads, "initial_state": np.concatenate([grads["initial_state"][0], grads["initial_state"][1][..., None]],
                                                      axis=-1)}
    assert_matches_autograd(torch_linear_attention, augmented, (dout, np.concatenate([dS, dz[..., None]], axis=-1)),
                            grads, NAMES + ("initial_state",))


def test_a_feature_map_without_a_derivative_is_refused():
    args, cotangents, _ = problem(0, "elu")
    with pytest.raises(TypeError, match="feature_map must be 'elu' or 'identity' for the gradient"):
        linear_attention_vjp(**{**args, "feature_map": np.tanh}, cotangent=cotangents[0])
