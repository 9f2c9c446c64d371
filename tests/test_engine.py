"""The checking engine: metrics, budgets, conversions, results, reproducers, bad input."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given

from seqcheck import equiv
from seqcheck.equiv.convert import to_backend, to_numpy
from seqcheck.equiv.metrics import abs_error, error_per_position
from seqcheck.properties import inputs_for

PLAIN = dict(window=None, key_padding_mask=None, alibi_slopes=None, softcap=None, return_lse=False)


def test_nan_or_inf_where_the_reference_is_finite_is_an_infinite_error():
    expected = np.array([1.0, 1.0, -np.inf, -np.inf])
    actual = np.array([1.0, np.nan, -np.inf, 0.0])
    assert abs_error(actual, expected).tolist() == [0.0, np.inf, 0.0, np.inf]


def test_complex_errors_are_moduli_not_real_parts():
    assert abs_error(np.array([1 + 1e-3j]), np.array([1 + 0j]))[0] == pytest.approx(1e-3)
    assert abs_error(np.array([complex(1, np.nan)]), np.array([1 + 0j]))[0] == np.inf


def test_one_corrupted_row_shows_per_position_but_hides_in_the_norm():
    rng = np.random.default_rng(0)
    expected = rng.standard_normal((2, 512, 4, 64))
    actual = expected.copy()
    actual[0, 300, 1, 5] += 1e-3
    per_position = error_per_position(actual, expected, time_axis=1)
    assert per_position.shape == (512,)
    assert np.argmax(per_position) == 300 and per_position[299] == 0
    assert np.linalg.norm(actual - expected) / np.linalg.norm(expected) < 1e-5
    assert per_position.max() == pytest.approx(1e-3)


def test_a_budget_is_a_scalar_per_position_or_per_element():
    """Along the time axis one budget per position; of the output's shape, one per element (the
    JEPA coverage counts: each grid cell its own binomial range)."""
    from seqcheck.equiv.budget import Budget
    from seqcheck.equiv.engine import compare

    expected = np.zeros((2, 3))
    actual = expected + np.array([[0.5, 0.0, 0.0], [0.0, 0.0, 2.0]])
    per_element = np.array([[1.0, 0.1, 0.1], [0.1, 0.1, 1.0]])
    verdict = compare((actual,), (expected,), Budget((per_element,), "test"), ("out",), time_axis=1)
    assert not verdict.passed and verdict.index == {"axis 0": 1, "axis 1": 2} and verdict.worst_ratio == 2.0
    assert compare((actual,), (expected,), Budget((per_element * 2,), "test"), ("out",), time_axis=1).passed
    per_position = np.array([1.0, 0.1, 2.0])  # along axis 1
    assert compare((actual,), (expected,), Budget((per_position,), "test"), ("out",), time_axis=1).passed
    assert not compare((actual,), (expected,), Budget((0.5,), "test"), ("out",), time_axis=1).passed


def torch_sdpa(q, k, v, *, scale=None, causal=False, **unused):
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal, scale=scale, enable_gqa=True)
    return out.transpose(1, 2)


def torch_sdpa_in_bfloat16(q, k, v, **options):
    return torch_sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16(), **options).float()


SQUARE = inputs_for("attention.softmax.parallel", causal=False, **PLAIN)


def logsumexp_attention(q, k, v, *, scale=None, causal=False, mask=None, return_lse=False, **unused):
    """Attention normalised as exp(s - lse) (FlashAttention-2's backward recomputes P so) in the
    inputs' dtype: each weight carries lse's rounding, u |lse|, which no row sum renormalises."""
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, 2), v.repeat_interleave(group, 2)
    s = torch.einsum("bihd,bjhd->bhij", q, k) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(s, -1)
    P = torch.exp(s - torch.where(torch.isfinite(lse), lse, 0.0)[..., None])
    out = torch.einsum("bhij,bjhe->bihe", P, v)
    return (out, lse.transpose(1, 2)) if return_lse else out


def logsumexp_block_sparse(q, k, v, block_mask, *, block_size, token_mask=None, scale=None, return_lse=False):
    from seqcheck.reference.sparse import expand_block_mask

    mask = torch.as_tensor(expand_block_mask(np.asarray(block_mask), block_size, q.shape[1], k.shape[1]))
    mask = mask if token_mask is None else mask & torch.as_tensor(np.asarray(token_mask))
    return logsumexp_attention(q, k, v, scale=scale, mask=mask, return_lse=return_lse)


@pytest.mark.parametrize("key, candidate, inputs, seed", [
    ("attention.softmax.parallel", logsumexp_attention, inputs_for("attention.softmax.parallel", causal=False, window=None,
                                                                    key_padding_mask=None, alibi_slopes=None,
                                                                    softcap=None), 0),
    ("sparse.attention.block_sparse", logsumexp_block_sparse, None, 6),
])
def test_a_float32_kernel_normalising_by_lse_passes(key, candidate, inputs, seed):
    """Seeds whose outlier scores (|lse| near 1000) failed it at ratios 1.06 and 2.45 before the
    floor counted |lse_t| sum_j P_tj |v_j|."""
    result = equiv.check(candidate, key, backend="torch", dtype="float32", seed=seed, max_examples=300, inputs=inputs)
    assert result.passed, str(result)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_sdpa_meets_the_baseline_budget_of_its_dtype(dtype):
    result = equiv.check(torch_sdpa, "attention.softmax.parallel", dtype=dtype, backend="torch", inputs=SQUARE,
                         seed=0, max_examples=60)
    assert result.passed, str(result)
    assert result.dtype == dtype and result.backend == "torch" and "baseline" in result.rule


def test_a_kernel_that_claims_float32_but_computes_in_bfloat16_is_rejected():
    result = equiv.check(torch_sdpa_in_bfloat16, "attention.softmax.parallel", dtype="float32", backend="torch",
                         inputs=SQUARE, seed=0, max_examples=60)
    assert not result.passed
    assert result.worst_ratio > 1


def test_negative_strides_are_copied_before_dlpack():
    flipped = np.arange(12.0).reshape(3, 4)[::-1, ::-2]
    tensor = to_backend(flipped, "torch", np.float32)
    assert to_numpy(tensor).tolist() == flipped.tolist()
    assert to_numpy(torch.arange(6.0).reshape(2, 3).t()).tolist() == [[0, 3], [1, 4], [2, 5]]
    assert to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float64


def test_result_fields_and_seed_replay():
    first = equiv.check(equiv.reference("attention.flash.tiled"), "attention.flash.tiled", max_examples=10)
    again = equiv.check(equiv.reference("attention.flash.tiled"), "attention.flash.tiled", max_examples=10,
                        seed=first.seed)
    assert first.passed and first.counterexample is None and first.examples >= 10
    assert (first.max_error, first.budget) == (again.max_error, again.budget)
    assert 0 <= first.max_error <= first.budget
    assert "PASSED" in str(first)


def flash_ignoring_padding(q, k, v, *, key_padding_mask=None, block_q=1, block_k=1, **options):
    return equiv.reference("attention.softmax.parallel")(q, k, v, **options)


def test_counterexample_is_shrunk_and_its_reproducer_runs(tmp_path):
    result = equiv.check(flash_ignoring_padding, "attention.flash.tiled", seed=1, max_examples=100)
    assert not result.passed
    args = result.counterexample.args
    assert args["key_padding_mask"] is not None
    assert args["q"].shape[:2] == (1, 1), "shrinking should reach one batch, one query"
    script = tmp_path / "repro.py"
    script.write_text(result.counterexample.reproducer)
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr  # it reproduces the failure
    assert "worst error" in run.stdout and "ratio" in run.stdout


def test_a_candidate_that_raises_on_the_first_example_is_an_error_with_the_exception():
    def broken(q, k, v, **options):
        raise RuntimeError("kernel launch failed")

    result = equiv.check(broken, "attention.softmax.parallel", seed=0, max_examples=5)
    assert result.status == "error"
    assert "RuntimeError: kernel launch failed" in result.reason


def test_a_wrong_output_shape_is_never_broadcast():
    result = equiv.check(lambda q, k, v, **o: np.zeros(q.shape[1:]), "attention.softmax.parallel",
                         inputs=SQUARE, seed=0, max_examples=5)
    assert result.status == "error" and "shape" in result.reason


def test_head_first_outputs_get_a_layout_hint():
    def head_first(q, k, v, **options):
        return np.ascontiguousarray(equiv.reference("attention.softmax.parallel")(q, k, v, **options)
                                    .transpose(0, 2, 1, 3))

    result = equiv.check(head_first, "attention.softmax.parallel", inputs=inputs_for(
        "attention.softmax.parallel", q_len=3, kv_heads=2, group=1, head_dim=5, **PLAIN), seed=0, max_examples=5)
    assert result.status == "error" and "batch first, then time" in result.hint


@given(inputs_for("attention.softmax.parallel", **PLAIN))
def test_assert_equivalent_in_a_users_hypothesis_test(args):
    reference = equiv.reference("attention.softmax.parallel")
    out = reference(**args)
    equiv.assert_equivalent(out.astype(np.float32), "attention.softmax.parallel", args, dtype="float32")
    if out.size:  # one element off by more than the output's scale: over any float32 budget at any size
        wrong = out.copy()
        wrong.flat[0] += 1 + np.abs(out).max()
        with pytest.raises(AssertionError, match="attention.softmax.parallel"):
            equiv.assert_equivalent(wrong, "attention.softmax.parallel", args, dtype="float32")


def test_bad_calls_say_what_was_expected():
    with pytest.raises(KeyError, match="did you mean 'attention.flash.tiled'"):
        equiv.check(print, "attention.flash.tiles")
    with pytest.raises(TypeError, match="candidate: expected a callable"):
        equiv.check(3, "attention.flash.tiled")
    with pytest.raises(ValueError, match="backend"):
        equiv.check(print, "attention.flash.tiled", backend="tensorflow")
    with pytest.raises(TypeError, match="dtype"):
        equiv.check(print, "attention.flash.tiled", dtype="int8")
    with pytest.raises(ValueError, match="no low-precision baseline"):
        equiv.check(print, "positional.alibi.slopes", dtype="float32")
    with pytest.raises(TypeError, match="unknown option"):
        inputs_for("attention.flash.tiled", padding=False)


def test_public_api():
    assert equiv.forms() == sorted(equiv.forms())
    assert {"attention.softmax.parallel", "attention.flash.tiled", "attention.flash.split_kv"} <= set(equiv.forms())
    assert equiv.reference("attention.flash.tiled").__name__ == "flash_attention"


def test_nan_in_one_row_fails_even_when_everything_else_is_exact():
    def nan_in_last_row(q, k, v, **options):
        out = equiv.reference("attention.softmax.parallel")(q, k, v, **options)
        out[:, -1] = np.nan
        return out

    result = equiv.check(nan_in_last_row, "attention.softmax.parallel", inputs=SQUARE, seed=0, max_examples=5)
    assert not result.passed
    assert "NaN/Inf" in result.counterexample.message


def test_a_kernel_with_fixed_tiles_is_checked_without_block_arguments():
    def fixed_tiles(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                    alibi_slopes=None, softcap=None, return_lse=False):
        return equiv.reference("attention.flash.tiled")(
            q, k, v, block_q=2, block_k=3, scale=scale, causal=causal, window=window,
            key_padding_mask=key_padding_mask, alibi_slopes=alibi_slopes, softcap=softcap, return_lse=return_lse)

    assert equiv.check(fixed_tiles, "attention.flash.tiled", seed=0, max_examples=20).passed


def test_reproducer_literals_round_trip_every_dtype():
    from seqcheck.equiv.reproduce import source_of_args

    args = {"z": np.array([1 + 2j, complex(np.inf, -1)]), "mask": np.array([True, False]),
            "index": np.array([[3, 1]]), "x": np.array([0.1, -np.inf, np.nan]), "window": (None, 2), "c": 0.5}
    namespace = {"np": np}
    exec(source_of_args(args), namespace)
    for name, value in args.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(namespace["args"][name], value)
            assert namespace["args"][name].dtype == value.dtype
        else:
            assert namespace["args"][name] == value


def test_dtype_float64_means_float64_accuracy():
    reference = equiv.reference("attention.flash.tiled")
    as_none = equiv.check(reference, "attention.flash.tiled", seed=3, max_examples=5)
    as_float64 = equiv.check(reference, "attention.flash.tiled", dtype="float64", seed=3, max_examples=5)
    assert (as_none.rule, as_none.max_error) == (as_float64.rule, as_float64.max_error)


SEEDED_RUN = '''
import hashlib, sys
if sys.argv[1] == "constants":
    import local_constants  # a local module full of literals the strategies could draw
import numpy as np
from seqcheck import equiv
examples = hashlib.sha256()
def candidate(**args):
    for name in sorted(args):
        examples.update(name.encode() + repr(np.asarray(args[name]).tolist()).encode())
    return equiv.reference("attention.flash.tiled")(**args)
equiv.check(candidate, "attention.flash.tiled", seed=979100954, max_examples=25)
print(examples.hexdigest())
'''


def test_a_seed_gives_the_same_examples_whatever_local_modules_are_loaded(tmp_path):
    """Hypothesis mixes literals from every loaded local module into its draws; a seeded run of
    ours must not depend on which modules a script, report worker or xdist worker imported."""
    literals = ", ".join([str(1000 + 7 * n) for n in range(200)] + [f"{x}.25" for x in range(30)] + ["0.37", "1.7"])
    (tmp_path / "local_constants.py").write_text(f"LITERALS = [{literals}]\n")
    (tmp_path / "run.py").write_text(SEEDED_RUN)
    outputs = [subprocess.run([sys.executable, "run.py", imported], capture_output=True, text=True, cwd=tmp_path,
                              timeout=300) for imported in ("plain", "constants")]
    assert all(run.returncode == 0 for run in outputs), [run.stderr for run in outputs]
    assert outputs[0].stdout == outputs[1].stdout
