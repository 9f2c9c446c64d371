"""Hypothesis strategies that build valid arguments for every registered form.

``inputs_for(key, **options)`` returns the strategy of keyword-argument dicts for form ``key``;
``options`` narrow it (each a strategy or a fixed value), for a kernel that supports less.
"""

from __future__ import annotations

import inspect

from seqcheck.properties import attention, positional, ssm
from seqcheck.properties import eviction, linear, mamba
from seqcheck.properties.arrays import random_arrays
from seqcheck.properties.attention import attention_inputs, flash_inputs, split_kv_inputs
from seqcheck.properties.positional import (alibi_inputs, rope_inputs, rope_matrix_inputs, rope_pair_inputs,
                                            sinusoidal_inputs)
from seqcheck.properties.linear import linear_inputs
from seqcheck.properties.eviction import decode_inputs, eviction_data
from seqcheck.properties.mamba import selective_scan_inputs, ssd_inputs

_STRATEGIES = {**attention.STRATEGIES, **positional.STRATEGIES, **ssm.STRATEGIES, **mamba.STRATEGIES,
               **linear.STRATEGIES, **eviction.STRATEGIES}


def inputs_for(key: str, **options):
    """The strategy of valid keyword arguments for form ``key``, narrowed by ``options``.

    >>> from seqcheck.properties import inputs_for
    >>> strategy = inputs_for("attention.flash.tiled", causal=True, softcap=None, head_dim=4)
    """
    try:
        make = _STRATEGIES[key]
    except KeyError:
        raise KeyError(f"no input strategy for {key!r}; known: {', '.join(sorted(_STRATEGIES))}") from None
    unknown = sorted(set(options) - _option_names(make))
    if unknown:
        raise TypeError(f"inputs_for({key!r}): unknown option(s) {', '.join(unknown)}; "
                        f"options are {', '.join(sorted(_option_names(make)))}")
    return make(**options)


def _option_names(make) -> set:
    """Keyword options of a strategy function, following ``**options`` to attention_inputs."""
    parameters = inspect.signature(make).parameters.values()
    names = {p.name for p in parameters if p.kind == p.KEYWORD_ONLY}
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        names |= _option_names(attention_inputs)
    return names


__all__ = ["inputs_for", "attention_inputs", "flash_inputs", "split_kv_inputs", "rope_inputs",
           "rope_pair_inputs", "rope_matrix_inputs", "alibi_inputs", "sinusoidal_inputs", "random_arrays",
           "selective_scan_inputs", "ssd_inputs", "linear_inputs", "decode_inputs", "eviction_data"]
