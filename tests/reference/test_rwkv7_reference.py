"""The RWKV-7 wkv7 references (reference/rwkv7) against the originals' own code, form against form
at every chunk size, exactly on Fractions, against the delta rule; and their argument checks.

The originals, read from the wheels the package registry serves, run in float64:

- ``rwkv==0.8.32`` (BlinkDL's pip package, ``rwkv/model.py``): ``RWKV_x070_TMix_one``, RWKV-7's
  time mixing for one token, the function ``BlinkDL/RWKV-LM: RWKV-v7/rwkv_v7_numpy.py`` verifies
  itself against (that file is in no package). Its source is taken from the wheel with
  ``.float()`` replaced by ``.double()`` and run undecorated (the package scripts it with
  torch.jit). Its projections are chosen to hand the wkv the per-step vectors we draw (x = 1,
  diagonal R, K, V; the decay and the in-context rate a_gate from biases alone); it returns the
  state after the token, which is compared (RWKV-LM holds it (V, K), ours is (K, V)).
- ``fla-core==0.6.0`` (``fla/ops/generalized_delta_rule/dplr/naive.py``, with einops):
  ``dplr_recurrence`` and ``dplr_chunkwise``, fla's naive generalised (DPLR) delta rule that its
  ``chunk_rwkv7``/``fused_recurrent_rwkv7`` kernels compute (q scaled by K^-1/2 there); float32
  hard-coded as ``.float()`` and ``dtype=torch.float`` is replaced by float64.
"""

import ast
import re
import subprocess
import sys
import textwrap
import zipfile
from fractions import Fraction

import numpy as np
import pytest

from seqcheck.reference.delta import delta_rule_recurrent
from seqcheck.reference.rwkv7 import wkv7_chunked, wkv7_recurrent, wkv7_step

torch = pytest.importorskip("torch")

RWKV, FLA = "rwkv==0.8.32", "fla-core==0.6.0"


def _download(folder, requirement):
    fetch = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), requirement],
                           capture_output=True, text=True)
    if fetch.returncode:
        pytest.fail(f"could not fetch {requirement} from the package registry: {fetch.stderr[-1500:]}")
    wheel, = folder.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.fixture(scope="module")
def tmix_one(tmp_path_factory):
    """rwkv 0.8.32's RWKV_x070_TMix_one, in float64."""
    with _download(tmp_path_factory.mktemp("rwkv"), RWKV) as archive:
        source = archive.read("rwkv/model.py").decode()
    node = next(n for n in ast.walk(ast.parse(source))
                if isinstance(n, ast.FunctionDef) and n.name == "RWKV_x070_TMix_one")
    function = textwrap.dedent(ast.get_source_segment(source, node)).replace(".float()", ".double()")
    namespace = {"torch": torch}
    exec(compile(function, "rwkv/model.py", "exec"), namespace)
    return namespace["RWKV_x070_TMix_one"]


@pytest.fixture(scope="module")
def dplr(tmp_path_factory):
    """fla-core 0.6.0's naive DPLR module, in float64."""
    folder = tmp_path_factory.mktemp("fla")
    einops = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                             str(folder / "site"), "einops"], capture_output=True, text=True)
    if einops.returncode:
        pytest.fail(f"could not install einops from the package registry: {einops.stderr[-1500:]}")
    with _download(folder, FLA) as archive:
        source = archive.read("fla/ops/generalized_delta_rule/dplr/naive.py").decode()
    source = re.sub(r"\.float\(\)", ".double()", source).replace("dtype=torch.float,", "dtype=torch.float64,")
    sys.path.insert(0, str(folder / "site"))
    namespace = {}
    exec(compile(source, "fla/ops/generalized_delta_rule/dplr/naive.py", "exec"), namespace)
    yield namespace
    sys.path.remove(str(folder / "site"))


def _inputs(seed, B=2, T=8, H=3, K=4, V=5):
    """RWKV-LM's wkv7 inputs: a = -kk, b = kk * a_gate, kk L2-normalised; log-decays, an initial state."""
    rng = np.random.default_rng(seed)
    r, k, kk = (rng.standard_normal((B, T, H, K)) for _ in range(3))
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    log_w = -np.logaddexp(0, -rng.standard_normal((B, T, H, K)))
    return (r, log_w, k, rng.standard_normal((B, T, H, V)), -kk, kk * rng.uniform(0, 1, (B, T, H, K)),
            rng.standard_normal((B, H, K, V)))


def test_wkv7_equals_rwkv_packages_time_mixing(tmix_one):
    """Token by token through RWKV_x070_TMix_one: its state after each token is our state transposed."""
    rng = np.random.default_rng(0)
    T, H, N = 6, 2, 4
    C = H * N
    r, k, v, kk_raw = (rng.standard_normal((T, C)) for _ in range(4))
    w0, a0, k_k = rng.standard_normal((T, C)), rng.standard_normal((T, C)), rng.uniform(0.5, 1.5, (T, C))
    decay = np.exp(-0.606531 / (1 + np.exp(-w0)))  # the package's w = exp(-0.606531 sigmoid(w0 + 0))
    a_gate = 1 / (1 + np.exp(-a0))
    kk = (k * k_k).reshape(T, H, N)
    kk /= np.linalg.norm(kk, axis=-1, keepdims=True)
    S0 = rng.standard_normal((1, H, N, N))

    zeros, col, row = torch.zeros(C, dtype=torch.float64), torch.zeros(C, 1, dtype=torch.float64), \
        torch.zeros(1, C, dtype=torch.float64)
    theirs, states = torch.from_numpy(np.ascontiguousarray(S0[0].swapaxes(-1, -2))), []
    for t in range(T):
        diag = [torch.diag(torch.from_numpy(x[t])) for x in (r, k, v)]
        _, _, theirs, _ = tmix_one(0, H, N, torch.ones(C, dtype=torch.float64), zeros, None, theirs,
                                   zeros, zeros, zeros, zeros, zeros, zeros,
                                   torch.from_numpy(w0[t]), col, row, torch.from_numpy(a0[t]), col, row,
                                   zeros, col, row, col, row + 1, torch.from_numpy(k_k[t]), zeros, zeros,
                                   *diag, torch.eye(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64),
                                   zeros)
        states.append(theirs.numpy().swapaxes(-1, -2))

    def heads(x):
        return x.reshape(1, T, H, N)

    a, b = -kk[None], (kk * a_gate.reshape(T, H, N))[None]
    for t in range(1, T + 1):
        ours, state = wkv7_recurrent(heads(r)[:, :t], heads(decay)[:, :t], heads(k)[:, :t], heads(v)[:, :t],
                                     a[:, :t], b[:, :t], w_kind="decay", initial_state=S0, return_state=True)
        np.testing.assert_allclose(state[0], states[t - 1], rtol=0, atol=1e-13)
        np.testing.assert_allclose(ours[0, -1], np.einsum("hkv,hk->hv", states[t - 1], heads(r)[0, t - 1]),
                                   rtol=0, atol=1e-13)  # y_t = S'_t r_t


def test_wkv7_equals_flas_dplr_recurrence_and_chunkwise_form(dplr):
    r, log_w, k, v, a, b, S0 = _inputs(1)
    K = r.shape[-1]
    head_first = [torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 1, 2))) for x in (r, k, v, a, b, log_w)]
    out, state = dplr["dplr_recurrence"](*head_first, initial_state=torch.from_numpy(S0))
    ours, our_state = wkv7_recurrent(r, log_w, k, v, a, b, scale=K ** -0.5, initial_state=S0, return_state=True)
    np.testing.assert_allclose(ours, np.swapaxes(out.numpy(), 1, 2), rtol=0, atol=1e-13)
    np.testing.assert_allclose(our_state, state.numpy(), rtol=0, atol=1e-13)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # its chunk matrices are made with torch.zeros(...)
    try:
        out, state = dplr["dplr_chunkwise"](*head_first, initial_state=torch.from_numpy(S0), chunk_size=4)
    finally:
        torch.set_default_dtype(default)
    chunked, chunked_state = wkv7_chunked(r, log_w, k, v, a, b, chunk_size=4, scale=K ** -0.5, initial_state=S0,
                                          return_state=True)
    np.testing.assert_allclose(chunked, np.swapaxes(out.numpy(), 1, 2), rtol=0, atol=1e-13)
    np.testing.assert_allclose(chunked_state, state.numpy(), rtol=0, atol=1e-13)


@pytest.mark.parametrize("w_kind", ["log", "decay", "loglog"])
def test_chunked_equals_recurrent_at_every_chunk_size_through_resets(w_kind):
    r, log_w, k, v, a, b, S0 = _inputs(3, T=9)
    log_w[0, 4, 1] = -np.inf  # a reset of every channel of one head
    with np.errstate(divide="ignore"):
        w = {"log": log_w, "decay": np.exp(log_w), "loglog": np.log(-log_w)}[w_kind]
    want, want_state = wkv7_recurrent(r, w, k, v, a, b, w_kind=w_kind, initial_state=S0, return_state=True)
    reference = wkv7_recurrent(r, log_w, k, v, a, b, initial_state=S0)
    np.testing.assert_allclose(want, reference, rtol=0, atol=1e-12)
    for chunk_size in range(1, 11):
        got, state = wkv7_chunked(r, w, k, v, a, b, w_kind=w_kind, chunk_size=chunk_size, initial_state=S0,
                                  return_state=True)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(state, want_state, rtol=0, atol=1e-12)


def test_a_sequence_equals_two_chunks_carried_through_the_state():
    r, w, k, v, a, b, S0 = _inputs(4, T=10)
    full, full_state = wkv7_chunked(r, w, k, v, a, b, chunk_size=4, initial_state=S0, return_state=True)
    for s in range(1, 10):
        first, state = wkv7_chunked(*(x[:, :s] for x in (r, w, k, v, a, b)), chunk_size=3, initial_state=S0,
                                    return_state=True)
        second, last = wkv7_chunked(*(x[:, s:] for x in (r, w, k, v, a, b)), chunk_size=3, initial_state=state,
                                    return_state=True)
        np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, rtol=0, atol=1e-12)
        np.testing.assert_allclose(last, full_state, rtol=0, atol=1e-12)


def test_steps_equal_one_pass():
    r, w, k, v, a, b, S0 = _inputs(5)
    full, full_state = wkv7_recurrent(r, w, k, v, a, b, scale=0.5, initial_state=S0, return_state=True)
    state = S0
    for t in range(r.shape[1]):
        out, state = wkv7_step(*(x[:, t] for x in (r, w, k, v, a, b)), state=state, scale=0.5)
        np.testing.assert_allclose(out, full[:, t], rtol=0, atol=1e-13)
    np.testing.assert_allclose(state, full_state, rtol=0, atol=1e-13)


@pytest.mark.parametrize("gated", [False, True])
def test_reduces_to_the_delta_rule(gated):
    """d = exp(g), b = k, a = -exp(g) beta k, value beta v: the (gated) delta rule, whose gate
    decays the state before the erase reads it (so the gate belongs in a as well as in d)."""
    rng = np.random.default_rng(6)
    B, T, H, K, V = 2, 8, 3, 4, 5
    q, k, v = rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, V))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    beta, S0 = rng.uniform(0, 2, (B, T, H)), rng.standard_normal((B, H, K, V))
    g = -np.logaddexp(0, -rng.standard_normal((B, T, H))) if gated else np.zeros((B, T, H))
    want, want_state = delta_rule_recurrent(q, k, v, beta, g=g if gated else None, initial_state=S0,
                                            return_state=True)
    got, state = wkv7_recurrent(q, np.repeat(g[..., None], K, axis=-1), k, beta[..., None] * v,
                                -(np.exp(g) * beta)[..., None] * k, k, scale=K ** -0.5, initial_state=S0,
                                return_state=True)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)
    np.testing.assert_allclose(state, want_state, rtol=0, atol=1e-13)


def test_exactly_equal_on_fractions():
    rng = np.random.default_rng(7)

    def fractions(shape, low, high, den):
        return np.vectorize(lambda n: Fraction(int(n), den), otypes=[object])(rng.integers(low, high, shape))

    r, k, a, b = (fractions((1, 6, 2, 2), -3, 4, 3) for _ in range(4))
    v, decay = fractions((1, 6, 2, 3), -3, 4, 3), fractions((1, 6, 2, 2), 0, 4, 3)
    S0 = fractions((1, 2, 2, 3), -2, 3, 5)
    want = wkv7_recurrent(r, decay, k, v, a, b, w_kind="decay", initial_state=S0)
    assert want.dtype == object and isinstance(want.flat[0], Fraction)
    for chunk_size in range(1, 8):
        assert (wkv7_chunked(r, decay, k, v, a, b, w_kind="decay", chunk_size=chunk_size,
                             initial_state=S0) == want).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda r, w, k, v, a, b, S: wkv7_recurrent(r, w, k, v, a[..., :-1], b), ValueError, "a must have shape"),
    (lambda r, w, k, v, a, b, S: wkv7_recurrent(r, -w, k, v, a, b), ValueError, "w must hold log-decays <= 0"),
    (lambda r, w, k, v, a, b, S: wkv7_recurrent(r, w, k, v, a, b, w_kind="decay"), ValueError,
     r"w must hold decays in \[0, 1\]"),
    (lambda r, w, k, v, a, b, S: wkv7_recurrent(r, w, k, v, a, b, w_kind="exp"), ValueError, "w_kind must be one of"),
    (lambda r, w, k, v, a, b, S: wkv7_recurrent(r, w, k, v, a, b, initial_state=S[..., :-1]), ValueError,
     "initial_state must have shape"),
    (lambda r, w, k, v, a, b, S: wkv7_chunked(r, w, k, v, a, b, chunk_size=0), ValueError, "chunk_size"),
    (lambda r, w, k, v, a, b, S: wkv7_recurrent(r.astype(object), w, k, v, a, b), TypeError, "w_kind='decay'"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(*_inputs(8))
