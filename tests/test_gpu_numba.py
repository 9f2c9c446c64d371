"""The Numba CUDA kernels of seqcheck.gpu beyond test_gpu.py's check of each against its form:

- mutant kernels (tests/mutants/gpu_numba.py) are rejected by ``equiv.check`` on the inputs of the
  registered implementation;
- every Numba kernel compiles to PTX for sm_90 (the simulator never type-checks a kernel, so CI
  compiles them too), in a subprocess without the simulator;
- the simulator's pitfalls: a static scan of gpu/*.py for what the simulator gets silently
  wrong, and small experiments that show it getting each one wrong (and, on a GPU, right).
"""

import io
import json
import math
import os
import re
import subprocess
import sys
import textwrap
import tokenize
from pathlib import Path

import numpy as np
import pytest

from mutants import gpu_numba as mutants
from seqcheck import equiv
from seqcheck.equiv import implementations
from seqcheck.gpu import where

GPU_DIR = Path(__file__).parent.parent / "gpu"
IMPLEMENTATIONS = {impl.name: impl for impl in implementations()}


def _without_simulator() -> dict:
    return {name: value for name, value in os.environ.items() if name != "NUMBA_ENABLE_CUDASIM"}


def _python(code: str, env: dict, timeout: int = 300, args=()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).parent.parent)


# ----------------------------------------------------------------------------- mutants

MUTANTS = ([("numba_cuda.flash_attention", m) for m in mutants.FLASH_MUTANTS]
           + [("numba_cuda.block_sparse_attention", m) for m in mutants.BLOCK_SPARSE_MUTANTS]
           + [("numba_cuda.selective_scan", m) for m in mutants.SCAN_MUTANTS]
           + [("numba_cuda.gla_chunked", m) for m in mutants.GLA_MUTANTS]
           + [("numba_cuda.wkv4", m) for m in mutants.WKV_MUTANTS])


@pytest.mark.parametrize("name, mutant", MUTANTS, ids=[m.__name__ for _, m in MUTANTS])
def test_mutant_kernel_is_rejected(name, mutant):
    impl = IMPLEMENTATIONS[name]
    simulated = where(impl.runtime) == "simulator"
    result = equiv.check(mutant, impl.form, dtype="float32", inputs=impl.inputs(simulated), seed=0,
                         max_examples=20 if simulated else 50)
    assert not result.passed, f"{mutant.__name__} was not caught:\n{result}"


BACKWARD_MUTANTS = [("numba_cuda.flash_attention_backward", m) for m in mutants.FLASH_BWD_MUTANTS]


# where a mutant differs only on some inputs, the simulator's draws are narrowed to them (time, not power:
# the mutant is also wrong there on a GPU's draws, which are not narrowed)
WHERE_IT_DIFFERS = {"flash_bwd_causal_blind": lambda args: args.get("causal")}


@pytest.mark.parametrize("name, mutant", BACKWARD_MUTANTS, ids=[m.__name__ for _, m in BACKWARD_MUTANTS])
def test_mutant_backward_kernel_is_rejected(name, mutant):
    impl = IMPLEMENTATIONS[name]
    simulated = where(impl.runtime) == "simulator"
    inputs = impl.inputs(simulated)
    if simulated and mutant.__name__ in WHERE_IT_DIFFERS:
        inputs = inputs.filter(WHERE_IT_DIFFERS[mutant.__name__])
    result = equiv.check_vjp(mutant, impl.form, dtype="float32", inputs=inputs, seed=0,
                             max_examples=20 if simulated else 50)
    assert not result.passed, f"{mutant.__name__} was not caught:\n{result}"


def test_the_backward_kernel_is_deterministic():
    """dQ, dK, dV each written once by one thread (no atomics): two runs agree bit for bit
    (flash-attention #414: an atomicAdd dq is not)."""
    from seqcheck.gpu.flash_bwd_numba import flash_attention_vjp

    rng = np.random.default_rng(1)
    q, k, v, do = (rng.standard_normal((1, 6, 2, 4)).astype(np.float32) for _ in range(4))
    first, second = (flash_attention_vjp(q, k, v, cotangent=do, causal=True, block_q=2, block_k=2) for _ in range(2))
    assert all(np.array_equal(first[n], second[n]) for n in ("q", "k", "v"))


def test_nan_poisoning_is_what_catches_unwritten_outputs():
    """The unwritten rows of the grid-rounding mutant hold exactly the NaN the outputs started with."""
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((1, 6, 1, 4)).astype(np.float32) for _ in range(3))
    out = mutants.flash_last_query_block_unwritten(q, k, v, block_q=4, block_k=4)
    assert np.isfinite(out[:, :4]).all() and np.isnan(out[:, 4:]).all()
    g = -np.abs(rng.standard_normal((1, 6, 1))).astype(np.float32)
    out = mutants.gla_ragged_chunk_dropped(q, k, v, g, chunk_size=4)  # the simulator's tile: chunks of 4
    assert np.isfinite(out[:, :4]).all() and np.isnan(out[:, 4:]).all()


# ----------------------------------------------------------------------------- GLA, retention, WKV kernels

def _gla_args(rng, *, T, per_head, resets, chunk_size, K=3, V=3, H=2):
    q, k = (rng.standard_normal((1, T, H, K)) for _ in range(2))
    shape = (1, T, H) if per_head else (1, T, H, K)
    g = -np.logaddexp(0.0, -rng.standard_normal(shape)) / 4
    if resets:  # packed-sequence boundaries: g = -inf (the engine's strategies filter non-finite inputs out)
        g[rng.random(shape) < 0.25] = -np.inf
        g[:, 1] = -np.inf
        g[:, 5] = -3e38  # finite, but two of them would sum to -inf in float32
    return {"q": q, "k": k, "v": rng.standard_normal((1, T, H, V)), "g": g, "scale": None,
            "initial_state": rng.standard_normal((1, H, K, V)), "return_state": True, "chunk_size": chunk_size}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("per_head", [False, True], ids=["per_key", "per_head"])
def test_gla_kernel_through_resets(dtype, per_head):
    """g = -inf (a reset) and g = -3e38 inside and across chunks: finite, and within the budget
    (outputs and state), for a chunk size within the simulator's tile and one beyond it."""
    from seqcheck.gpu import gla_numba

    rng = np.random.default_rng(1)
    for chunk_size in (3, 9):
        args = _gla_args(rng, T=9, per_head=per_head, resets=True, chunk_size=chunk_size)
        comparison = equiv.replay(gla_numba.gla_chunked, "gla.gla.chunked", args, dtype=dtype)
        assert comparison.passed, comparison.message


def test_retention_kernel_with_full_resets_and_no_decay():
    """gamma = 0 (log gamma = -inf: only the current token), 1 (no decay) and in between."""
    from seqcheck.gpu import gla_numba

    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal((1, 7, 3, 2)) for _ in range(3))
    args = {"q": q, "k": k, "v": v, "gamma": np.array([0.0, 1.0, 0.5]), "initial_state": rng.standard_normal((1, 3, 2, 2)),
            "return_state": True, "chunk_size": 3}
    comparison = equiv.replay(gla_numba.retention_chunked, "retnet.retention.chunked", args, dtype="float32")
    assert comparison.passed, comparison.message


def test_gla_tiles_fit_shared_memory_on_a_gpu():
    from seqcheck.gpu import gla_numba

    gpu = dict(max_chunk=64, value_tile=32)  # default_tiles() on a GPU
    assert gla_numba.tiles(64, 64, 64, **gpu) == (32, 32, 32)
    assert gla_numba.tiles(128, 128, 64, **gpu) == (16, 16, 32)
    assert gla_numba.tiles(16, 16, 15, **gpu) == (15, 16, 16)
    for K in (1, 4, 16, 32, 64, 100, 128):
        _, chunk_capacity, value_tile = gla_numba.tiles(K, 128, 129, **gpu)
        assert gla_numba.shared_bytes(chunk_capacity, gla_numba.capacity(K), value_tile) <= gla_numba.SHARED_BYTES


def test_wkv_kernel_continues_from_its_state():
    """The state (p, q, o) carried out of one launch into the next gives the one-launch output, at
    k near 1e3 (float32: e^k alone would overflow)."""
    from seqcheck.gpu import wkv_numba
    from seqcheck.reference import rwkv

    rng = np.random.default_rng(3)
    k = (300 * rng.standard_normal((2, 9, 5)) + 700).astype(np.float32)
    v = rng.standard_normal((2, 9, 5)).astype(np.float32)
    w, u = np.exp(rng.standard_normal(5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
    full, state = wkv_numba.wkv4_recurrent(k, v, w, u, return_state=True)
    first, middle = wkv_numba.wkv4_recurrent(k[:, :5], v[:, :5], w, u, return_state=True)
    second = wkv_numba.wkv4_recurrent(k[:, 5:], v[:, 5:], w, u, initial_state=middle)
    np.testing.assert_array_equal(np.concatenate([first, second], axis=1), full)
    want, want_state = rwkv.wkv4_recurrent(k, v, w, u, return_state=True)
    np.testing.assert_allclose(full, want, rtol=0, atol=1e-3)
    np.testing.assert_allclose(state[..., 2], want_state[..., 2], rtol=1e-6)  # o: the running maximum
    np.testing.assert_allclose(state[..., :2], want_state[..., :2], rtol=1e-3, atol=1e-5)


# ----------------------------------------------------------------------------- PTX for sm_90

PTX_SCRIPT = textwrap.dedent("""
    import importlib, json, sys
    from numba import config, cuda
    assert not config.ENABLE_CUDASIM
    results, missing = [], []
    for stem in sys.argv[1:]:
        module = importlib.import_module(f"seqcheck.gpu.{stem}")
        if not hasattr(module, "ptx_cases"):
            missing.append(f"{stem}.py")
            continue
        for name, kernel, signature in module.ptx_cases():
            ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(9, 0))
            results.append({"module": f"{stem}.py", "kernel": name, "sm_90": ".target sm_90" in ptx,
                            "entry": ".entry" in ptx})
    print(json.dumps({"results": results, "missing": missing}))
""")


def test_every_numba_kernel_compiles_to_ptx_for_sm90():
    """Each module of gpu/ whose code calls cuda.jit lists its kernels in ``ptx_cases()``."""
    numba_modules = [path.stem for path in sorted(GPU_DIR.glob("*.py"))
                     if any(re.search(r"\bcuda \. jit\b", code) for _, code in _code_lines(path))]
    run = _python(PTX_SCRIPT, _without_simulator(), args=numba_modules)
    assert run.returncode == 0, run.stderr[-4000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert not report["missing"], f"modules with Numba kernels but no ptx_cases(): {report['missing']}"
    modules = {r["module"] for r in report["results"]}
    assert {"flash_numba.py", "scan_numba.py", "gla_numba.py", "wkv_numba.py"} <= modules
    bad = [r for r in report["results"] if not (r["sm_90"] and r["entry"])]
    assert not bad, bad


# ----------------------------------------------------------------------------- pitfalls: static scan

def _code_lines(path: Path) -> list[tuple[int, str]]:
    """(line, code) per logical line of ``path``, comments and string literals removed."""
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
    lines, current, start = [], [], None
    for token in tokens:
        if token.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
            if current:
                lines.append((start, " ".join(current)))
            current, start = [], None
        elif token.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.INDENT, tokenize.DEDENT):
            if start is None:
                start = token.start[0]
            current.append(token.string)
    return lines


PITFALLS = {  # what the simulator gets silently wrong: a test of the code (comments and strings removed)
    "two cuda.shared.array calls in one statement (the simulator aliases them)":
        lambda code: len(re.findall(r"shared \. array \(", code)) > 1,
    "libdevice functions (NaN stubs under the simulator)": lambda code: re.search(r"\blibdevice\b", code),
    "grid synchronisation (under the simulator, a block barrier only)":
        lambda code: re.search(r"\bthis_grid\b|\bgrid \. sync\b|\bcg \.", code),
}


def test_gpu_sources_avoid_the_simulators_blind_spots():
    found = [f"gpu/{path.name}:{line}: {what}: {code}"
             for path in sorted(GPU_DIR.glob("*.py")) for line, code in _code_lines(path)
             for what, hit in PITFALLS.items() if hit(code)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("snippet, pitfall", [
    ("a = cuda.shared.array(4, float32); b = cuda.shared.array(4, float32)", "two cuda.shared.array"),
    ("y = numba.cuda.libdevice.exp(x)", "libdevice functions"),
    ("from numba.cuda import libdevice", "libdevice functions"),
    ("g = cuda.cg.this_grid()", "grid synchronisation"),
    ("grid.sync()", "grid synchronisation"),
])
def test_the_static_scan_flags_each_pitfall(tmp_path, snippet, pitfall):
    source = tmp_path / "kernel.py"
    source.write_text('"""libdevice and this_grid in a docstring are fine."""\n'
                      f"# cg.sync() in a comment too\n{snippet}\n")
    hits = [what for _, code in _code_lines(source) for what, hit in PITFALLS.items() if hit(code)]
    assert len(hits) == 1 and hits[0].startswith(pitfall), hits


# ----------------------------------------------------------------------------- pitfalls: experiments

TOY_KERNELS = textwrap.dedent("""
    import math
    import numpy as np
    from numba import cuda, float32
    from numba.cuda import libdevice


    @cuda.jit
    def two_shared_arrays_one_line(out):
        a = cuda.shared.array(4, float32); b = cuda.shared.array(4, float32)  # noqa: E702
        i = cuda.threadIdx.x
        a[i] = 1.0
        b[i] = 2.0
        cuda.syncthreads()
        out[i] = a[i]


    @cuda.jit
    def libdevice_exp(x, out):
        i = cuda.threadIdx.x
        out[i] = libdevice.exp(x[i])


    @cuda.jit
    def math_exp(x, out):
        i = cuda.threadIdx.x
        out[i] = math.exp(x[i])


    @cuda.jit
    def grid_sync(out):
        grid = cuda.cg.this_grid()
        b = cuda.blockIdx.x
        out[b] = b + 1.0
        grid.sync()
        out[2 + b] = out[1 - b]  # each block reads the other's value, written before the sync


    def experiments():
        x = np.array([0.0, 1.0, 2.0, -1.0])
        shared, lib, exp, sync = np.zeros(4, np.float32), np.zeros(4), np.zeros(4), np.zeros(4)
        two_shared_arrays_one_line[1, 4](shared)
        libdevice_exp[1, 4](x, lib)
        math_exp[1, 4](x, exp)
        grid_sync[2, 1](sync)
        return {"shared": shared.tolist(), "libdevice_exp": lib.tolist(), "math_exp": exp.tolist(),
                "grid_sync": sync.tolist()}
""")

def _toy_experiments(env: dict) -> dict:
    run = _python(TOY_KERNELS + "\nimport json\nprint(json.dumps(experiments()))\n", env)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


RIGHT = {"shared": [1.0] * 4, "libdevice_exp": [math.exp(x) for x in (0.0, 1.0, 2.0, -1.0)],
         "grid_sync": [1.0, 2.0, 2.0, 1.0]}


@pytest.fixture(scope="module")
def under_simulator():
    """The toy kernels run under the simulator, in a subprocess that forces it on (GPU or not)."""
    return _toy_experiments({**os.environ, "NUMBA_ENABLE_CUDASIM": "1"})


def test_simulator_aliases_two_shared_arrays_declared_on_one_line(under_simulator):
    # the simulator keys shared arrays by (file, line): a and b are one array, and b's 2.0 wins
    assert under_simulator["shared"] == [2.0] * 4 != RIGHT["shared"]


def test_simulator_returns_nan_for_libdevice_math(under_simulator):
    # numba.cuda.libdevice's functions are NaN stubs under the simulator; math.exp is Python's
    assert all(math.isnan(x) for x in under_simulator["libdevice_exp"])
    assert under_simulator["math_exp"] == pytest.approx(RIGHT["libdevice_exp"])


def test_simulator_grid_sync_only_syncs_one_block(under_simulator):
    # blocks run one after another and grid.sync() is a block barrier: block 0 reads block 1's
    # slot before block 1 has run (0.0 where a GPU gives 2.0)
    assert under_simulator["grid_sync"] == [1.0, 2.0, 0.0, 1.0] != RIGHT["grid_sync"]


@pytest.mark.gpu
def test_the_toy_kernels_are_right_on_a_gpu():
    results = _toy_experiments(_without_simulator())
    assert results["shared"] == RIGHT["shared"]
    assert results["libdevice_exp"] == pytest.approx(RIGHT["libdevice_exp"])
    assert results["grid_sync"] == RIGHT["grid_sync"]
