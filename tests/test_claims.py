"""Every registered claim holds for the references, and each is rejected for a mutant."""

import importlib
import pkgutil

import pytest
from hypothesis import strategies as st

import mutants
from mutants import attention as wrong_attention
from mutants import positional as wrong_positional
from seqcheck import equiv
from seqcheck.properties import inputs_for

CLAIMS = [claim.key for claim in equiv.claims()]


@pytest.mark.parametrize("key", CLAIMS)
def test_claim_holds_for_the_reference(key):
    result = equiv.run_claim(key, seed=0)
    assert result.passed, str(result)
    assert result.examples > 0


def discovered_mutants() -> dict:
    """claim key -> mutant, from the ``MUTANTS`` table of every module in tests/mutants/."""
    found: dict = {}
    for info in pkgutil.iter_modules(mutants.__path__):
        table = getattr(importlib.import_module(f"mutants.{info.name}"), "MUTANTS", {})
        assert not set(table) & set(found), f"mutants/{info.name}.py repeats {set(table) & set(found)}"
        found.update(table)
    return found


MUTANTS = discovered_mutants()


def test_every_claim_has_a_mutant():
    assert sorted(MUTANTS) == sorted(CLAIMS)


@pytest.mark.parametrize("key", sorted(MUTANTS))
def test_claim_rejects_its_mutant(key):
    result = equiv.run_claim(key, impl=MUTANTS[key], seed=0, max_examples=200)
    assert not result.passed, f"{key} accepted the mutant {MUTANTS[key].__name__}"
    assert result.worst_ratio > 1
    assert result.counterexample is not None


PLAIN = dict(window=None, key_padding_mask=None, alibi_slopes=None, softcap=None)


@pytest.mark.parametrize("mutant, key, inputs", [
    (wrong_attention.flash_without_rescale, "attention.flash.tiled", inputs_for("attention.flash.tiled", causal=False, **PLAIN)),
    (wrong_attention.causal_off_by_one, "attention.softmax.parallel", inputs_for("attention.softmax.parallel", return_lse=False, **PLAIN)),
    (wrong_attention.causal_top_left, "attention.softmax.parallel", inputs_for("attention.softmax.parallel", return_lse=False, **PLAIN)),
    (wrong_positional.rope_half_base_1000, "positional.rope.half", None),
    (wrong_positional.alibi_geometric_for_any_count, "positional.alibi.slopes", None),
    (wrong_positional.sinusoidal_concatenated_paper_exponent, "positional.sinusoidal.concatenated", None),
])
def test_check_rejects_a_wrong_form(mutant, key, inputs):
    result = equiv.check(mutant, key, seed=0, max_examples=200, inputs=inputs)
    assert not result.passed, str(result)


def test_top_left_causal_is_only_wrong_when_lengths_differ():
    """torch's is_causal (top-left) agrees with flash-attention's (bottom-right) iff Tq == Tk."""
    square = inputs_for("attention.softmax.parallel", q_len=4, k_len=4, causal=True, return_lse=False, **PLAIN)
    assert equiv.check(wrong_attention.causal_top_left, "attention.softmax.parallel", inputs=square, seed=0).passed
    longer_keys = inputs_for("attention.softmax.parallel", q_len=3, k_len=st.integers(4, 8), causal=True,
                             return_lse=False, **PLAIN)
    assert not equiv.check(wrong_attention.causal_top_left, "attention.softmax.parallel", inputs=longer_keys,
                           seed=0).passed


@pytest.mark.parametrize("key", ["attention.flash.tiled", "attention.flash.split_kv", "attention.softmax.parallel",
                                 "sparse.attention.block_sparse"])
def test_the_references_pass_check_in_float32(key):
    """A float64 reference handed float32-rounded inputs is well within the float32 budget."""
    result = equiv.check(equiv.reference(key), key, dtype="float32", seed=0, max_examples=30)
    assert result.passed, str(result)


SCAN_DEFINITIONS = ["mamba.selective_scan.recurrent", "mamba.ssd.recurrent", "linear.attention.recurrent",
                    "sparse.attention.masked"]


@pytest.mark.parametrize("key", SCAN_DEFINITIONS)
def test_a_float32_evaluation_passes_and_a_bfloat16_one_fails_the_float32_check(key):
    """The plain definition run in float32 is a float32 kernel within budget; run in bfloat16
    it is not (the budget follows the candidate's dtype, it is not a constant)."""
    plain = equiv.get_form(key).plain

    def in_dtype(dtype):
        def candidate(**args):
            outputs = plain(args, dtype)
            return outputs if len(outputs) > 1 else outputs[0]
        return candidate

    assert equiv.check(in_dtype("float32"), key, dtype="float32", seed=0, max_examples=30).passed
    assert not equiv.check(in_dtype("bfloat16"), key, dtype="float32", seed=0, max_examples=100).passed
