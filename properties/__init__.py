"""Hypothesis strategies that build valid arguments for every registered form.

``inputs_for(key, **options)`` returns the strategy of keyword-argument dicts for form ``key``;
``options`` narrow it (each a strategy, a ``range`` or a fixed value), for a kernel that supports
less, and ``size`` picks a size tier ("small", "default", "large"; docs/inputs.md).
``options(key)`` lists a form's options with their defaults and what each does.
"""

from __future__ import annotations

import functools
import inspect
import re

from seqcheck.properties import attention, positional, ssm
from seqcheck.properties import eviction, linear, mamba
from seqcheck.properties.arrays import SIZES, Sized, random_arrays
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
    >>> large = inputs_for("attention.flash.tiled", size="large", k_len=range(60, 70))

    ``options(key)`` lists the options ``key`` accepts.
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


class Option(str):
    """One option of a form's strategy: reads as one line, "description (default: ...)", and
    keeps ``name``, ``default`` (as text) and ``description`` apart."""

    name: str
    default: str
    description: str

    def __new__(cls, name: str, default: str, description: str):
        line = super().__new__(cls, f"{description} (default: {default})")
        line.name, line.default, line.description = name, default, description
        return line


def options(key: str) -> dict[str, Option]:
    """The options ``inputs_for(key, ...)`` accepts, in signature order: name -> one line
    "description (default: ...)" (an ``Option``, a str with ``.default`` and ``.description``).

    >>> from seqcheck.properties import options
    >>> print(options("attention.flash.tiled")["k_len"])
    key length Tk (default: 1..11 (large: 15..257 near multiples of 16))
    """
    try:
        make = _STRATEGIES[key]
    except KeyError:
        raise KeyError(f"no input strategy for {key!r}; known: {', '.join(sorted(_STRATEGIES))}") from None
    found = {}
    for name, parameter, text in _documented(make):
        found[name] = Option(name, _describe(parameter.default), text.rstrip("."))
    missing = sorted(_option_names(make) - set(found))
    if missing:  # every option must say what it does; tests/test_sizes.py checks there are none
        raise LookupError(f"{key}: option(s) {', '.join(missing)} undocumented in the strategy's docstring")
    return found


def options_markdown(keys=None) -> str:
    """The options tables of docs/inputs.md: one table per group of forms with the same options."""
    groups: dict = {}
    for key in sorted(_STRATEGIES) if keys is None else keys:
        table = options(key)
        signature = tuple((name, o.default, o.description) for name, o in table.items())
        groups.setdefault(signature, []).append(key)
    lines = []
    for signature, keys_ in groups.items():
        lines.append("### " + ", ".join(f"`{k}`" for k in keys_))
        lines.append("")
        if not signature:
            lines += ["No options.", ""]
            continue
        lines += ["| option | default | description |", "|---|---|---|"]
        for name, default, description in signature:
            lines.append(f"| `{name}` | {_cell(default)} | {_cell(description)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _documented(make):
    """(name, parameter, description) for every keyword option of ``make``, following
    ``**options`` to ``attention_inputs``; descriptions come from "Options:" docstring sections."""
    parameters = inspect.signature(make).parameters.values()
    texts = {}
    for source in reversed(_sources(make)):
        texts.update(_option_docs(source.__doc__ or ""))
    rows = [(p.name, p, texts.get(p.name)) for p in parameters if p.kind == p.KEYWORD_ONLY]
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        rows += list(_documented(attention_inputs))
    return [row for row in rows if row[2] is not None]


def _sources(make) -> list:
    """``make`` and the functions it wraps (``for_form``'s, partials), whose docstrings document it."""
    chain = [make]
    while True:
        last = chain[-1]
        inner = last.func if isinstance(last, functools.partial) else getattr(last, "__wrapped__", None)
        if inner is None or inner in chain:
            return chain
        chain.append(inner)


def _option_docs(doc: str) -> dict:
    """``name: text`` entries of a docstring's "Options:" section (continuation lines indented)."""
    lines = inspect.cleandoc(doc).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Options:")
    except StopIteration:
        return {}
    indent = None
    entries: dict = {}
    name = None
    for line in lines[start + 1:]:
        if not line.strip():
            break
        depth = len(line) - len(line.lstrip())
        indent = depth if indent is None else indent
        if depth < indent:
            break
        match = re.match(r"(\w+): (.*)", line.strip())
        if depth == indent and match:
            name = match.group(1)
            entries[name] = match.group(2)
        elif name is not None:
            entries[name] += " " + line.strip()
    return entries


_PRETTY = [
    (r"integers\(min_value=(-?\d+), max_value=(-?\d+)\)", r"\1..\2"),
    (r"floats\(min_value=([^,]+), max_value=([^)]+)\)", r"\1..\2"),
    (r"sampled_from\(\[([^\]]*)\]\)", r"one of \1"),
    (r"sampled_from\(\(([^)]*)\)\)", r"one of \1"),
    (r"^booleans\(\)$", "True or False"),
    (r"booleans\(\)", "True/False"),
    (r"none\(\)", "None"),
    (r"^one_of\((.*)\)$", r"\1"),
]


def _describe(default) -> str:
    """A default as the docs show it: strategies in a short form, values as repr."""
    if isinstance(default, Sized):
        return default.label
    text = repr(default)
    for pattern, replacement in _PRETTY:
        text = re.sub(pattern, replacement, text)
    return text


__all__ = ["inputs_for", "options", "options_markdown", "Option", "SIZES", "attention_inputs", "flash_inputs", "split_kv_inputs", "rope_inputs",
           "rope_pair_inputs", "rope_matrix_inputs", "alibi_inputs", "sinusoidal_inputs", "random_arrays",
           "selective_scan_inputs", "ssd_inputs", "linear_inputs", "decode_inputs", "eviction_data"]
