"""What a strategy builder's options are: names, defaults and descriptions, read from its
signature and the "Options:" section of its docstring (no registry keys here:
``seqcheck.equiv.inputs`` maps a form key to its builder).
"""

from __future__ import annotations

import functools
import inspect
import re

from seqcheck.properties.arrays import Sized
from seqcheck.properties.attention import attention_inputs


def option_names(make) -> set:
    """Keyword options of a strategy function, following ``**options`` to attention_inputs."""
    parameters = inspect.signature(make).parameters.values()
    names = {p.name for p in parameters if p.kind == p.KEYWORD_ONLY}
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        names |= option_names(attention_inputs)
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


def describe(make, key: str = "") -> dict[str, Option]:
    """The options of strategy builder ``make`` in signature order: name -> ``Option``.
    LookupError if one is undocumented (``key`` names the form in the message)."""
    found = {}
    for name, parameter, text in _documented(make):
        found[name] = Option(name, _describe(parameter.default), text.rstrip("."))
    missing = sorted(option_names(make) - set(found))
    if missing:  # every option must say what it does; tests/test_sizes.py checks there are none
        raise LookupError(f"{key or make.__name__}: option(s) {', '.join(missing)} undocumented in the "
                          "strategy's docstring")
    return found


def markdown(tables: dict) -> str:
    """Options tables (docs/inputs.md) for ``tables`` (key -> ``describe`` result): one table per
    group of keys with the same options."""
    groups: dict = {}
    for key, table in tables.items():
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
