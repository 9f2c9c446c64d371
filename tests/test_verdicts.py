"""Verdicts a kernel author can trust: usage mistakes are errors with a hint, wrong answers are
failures with a counterexample to debug with, hung candidates and broken strategies end the check."""

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from seqcheck import equiv
from seqcheck.equiv import engine
from seqcheck.equiv.cli import main
from seqcheck.properties import inputs_for

KEY = "attention.softmax.parallel"
reference = equiv.reference(KEY)
NO_LSE = inputs_for(KEY, return_lse=False)


def torch_attention(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None, alibi_slopes=None,
                    softcap=None, return_lse=False):
    return torch.from_dlpack(reference(q.numpy(), k.numpy(), v.numpy(), scale=scale, causal=causal)).to(q.dtype)


def float32_attention(q, k, v, **options):
    return reference(q, k, v, **{**options, "return_lse": False}).astype(np.float32)


USAGE_MISTAKES = {
    "a torch kernel on the default numpy backend": (
        dict(candidate=lambda q, k, v, **o: torch.nn.functional.scaled_dot_product_attention(q, k, v)),
        "backend='torch'"),
    "torch tensors returned with backend numpy": (
        dict(candidate=lambda q, k, v, **o: torch.from_dlpack(reference(q, k, v))), "backend='torch'"),
    "a wrong signature": (dict(candidate=lambda q, k, v: reference(q, k, v)), "**options"),
    "returning None": (dict(candidate=lambda q, k, v, **o: None), "return the outputs"),
    "returning a list": (dict(candidate=lambda q, k, v, **o: [reference(q, k, v, **o)]), "tuple"),
    "a float32 kernel checked without dtype=": (dict(candidate=float32_attention), "dtype='float32'"),
    "a bfloat16 kernel claiming float32": (
        dict(candidate=lambda q, k, v, **o: torch_attention(q, k, v).bfloat16(), backend="torch", dtype="float32"),
        "dtype='bfloat16'"),
    "raising on the first example": (
        dict(candidate=lambda q, k, v, **o: 1 / 0), "make the candidate run"),
    "torch:cuda without CUDA": (dict(candidate=torch_attention, backend="torch:cuda"), "backend='torch'"),
    "the cupy backend without CuPy or a GPU": (dict(candidate=reference, backend="cupy"), "GPU"),
}


@pytest.mark.parametrize("mistake", sorted(USAGE_MISTAKES))
def test_a_usage_mistake_is_an_error_with_a_hint_naming_the_fix(mistake):
    options, fix = USAGE_MISTAKES[mistake]
    result = equiv.check(options.pop("candidate"), KEY, inputs=NO_LSE, seed=0, max_examples=20, **options)
    assert result.status == "error", str(result)
    assert not result.passed and result.examples <= 1
    assert fix in result.hint, str(result)
    assert "ERROR" in str(result) and "hint:" in str(result)


def test_a_candidate_wrong_on_some_inputs_only_is_a_failure_with_a_counterexample():
    def breaks_past_three_keys(q, k, v, **options):
        if k.shape[1] > 3:
            raise RuntimeError("kernel launch failed")
        return reference(q, k, v, **options)

    result = equiv.check(breaks_past_three_keys, KEY, seed=0, max_examples=100)
    assert result.status == "failed"
    assert result.counterexample.args["k"].shape[1] == 4, "shrunk to the smallest failing key length"
    assert "RuntimeError: kernel launch failed" in result.counterexample.message


def test_every_form_supports_dtype_or_refuses_it_with_a_value_error_naming_the_form():
    from seqcheck.equiv.registry import definition_of, get_form

    refused = [key for key in equiv.forms() if definition_of(get_form(key))[0].plain is None]
    assert "ssm.s4.dplr_kernel" in refused and "ssm.s4d.kernel" in refused
    for key in refused:
        with pytest.raises(ValueError, match=f"form {key!r} has no low-precision baseline"):
            equiv.check(equiv.reference(key), key, dtype="float32", max_examples=1)


def test_a_hung_candidate_ends_the_check_with_an_error_naming_the_example():
    def hangs(q, k, v, **options):
        time.sleep(60)

    started = time.perf_counter()
    result = equiv.check(hangs, KEY, seed=0, timeout=0.5)
    assert time.perf_counter() - started < 10
    assert result.status == "error" and "did not finish within 0.5 s" in result.reason
    assert "example 1 (q (" in result.reason
    assert "equiv.replay" in result.counterexample.reproducer


def test_a_candidate_raising_system_exit_does_not_end_the_caller():
    def exits(q, k, v, **options):
        raise SystemExit(3)

    assert equiv.check(exits, KEY, seed=0).status == "error"


def test_progress_lines_for_a_long_check(monkeypatch):
    monkeypatch.setattr(engine, "PROGRESS_AFTER", 0.0)
    lines = []
    equiv.check(reference, KEY, seed=3, max_examples=5, progress=lines.append)
    assert lines and all("seed 3" in line and "worst ratio" in line for line in lines)
    assert "examples" in lines[-1]


def test_a_strategy_that_raises_while_drawing_is_an_error():
    def draw_fails(value):
        raise ZeroDivisionError("bad option")

    result = equiv.check(reference, KEY, inputs=NO_LSE.map(draw_fails), seed=0)
    assert result.status == "error" and "ZeroDivisionError: bad option" in result.reason


def test_no_example_drawn_is_not_run_never_passed():
    result = equiv.check(reference, KEY, inputs=NO_LSE.filter(lambda args: False), seed=0, max_examples=5)
    assert result.status == "not run" and result.examples == 0
    assert "NOT RUN" in str(result)


def off_by_one_row(q, k, v, **options):
    out = reference(q, k, v, **options)
    out = (out,) if not isinstance(out, tuple) else out
    wrong = out[0].copy()
    if wrong.shape[1] > 2:
        wrong[:, 2, :, :] += 1e-3
    return (wrong,) + out[1:] if len(out) > 1 else wrong


def test_a_counterexample_holds_the_values_to_debug_with():
    result = equiv.check(off_by_one_row, KEY, inputs=NO_LSE, seed=0)
    assert result.status == "failed"
    comparison = result.counterexample.comparison
    assert comparison.index["query"] == 2 and set(comparison.index) == {"batch", "query", "head", "channel"}
    assert comparison.actual - comparison.expected == pytest.approx(1e-3)
    assert comparison.over_budget == comparison.elements // result.counterexample.args["q"].shape[1]
    assert comparison.positions == (2,)
    message = result.counterexample.message
    assert "expected" in message and "got" in message and "elements over budget, at time positions 2" in message
    assert str(result).count(message.splitlines()[0]) == 1, "the message is printed once"


def test_the_worst_example_seen_is_kept_besides_the_shrunk_one():
    def worse_when_longer(q, k, v, **options):
        out = reference(q, k, v, **options)
        return out if q.shape[1] < 4 else out + 1e-3 * q.shape[1] ** 4

    kept = 0
    for seed in range(6):
        result = equiv.check(worse_when_longer, KEY, inputs=NO_LSE, seed=seed, max_examples=50)
        assert result.status == "failed"
        if result.worst_example is not None:
            kept += 1
            assert result.worst_example.comparison.worst_ratio > result.counterexample.comparison.worst_ratio
            assert "worst example seen" in str(result)
    assert kept


def run_reproducer(source: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "reproduce.py"
    script.write_text(source)
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)


def test_the_reproducer_of_a_closure_runs_as_printed_and_exits_1(tmp_path):
    factor = 1.001

    def scaled(q, k, v, **options):
        return reference(q, k, v, **options) * factor

    result = equiv.check(scaled, KEY, inputs=NO_LSE, seed=0, max_examples=20)
    run = run_reproducer(result.counterexample.reproducer, tmp_path)
    assert run.returncode == 1, run.stderr
    assert "worst error" in run.stdout


def test_a_file_importing_its_sibling_module_checks_and_reproduces_from_the_cli(tmp_path, capsys):
    (tmp_path / "helpers.py").write_text("SCALE = 1.001\n")
    (tmp_path / "kernels.py").write_text(textwrap.dedent("""
        import helpers
        from seqcheck import equiv

        def attention(q, k, v, **options):
            return equiv.reference("attention.softmax.parallel")(q, k, v, **options) * helpers.SCALE
    """))
    code = main(["check", f"{tmp_path / 'kernels.py'}:attention", KEY, "--fix", "return_lse=False", "--seed", "0",
                 "--max-examples", "20"])
    out = capsys.readouterr().out
    assert code == 1 and "FAILED" in out
    reproducer = out[out.index('"""seqcheck counterexample'):]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = run_reproducer(reproducer, elsewhere)
    assert run.returncode == 1, run.stderr


def test_cli_exit_codes_and_ranges(tmp_path, capsys):
    (tmp_path / "k.py").write_text(textwrap.dedent("""
        import numpy as np
        from seqcheck import equiv
        ref = equiv.reference("attention.softmax.parallel")
        def good(q, k, v, **o):
            return ref(q, k, v, **o)
        def float32(q, k, v, **o):
            return ref(q, k, v, **o).astype(np.float32)
    """))
    common = [KEY, "--fix", "return_lse=False", "--fix", "q_len=3..5", "--seed", "0", "--max-examples", "10"]
    assert main(["check", f"{tmp_path / 'k.py'}:good", *common]) == 0
    assert main(["check", f"{tmp_path / 'k.py'}:float32", *common]) == 2
    assert "dtype='float32'" in capsys.readouterr().out
    assert main(["check", f"{tmp_path / 'k.py'}:good", KEY, "--fix", "q_len=5..3"]) == 2
    assert "empty" in capsys.readouterr().err
    assert main(["check", f"{tmp_path / 'nope.py'}:good", KEY]) == 2


def test_cli_timeout_flag(tmp_path, capsys):
    (tmp_path / "slow.py").write_text("import time\ndef attention(q, k, v, **o):\n    time.sleep(30)\n")
    assert main(["check", f"{tmp_path / 'slow.py'}:attention", KEY, "--timeout", "0.5", "--seed", "0"]) == 2
    assert "did not finish within 0.5 s" in capsys.readouterr().out


def test_replay_raises_a_usage_error_with_its_hint():
    args = {"q": np.ones((1, 1, 1, 1)), "k": np.ones((1, 1, 1, 1)), "v": np.ones((1, 1, 1, 1))}
    with pytest.raises(equiv.UsageError, match="dtype='float32'"):
        equiv.replay(float32_attention, KEY, args)
