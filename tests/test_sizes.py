"""Size tiers: the default strategies reach production tile sizes often enough that a kernel with
fixed 64 x 64 tiles and a cross-tile bug is caught with every seed at 100 examples; failures
still shrink to the smallest failing size; every form's options are listed (and documented)."""

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import find, given, settings, strategies as st
from hypothesis.errors import NoSuchExample

from kernels import fixed_tile_flash as tiles
from seqcheck import equiv
from seqcheck.properties import SIZES, inputs_for, options, options_markdown
from seqcheck.properties.describe import _documented, option_names
from seqcheck.properties.arrays import HEAD_DIMS, TILE_BLOCKS, TILE_LENGTHS, blocks

KEY = "attention.flash.tiled"
PLAIN = dict(softcap=None, alibi_slopes=None, window=None, key_padding_mask=False, return_lse=False)
SEEDS = range(20)
"""Seeds of the every-seed test (scripts measured 100: see docs/inputs.md, "Size tiers")."""


def _check(kernel, seed):
    return equiv.check(kernel, KEY, inputs=inputs_for(KEY, **PLAIN), seed=seed, max_examples=100)


# ----------------------------------------------------------------------------- fixed-tile kernels

@pytest.mark.parametrize("seed", range(4))
def test_the_correct_fixed_tile_kernel_passes(seed):
    result = _check(tiles.flash_fixed_tiles, seed)
    assert result.passed, str(result)


@pytest.mark.parametrize("bug", ["no_output_rescale", "drops_last_key_tile"])
def test_a_cross_tile_bug_is_caught_with_every_seed(bug):
    missed = [seed for seed in SEEDS if _check(tiles.KERNELS[bug], seed).passed]
    assert not missed, f"{bug} passed 100 default examples with seed(s) {missed}"


@pytest.mark.parametrize("bug, keys", [("no_output_rescale", range(65, 81)), ("drops_last_key_tile", [65])])
def test_a_cross_tile_counterexample_shrinks_to_just_past_one_tile(bug, keys):
    """Every axis shrinks to its smallest failing size: one query, D = 1, and keys just past one
    tile (65 when any second tile fails; for the missing rescale, the first length at which the
    shrunk data's row max moves into the second tile)."""
    for seed in range(3):
        args = _check(tiles.KERNELS[bug], seed).counterexample.args
        assert args["k"].shape[1] in keys, args["k"].shape
        assert args["q"].shape[:2] == (1, 1) and args["q"].shape[3] == 1, args["q"].shape


def test_the_kernels_agree_with_the_reference_on_every_feature():
    """The correct kernel handles what the default strategy draws: masks, windows, ALiBi, softcap."""
    assert equiv.check(tiles.flash_fixed_tiles, KEY, seed=1, max_examples=60).passed


def _first_ten_keys_only(q, k, v, *, scale=None, causal=False, window=None, key_padding_mask=None,
                         alibi_slopes=None, softcap=None, return_lse=False):
    """Wrong once Tk > 10: every large example shows it, only Tk = 11 among the small ones."""
    return tiles.flash_fixed_tiles(q, k[:, :10], v[:, :10], scale=scale)


def test_a_failure_found_at_a_large_size_shrinks_into_the_small_sizes():
    """Tk > 10 fails: found at a large length more often than not, the counterexample is still
    the smallest failing size, Tk = 11 of the small sizes (not 15, the smallest large length)."""
    inputs = inputs_for(KEY, **{**PLAIN, "causal": False})
    for seed in range(3):
        result = equiv.check(_first_ten_keys_only, KEY, inputs=inputs, seed=seed, max_examples=100)
        q, k = result.counterexample.args["q"], result.counterexample.args["k"]
        assert k.shape[1] == 11 and q.shape[1] == 1 and q.shape[3] == 1, (q.shape, k.shape)
    large = equiv.check(_first_ten_keys_only, KEY, inputs=inputs_for(KEY, size="large", **{**PLAIN, "causal": False}),
                        seed=0, max_examples=20)
    assert large.counterexample.args["k"].shape[1] == min(TILE_LENGTHS)  # within the large tier: its smallest


# ----------------------------------------------------------------------------- the tiers

def _shapes(key, n=60, **options_):
    seen = []

    @settings(max_examples=n, database=None, deadline=None)
    @given(inputs_for(key, **options_))
    def collect(args):
        seen.append({name: np.shape(value) for name, value in args.items() if isinstance(value, np.ndarray)}
                    | {name: value for name, value in args.items() if name in ("block_q", "block_k", "chunk_size",
                                                                               "num_splits", "dim")})

    collect()
    return seen


def test_the_small_tier_keeps_todays_tiny_shapes():
    for args in _shapes(KEY, size="small"):
        assert args["q"][1] <= 9 and args["k"][1] <= 11 and args["q"][3] <= 8


def test_the_large_tier_draws_tile_sizes_and_sensible_blocks():
    long_rows = 0
    for args in _shapes(KEY, size="large"):
        Tq, Tk, D = args["q"][1], args["k"][1], args["q"][3]
        assert Tq in TILE_LENGTHS and Tk in TILE_LENGTHS and D in HEAD_DIMS
        for block, length in ((args["block_q"], Tq), (args["block_k"], Tk)):
            if length > 32:  # past 32 steps: a tile size that fits, or one block for everything
                long_rows += 1
                assert block == length + 1 or (block in TILE_BLOCKS and block <= length), (block, length)
    assert long_rows, "the large tier drew no length past 32"
    for args in _shapes("attention.flash.split_kv", size="large"):
        assert args["num_splits"] <= max(7, args["k"][1] + 2)


@pytest.mark.parametrize("length", [1, 15, 32])
def test_up_to_32_steps_blocks_run_from_one_to_one_past_the_length(length):
    """Every block size from 1 (many ragged tiles) to length + 1 (one block for everything), and no other."""
    for target in (1, max(1, length - 1), length, length + 1):
        assert find(blocks(length), lambda block: block == target) == target
    with pytest.raises(NoSuchExample):
        find(blocks(length), lambda block: not 1 <= block <= length + 1)


@pytest.mark.parametrize("key, axis", [("mamba.ssd.chunked", "x"), ("mamba.selective_scan.chunked", "u"),
                                       ("linear.attention.chunked", "q")])
def test_the_large_tier_of_scans_draws_tile_lengths_and_chunks(key, axis):
    for args in _shapes(key, n=20, size="large"):
        T = args[axis][1]
        assert T in TILE_LENGTHS and (T <= 32 or args["chunk_size"] >= 15)


def test_the_default_tier_mixes_large_sizes_among_small_ones():
    shapes = _shapes(KEY, n=100)
    large_keys = sum(args["k"][1] in TILE_LENGTHS for args in shapes)
    assert 5 <= large_keys <= 60, large_keys
    assert all(args["k"][1] <= 11 or args["k"][1] in TILE_LENGTHS for args in shapes)
    assert all(args["q"][3] <= 8 or args["q"][3] in HEAD_DIMS for args in shapes)


def test_the_default_table_is_ordered_so_shrinking_walks_down_the_sizes():
    from seqcheck.properties.arrays import LARGE_PER_100, lengths

    axis = lengths(11)
    assert list(axis.mixed) == sorted(axis.mixed) and set(axis.mixed) == set(axis.small) | set(axis.large)
    share = sum(value in axis.large for value in axis.mixed) / len(axis.mixed)
    assert abs(share - LARGE_PER_100 / 100) < 0.05


def test_an_explicit_axis_overrides_the_tier_and_ranges_are_accepted():
    for args in _shapes(KEY, n=30, size="large", q_len=st.integers(1, 3), head_dim=4, k_len=range(60, 70)):
        assert args["q"][1] <= 3 and args["q"][3] == 4 and 60 <= args["k"][1] < 70
    for args in _shapes(KEY, n=30, size="small", k_len=st.integers(1, 300)):
        assert args["q"][1] <= 9 and (args["k"][1] <= 32 or args["block_k"] >= 15)


def test_an_unknown_size_is_refused():
    with pytest.raises(ValueError, match="size"):
        _shapes(KEY, n=1, size="huge")
    assert SIZES == ("small", "default", "large")


def test_exact_strategies_take_no_size():
    from seqcheck.properties.linear import rational_linear_inputs
    from seqcheck.properties.mamba import rational_ssd_inputs, scan_element_inputs
    from seqcheck.properties.ssm import rational_lti_inputs

    for strategy in (rational_linear_inputs, rational_ssd_inputs, scan_element_inputs, rational_lti_inputs):
        with pytest.raises(TypeError):
            strategy(size="large")


# ----------------------------------------------------------------------------- options and their docs

FORMS = equiv.forms()


@pytest.mark.parametrize("key", FORMS)
def test_options_lists_every_accepted_option_with_a_description(key):
    listed = options(key)
    assert set(listed) == option_names(equiv.get_form(key).inputs)
    for name, line in listed.items():
        assert line.name == name and line.description and line.default
        assert str(line) == f"{line.description} (default: {line.default})"
    inputs_for(key, **{name: _signature_default(key, name) for name in listed})  # each listed option is accepted


def _signature_default(key, name):
    return next(parameter.default for option, parameter, _ in _documented(equiv.get_form(key).inputs) if option == name)


def test_options_of_an_unknown_form_is_a_key_error():
    with pytest.raises(KeyError, match="no input strategy"):
        options("attention.nope.tiled")


def test_size_is_an_option_wherever_a_size_makes_sense():
    sized = {key for key in FORMS if "size" in options(key)}
    assert sized == set(FORMS) - {"positional.alibi.slopes"}


DOC = Path(__file__).parent.parent / "docs" / "inputs.md"


def _documented_options() -> dict:
    """Form -> option names, from the tables of docs/inputs.md."""
    tables, keys = {}, []
    for line in DOC.read_text().splitlines():
        if line.startswith("### "):
            keys = re.findall(r"`([a-z_0-9.]+)`", line)
            for key in keys:
                tables[key] = set()
        elif line.startswith("| `") and keys:
            name = re.match(r"\| `(\w+)`", line).group(1)
            for key in keys:
                tables[key].add(name)
    return tables


def test_the_docs_list_exactly_the_options_of_every_form():
    documented = _documented_options()
    assert sorted(documented) == FORMS
    for key in FORMS:
        assert documented[key] == set(options(key)), key


def test_the_docs_tables_are_the_generated_ones():
    text = DOC.read_text()
    block = re.search(r"<!-- options:begin -->\n(.*?)<!-- options:end -->", text, flags=re.S)
    assert block, "docs/inputs.md lost its options markers"
    assert block.group(1) == options_markdown(), (
        "docs/inputs.md is out of date: regenerate the block between the markers with "
        "python -c 'from seqcheck.properties import options_markdown; print(options_markdown(), end=\"\")'")
