"""RWKV-4, -5 and -6 time mixing against the ``rwkv`` pip package's own CPU code (``rwkv==0.8.32``
from the package registry, installed for the test without its dependencies: its model file needs
only torch), in float64, to 1e-12.

The package's layer functions (``RWKV.att_seq``, ``att_seq_v5``, ``att_seq_v6_0``) are run
unbound on float64 tensors: its model file is executed with ``torch.float32`` read as
``torch.float64`` and ``.float()`` as ``.double()`` (it casts k, v and the decays to float32),
with TorchScript and CUDA off. Each layer wraps the WKV in projections; the test gives it
identity output projections and computes the same r, k, v, decays and gate from the layer's
inputs, so what is compared is the WKV (and the v5/v6 GroupNorm) and the returned state.
"""

import os
import subprocess
import sys
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from seqcheck.reference.rwkv import wkv4_recurrent, wkv6_parallel, wkv6_recurrent, wkv_group_norm  # noqa: E402

RWKV = "rwkv==0.8.32"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    target = tmp_path_factory.mktemp("rwkv")
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                              RWKV], capture_output=True, text=True)
    if install.returncode != 0:
        pytest.fail(f"could not install {RWKV} from the package registry: {install.stderr[-2000:]}")
    path = target / "rwkv" / "model.py"
    source = path.read_text().replace("torch.float32", "torch.float64").replace(".float()", ".double()")
    saved = {name: os.environ.get(name) for name in ("RWKV_JIT_ON", "RWKV_CUDA_ON")}
    os.environ.update(RWKV_JIT_ON="0", RWKV_CUDA_ON="0")
    module = types.ModuleType("rwkv_model_float64")
    module.__file__ = str(path)
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)
    return module.RWKV


def tensor(rng, *shape, scale=1.0):
    return torch.from_numpy(scale * rng.standard_normal(shape))


def layer_norm(x, rng):
    weight, bias = tensor(rng, x.shape[-1]), tensor(rng, x.shape[-1])
    return weight, bias, F.layer_norm(x, (x.shape[-1],), weight=weight, bias=bias)


@pytest.mark.parametrize("seed", range(3))
def test_wkv4_against_att_seq(model, seed):
    rng = np.random.default_rng(seed)
    T, C = 16, 6
    x, sx = tensor(rng, T, C), tensor(rng, C)
    ln_w, ln_b, xx = layer_norm(x, rng)
    ones, eye = torch.ones(C, dtype=torch.float64), torch.eye(C, dtype=torch.float64)
    kw, vw, rw = tensor(rng, C, C, scale=8.0), tensor(rng, C, C), tensor(rng, C, C)  # k up to about 30
    t_decay, t_first = -torch.exp(tensor(rng, C)), tensor(rng, C)  # the package's w = -exp(time_decay)
    aa, bb, pp = tensor(rng, C), torch.from_numpy(rng.uniform(0.5, 2.0, C)), tensor(rng, C)
    out, _, aa_out, bb_out, pp_out = model.att_seq(
        None, x, sx, aa, bb, pp, ln_w, ln_b, ones, ones, ones, t_decay, t_first, kw, vw, rw, eye,
        *[None] * 16)
    k, v, r = xx @ kw, xx @ vw, torch.sigmoid(xx @ rw)
    state = np.stack([aa.numpy(), bb.numpy(), pp.numpy()], axis=-1)[None]
    wkv, ours = wkv4_recurrent(k.numpy()[None], v.numpy()[None], -t_decay.numpy(), t_first.numpy(),
                               initial_state=state, return_state=True)
    np.testing.assert_allclose(r.numpy() * wkv[0], (out - x).numpy(), rtol=0, atol=1e-12)
    theirs = np.stack([aa_out.numpy(), bb_out.numpy(), pp_out.numpy()], axis=-1)
    # p and q are scaled by e^-o: compare the sums they stand for
    np.testing.assert_allclose(ours[0, :, :2] * np.exp(ours[0, :, 2:] - theirs[:, 2:]), theirs[:, :2], rtol=1e-12)


def _heads(x, H):
    """(T, H * N) -> (1, T, H, N)."""
    return x.numpy().reshape(1, x.shape[0], H, -1)


def _state(s):
    """The package's per-head state (H, N, N), k-major as ours: (1, H, K, V)."""
    return s.numpy()[None]


@pytest.mark.parametrize("seed", range(3))
def test_wkv5_parallel_against_att_seq_v5(model, seed):
    rng = np.random.default_rng(seed)
    T, H, N = 12, 2, 4
    C = H * N
    x, sx = tensor(rng, T, C), tensor(rng, C)
    ln_w, ln_b, xx = layer_norm(x, rng)
    lx_w, lx_b = tensor(rng, C), tensor(rng, C)
    ones, eye = torch.ones(C, dtype=torch.float64), torch.eye(C, dtype=torch.float64)
    kw, vw, rw = tensor(rng, C, C), tensor(rng, C, C), tensor(rng, C, C)
    t_decay = torch.exp(-torch.exp(tensor(rng, H)))  # v5.0: one decay per head, w itself
    t_first, s = tensor(rng, H), tensor(rng, H, N, N)
    out, _, s_out = model.att_seq_v5(
        None, x, sx, s, ln_w, ln_b, lx_w, lx_b, ones, ones, ones, t_decay, t_first, kw, vw, rw, eye, *[None] * 16)
    r, k, v = (_heads(xx @ w, H) for w in (rw, kw, vw))
    g = np.log(t_decay.numpy())
    wkv, state = wkv6_recurrent(r, k, v, g, u=t_first.numpy(), initial_state=_state(s), return_state=True)
    theirs = (out - x).numpy().reshape(1, T, H, N)
    np.testing.assert_allclose(wkv_group_norm(wkv, weight=lx_w.numpy(), bias=lx_b.numpy()), theirs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(state, _state(s_out), rtol=0, atol=1e-12)
    # the package's form is the parallel one: ours from a zero state agrees as well
    zero_out, _, _ = model.att_seq_v5(
        None, x, sx, torch.zeros(H, N, N, dtype=torch.float64), ln_w, ln_b, lx_w, lx_b, ones, ones, ones, t_decay,
        t_first, kw, vw, rw, eye, *[None] * 16)
    np.testing.assert_allclose(wkv_group_norm(wkv6_parallel(r, k, v, g, u=t_first.numpy()), weight=lx_w.numpy(),
                                              bias=lx_b.numpy()),
                               (zero_out - x).numpy().reshape(1, T, H, N), rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_wkv6_against_att_seq_v6_0(model, seed):
    rng = np.random.default_rng(seed)
    T, H, N, D = 12, 2, 4, 3
    C = H * N
    x, sx = tensor(rng, T, C), tensor(rng, C)
    ln_w, ln_b, xx = layer_norm(x, rng)
    lx_w, lx_b = tensor(rng, C), tensor(rng, C)
    zeros, eye = torch.zeros(C, dtype=torch.float64), torch.eye(C, dtype=torch.float64)
    tm_w1, tm_w2 = torch.zeros(C, 5 * D, dtype=torch.float64), tensor(rng, 5, D, C)  # token shift mixing off
    td_w1, td_w2 = tensor(rng, C, D), tensor(rng, D, C)  # the data-dependent decay's low-rank map
    t_decay, t_first = tensor(rng, H, N), tensor(rng, H, N, 1)
    kw, vw, rw, gw = (tensor(rng, C, C) for _ in range(4))
    s = tensor(rng, H, N, N)
    out, _, s_out = model.att_seq_v6_0(
        None, x, sx, s, ln_w, ln_b, lx_w, lx_b, zeros, zeros, zeros, zeros, zeros, zeros, tm_w1, tm_w2, td_w1, td_w2,
        t_decay, t_first, kw, vw, rw, gw, eye, *[None] * 20)
    r, k, v = (_heads(xx @ w, H) for w in (rw, kw, vw))
    g = -np.exp(_heads(t_decay.reshape(1, C) + torch.tanh(xx @ td_w1) @ td_w2, H))
    gate = F.silu(xx @ gw).numpy().reshape(1, T, H, N)
    wkv, state = wkv6_recurrent(r, k, v, g, u=t_first.numpy()[..., 0], initial_state=_state(s), return_state=True)
    theirs = (out - x).numpy().reshape(1, T, H, N)
    np.testing.assert_allclose(wkv_group_norm(wkv, weight=lx_w.numpy(), bias=lx_b.numpy()) * gate, theirs,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(state, _state(s_out), rtol=0, atol=1e-12)
