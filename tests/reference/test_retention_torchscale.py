"""Multi-scale retention against torchscale's own code (``torchscale==0.3.0`` from the package
registry, installed for the test without its dependencies: its retention needs only torch), in
float64, to 1e-14.

Two adjustments, both to run torchscale's arithmetic in float64 rather than to change it:
RetNetRelPos computes its decay and angle buffers in float32, so they are recomputed in float64
with its expressions; its RMSNorm casts to float32, so its formula x rsqrt(mean(x^2) + eps) is
applied in float64 to the outputs of parallel_forward, recurrent_forward and
chunk_recurrent_forward. ``fairscale`` and ``timm`` (imported by retnet.py for checkpointing and
drop-path, which retention does not use) are stand-ins.
"""

import subprocess
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from seqcheck.reference.retention import retention_parallel  # noqa: E402
from seqcheck.reference.retention.multiscale import (msr_chunked, msr_decays, msr_parallel, msr_recurrent,  # noqa: E402
                                                     msr_rotate)

TORCHSCALE = "torchscale==0.3.0"


@pytest.fixture(scope="module")
def torchscale(tmp_path_factory):
    target = tmp_path_factory.mktemp("torchscale")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              TORCHSCALE], capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"could not install {TORCHSCALE} from the package registry: {install.stderr[-2000:]}")
    for name, attrs in {"fairscale": {}, "fairscale.nn": {"checkpoint_wrapper": None, "wrap": None},
                        "timm": {}, "timm.models": {}, "timm.models.layers": {"drop_path": None}}.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules.setdefault(name, module)
    sys.path.insert(0, str(target))
    from torchscale.architecture import retnet
    from torchscale.component import multiscale_retention
    yield retnet, multiscale_retention
    sys.path.remove(str(target))


def _layer(torchscale, H, K, V, chunk_size, eps):
    retnet, msr = torchscale
    args = types.SimpleNamespace(decoder_embed_dim=H * K, decoder_retention_heads=H, recurrent_chunk_size=chunk_size,
                                 layernorm_eps=eps, multiway=False)
    relpos = retnet.RetNetRelPos(args).double()
    relpos.decay = torch.log(1 - 2 ** (-5 - torch.arange(H, dtype=torch.float64)))
    relpos.angle = (1.0 / (10000 ** torch.linspace(0, 1, K // 2, dtype=torch.float64))).unsqueeze(-1).repeat(1, 2).flatten()
    layer = msr.MultiScaleRetention(args, H * K, H * V, H).double()
    return relpos, layer, msr.theta_shift


def _norm(x, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _inputs(seed, B=2, T=12, H=3, K=4, V=5):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, V))


def _heads_first(x):
    return torch.from_numpy(x).transpose(1, 2)


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_parallel_forward(torchscale, eps):
    q, k, v = _inputs(0)
    B, T, H, K = q.shape
    relpos, layer, theta_shift = _layer(torchscale, H, K, v.shape[3], 4, eps)
    (sin, cos), mask = relpos(T)
    qr, kr = theta_shift(_heads_first(q), sin, cos), theta_shift(_heads_first(k) * layer.scaling, sin, cos)
    theirs = _norm(layer.parallel_forward(qr, kr, torch.from_numpy(v).reshape(B, T, -1), mask), eps)
    np.testing.assert_allclose(msr_parallel(q, k, v, eps=eps), theirs.numpy(), rtol=0, atol=1e-14)


@pytest.mark.parametrize("eps", [0.0, 1e-6])
def test_recurrent_forward(torchscale, eps):
    q, k, v = _inputs(1)
    B, T, H, K = q.shape
    relpos, layer, theta_shift = _layer(torchscale, H, K, v.shape[3], 4, eps)
    state, outs = {}, []
    for t in range(T):
        (sin, cos), decay = relpos(t + 1, activate_recurrent=True)
        qr = theta_shift(_heads_first(q[:, t:t + 1]), sin, cos)
        kr = theta_shift(_heads_first(k[:, t:t + 1]) * layer.scaling, sin, cos)
        outs.append(_norm(layer.recurrent_forward(qr, kr, torch.from_numpy(v[:, t:t + 1]).reshape(B, 1, -1), decay,
                                                  state), eps))
    theirs = torch.stack(outs, dim=1).numpy()
    np.testing.assert_allclose(msr_recurrent(q, k, v, eps=eps), theirs, rtol=0, atol=1e-14)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, 12])
def test_chunk_recurrent_forward(torchscale, chunk_size):
    q, k, v = _inputs(2)
    B, T, H, K = q.shape
    eps = 1e-6
    relpos, layer, theta_shift = _layer(torchscale, H, K, v.shape[3], chunk_size, eps)
    (sin, cos), inner_mask = relpos(T, chunkwise_recurrent=True)
    qr, kr = theta_shift(_heads_first(q), sin, cos), theta_shift(_heads_first(k) * layer.scaling, sin, cos)
    out = layer.chunk_recurrent_forward(qr, kr, torch.from_numpy(v).reshape(B, T, -1), inner_mask)
    theirs = _norm(out.reshape(B, T, H, -1), eps).numpy()
    np.testing.assert_allclose(msr_chunked(q, k, v, chunk_size=chunk_size, eps=eps), theirs, rtol=0, atol=1e-14)


def test_torchscale_decays_and_rotation_are_ours(torchscale):
    H, K, T = 3, 6, 5
    relpos, _, theta_shift = _layer(torchscale, H, K, 2, 4, 0.0)
    np.testing.assert_allclose(relpos.decay.exp().numpy(), msr_decays(H), rtol=1e-15)
    x = np.random.default_rng(3).standard_normal((1, T, H, K))
    (sin, cos), _ = relpos(T)
    np.testing.assert_allclose(msr_rotate(x, np.arange(T)), theta_shift(_heads_first(x), sin, cos).transpose(1, 2).numpy(),
                               rtol=0, atol=1e-15)


def test_the_three_forms_agree_after_the_norm_only_with_eps_zero():
    """Each form is the retention output times a positive factor per row, which RMSNorm removes
    exactly when eps = 0 (torchscale #40, #47): with eps = 0 they agree to rounding, with eps > 0
    not, while each equals the normalised core retention on the rotated, scaled q, k."""
    q, k, v = _inputs(4, T=16, K=6)
    T, H, K = q.shape[1], q.shape[2], q.shape[3]
    forms = {"parallel": msr_parallel, "recurrent": msr_recurrent,
             "chunked": lambda *a, eps: msr_chunked(*a, chunk_size=5, eps=eps)}
    exact = {name: f(q, k, v, eps=0.0) for name, f in forms.items()}
    core = retention_parallel(msr_rotate(q, np.arange(T)), msr_rotate(k * K ** -0.5, np.arange(T)), v, msr_decays(H))
    normalised_core = core / np.sqrt((core ** 2).mean(-1, keepdims=True))
    for out in exact.values():
        np.testing.assert_allclose(out, normalised_core, rtol=0, atol=1e-12)
    with_eps = {name: f(q, k, v, eps=1e-2) for name, f in forms.items()}
    assert np.abs(with_eps["parallel"] - with_eps["recurrent"]).max() > 1e-6
