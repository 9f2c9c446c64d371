"""Hypothesis strategies that build valid arguments for every registered form.

``inputs_for(key, **options)`` returns the strategy of keyword-argument dicts for form ``key``;
``options`` narrow it (each a strategy, a ``range`` or a fixed value), for a kernel that supports
less, and ``size`` picks a size tier ("small", "default", "large"; docs/inputs.md).
``options(key)`` lists a form's options with their defaults and what each does.
The builders (``attention_inputs``, ``ssd_inputs``, ...) take the same options directly.
"""

from __future__ import annotations

from seqcheck.properties.arrays import SIZES, random_arrays
from seqcheck.properties.attention import attention_inputs, flash_inputs, split_kv_inputs
from seqcheck.properties.describe import Option
from seqcheck.properties.positional import (alibi_inputs, rope_inputs, rope_matrix_inputs, rope_pair_inputs,
                                            sinusoidal_inputs)
from seqcheck.properties.linear import linear_inputs
from seqcheck.properties.eviction import decode_inputs, eviction_data
from seqcheck.properties.mamba import selective_scan_inputs, ssd_inputs


# Which builder a form key uses is declared with the form (seqcheck.equiv.families), so the three
# lookups by key forward to seqcheck.equiv.inputs: the one import from this layer upward, made at
# call time (the layers contract in pyproject.toml lists it).

def inputs_for(key: str, **options):
    """``seqcheck.equiv.inputs.inputs_for``: the strategy of valid keyword arguments for form
    ``key``, narrowed by ``options`` (each a strategy, a ``range`` or a fixed value).

    >>> from seqcheck.properties import inputs_for
    >>> strategy = inputs_for("attention.flash.tiled", causal=True, softcap=None, head_dim=4)
    """
    from seqcheck.equiv import inputs

    return inputs.inputs_for(key, **options)


def options(key: str) -> dict:
    """``seqcheck.equiv.inputs.options``: the options ``inputs_for(key, ...)`` accepts."""
    from seqcheck.equiv import inputs

    return inputs.options(key)


def options_markdown(keys=None) -> str:
    """``seqcheck.equiv.inputs.options_markdown``: the options tables of docs/inputs.md."""
    from seqcheck.equiv import inputs

    return inputs.options_markdown(keys)


__all__ = ["inputs_for", "options", "options_markdown", "Option", "SIZES", "attention_inputs", "flash_inputs", "split_kv_inputs", "rope_inputs",
           "rope_pair_inputs", "rope_matrix_inputs", "alibi_inputs", "sinusoidal_inputs", "random_arrays",
           "selective_scan_inputs", "ssd_inputs", "linear_inputs", "decode_inputs", "eviction_data"]
