"""The delta-rule references (reference/delta) against fla's own naive code, form against form at
every chunk size, exactly on Fractions, through resets; and their argument checks.

fla's naive files (``fla/ops/delta_rule/naive.py``, ``fla/ops/gated_delta_rule/naive.py`` of
``fla-core==0.6.0``, read from the wheel the package registry serves, with einops) hard-code
float32 (``.float()``, ``torch.float32``, ``dtype=torch.float``); the test loads their source with
those replaced by float64, so what is compared is their arithmetic in float64, to 1e-13.
"""

import re
import subprocess
import sys
import zipfile
from fractions import Fraction

import numpy as np
import pytest

from seqcheck.reference.delta import delta_rule_chunked, delta_rule_recurrent, delta_rule_step

torch = pytest.importorskip("torch")

FLA = "fla-core==0.6.0"
NAIVE = ("fla/ops/delta_rule/naive.py", "fla/ops/gated_delta_rule/naive.py")


@pytest.fixture(scope="module")
def fla(tmp_path_factory):
    """fla's two naive modules, loaded from the wheel in float64."""
    folder = tmp_path_factory.mktemp("fla")
    fetch = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder), FLA],
                           capture_output=True, text=True)
    einops = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                             str(folder / "site"), "einops"], capture_output=True, text=True)
    if fetch.returncode or einops.returncode:
        pytest.fail(f"could not fetch {FLA} and einops from the package registry: {fetch.stderr[-1500:]}"
                    f"{einops.stderr[-1500:]}")
    sys.path.insert(0, str(folder / "site"))
    wheel, = folder.glob("fla_core-*.whl")
    modules = []
    with zipfile.ZipFile(wheel) as archive:
        for path in NAIVE:
            source = archive.read(path).decode()
            source = re.sub(r"\.float\(\)", ".double()", source.replace("torch.float32", "torch.float64"))
            source = source.replace("dtype=torch.float,", "dtype=torch.float64,")
            namespace = {}
            exec(compile(source, path, "exec"), namespace)
            modules.append(namespace)
    yield modules
    sys.path.remove(str(folder / "site"))


def _inputs(seed, B=2, T=8, H=3, K=4, V=5, gated=True):
    rng = np.random.default_rng(seed)
    q, k, v = rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, K)), rng.standard_normal((B, T, H, V))
    k = k / np.linalg.norm(k, axis=-1, keepdims=True)  # DeltaNet's L2-normalised keys
    beta = rng.uniform(0, 1, (B, T, H))
    g = -np.logaddexp(0, -rng.standard_normal((B, T, H))) if gated else None
    return q, k, v, beta, g, rng.standard_normal((B, H, K, V))


def test_delta_rule_equals_flas_recurrence(fla):
    plain, _ = fla
    q, k, v, beta, _, S0 = _inputs(0, gated=False)
    head_first = [torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 1, 2))) for x in (q, k, v, beta)]
    out, state = plain["delta_rule_recurrence"](*head_first, initial_state=torch.from_numpy(S0))
    ours, our_state = delta_rule_recurrent(q, k, v, beta, initial_state=S0, return_state=True)
    np.testing.assert_allclose(ours, np.swapaxes(out.numpy(), 1, 2), rtol=0, atol=1e-13)
    np.testing.assert_allclose(our_state, state.numpy(), rtol=0, atol=1e-13)


def test_delta_rule_chunked_equals_flas_chunkwise(fla):
    plain, _ = fla
    q, k, v, beta, _, _ = _inputs(1, T=8, gated=False)
    head_first = [torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 1, 2))) for x in (q, k, v, beta)]
    out, state = plain["delta_rule_chunkwise"](*head_first, chunk_size=4)[:2]
    ours, our_state = delta_rule_chunked(q, k, v, beta, chunk_size=4, return_state=True)
    np.testing.assert_allclose(ours, np.swapaxes(out.numpy(), 1, 2), rtol=0, atol=1e-13)
    np.testing.assert_allclose(our_state, state.numpy(), rtol=0, atol=1e-13)


def test_gated_delta_rule_equals_flas_recurrence_and_chunked_form(fla):
    _, gated = fla
    q, k, v, beta, g, S0 = _inputs(2)
    t = [torch.from_numpy(x) for x in (q, k, v, beta, g)]
    out, state = gated["naive_recurrent_gated_delta_rule"](*t, initial_state=torch.from_numpy(S0),
                                                            output_final_state=True)
    ours, our_state = delta_rule_recurrent(q, k, v, beta, g=g, initial_state=S0, return_state=True)
    np.testing.assert_allclose(ours, out.numpy(), rtol=0, atol=1e-13)
    np.testing.assert_allclose(our_state, state.numpy(), rtol=0, atol=1e-13)
    chunk_out, chunk_state = gated["naive_chunk_gated_delta_rule"](t[0], t[1], t[2], t[4], t[3], chunk_size=4,
                                                                   initial_state=torch.from_numpy(S0),
                                                                   output_final_state=True)
    np.testing.assert_allclose(ours, chunk_out.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(our_state, chunk_state.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("gated", [False, True])
def test_chunked_equals_recurrent_at_every_chunk_size_through_resets(gated):
    q, k, v, beta, g, S0 = _inputs(3, T=9, gated=gated)
    if gated:
        g[0, 4, 1] = -np.inf  # a reset
    want, want_state = delta_rule_recurrent(q, k, v, beta, g=g, initial_state=S0, return_state=True)
    for chunk_size in range(1, 11):
        got, state = delta_rule_chunked(q, k, v, beta, g=g, chunk_size=chunk_size, initial_state=S0,
                                        return_state=True)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(state, want_state, rtol=0, atol=1e-12)


def test_a_sequence_equals_two_chunks_carried_through_the_state():
    """fla #285: a full sequence != two chunks carried through the cache."""
    q, k, v, beta, g, S0 = _inputs(4, T=10)
    full, full_state = delta_rule_chunked(q, k, v, beta, g=g, chunk_size=4, initial_state=S0, return_state=True)
    for s in range(1, 10):
        first, state = delta_rule_chunked(q[:, :s], k[:, :s], v[:, :s], beta[:, :s], g=g[:, :s], chunk_size=3,
                                          initial_state=S0, return_state=True)
        second, last = delta_rule_chunked(q[:, s:], k[:, s:], v[:, s:], beta[:, s:], g=g[:, s:], chunk_size=3,
                                          initial_state=state, return_state=True)
        np.testing.assert_allclose(np.concatenate([first, second], axis=1), full, rtol=0, atol=1e-12)
        np.testing.assert_allclose(last, full_state, rtol=0, atol=1e-12)


def test_steps_equal_one_pass():
    q, k, v, beta, g, S0 = _inputs(5)
    full, full_state = delta_rule_recurrent(q, k, v, beta, g=g, initial_state=S0, return_state=True)
    state = S0
    for t in range(q.shape[1]):
        out, state = delta_rule_step(q[:, t], k[:, t], v[:, t], beta[:, t], g_t=g[:, t], state=state)
        np.testing.assert_allclose(out, full[:, t], rtol=0, atol=1e-13)
    np.testing.assert_allclose(state, full_state, rtol=0, atol=1e-13)


def test_exactly_equal_on_fractions():
    rng = np.random.default_rng(6)

    def fractions(shape, low, high, den):
        return np.vectorize(lambda n: Fraction(int(n), den), otypes=[object])(rng.integers(low, high, shape))

    q, k, v = fractions((1, 6, 2, 2), -3, 4, 3), fractions((1, 6, 2, 2), -3, 4, 3), fractions((1, 6, 2, 3), -3, 4, 3)
    beta, decay, S0 = fractions((1, 6, 2), 0, 5, 4), fractions((1, 6, 2), 0, 3, 2), fractions((1, 2, 2, 3), -2, 3, 5)
    want = delta_rule_recurrent(q, k, v, beta, decay=decay, scale=1, initial_state=S0)
    assert want.dtype == object and isinstance(want.flat[0], Fraction)
    for chunk_size in range(1, 8):
        assert (delta_rule_chunked(q, k, v, beta, decay=decay, scale=1, chunk_size=chunk_size,
                                   initial_state=S0) == want).all()


@pytest.mark.parametrize("call, error, match", [
    (lambda q, k, v, b, g, S: delta_rule_recurrent(q, k, v, b[..., :-1]), ValueError, "beta must have shape"),
    (lambda q, k, v, b, g, S: delta_rule_recurrent(q, k, v, b + 3), ValueError, r"beta must lie in \[0, 2\]"),
    (lambda q, k, v, b, g, S: delta_rule_recurrent(q, k, v, b, g=-g), ValueError, "g must hold log-gates <= 0"),
    (lambda q, k, v, b, g, S: delta_rule_recurrent(q, k, v, b, g=g, decay=np.exp(g)), TypeError, "at most one"),
    (lambda q, k, v, b, g, S: delta_rule_chunked(q, k, v, b, chunk_size=0), ValueError, "chunk_size"),
])
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call(*_inputs(7))
