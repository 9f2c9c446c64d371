"""Runnable reproducers: the shrunk arguments written out as Python source, and the call that
replays them (``load_candidate`` + ``replay``)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
from pathlib import Path

import numpy as np


def candidate_spec(candidate) -> str | None:
    """``/abs/path/file.py:name`` (or ``module:name`` when there is no source file) that
    ``load_candidate`` turns back into ``candidate``; None for lambdas and other anonymous code."""
    name = getattr(candidate, "__qualname__", None)
    if name is None or "<" in name:
        return None
    try:
        source = inspect.getsourcefile(candidate)
    except TypeError:
        source = None
    if source:
        return f"{Path(source).resolve()}:{name}"
    module = getattr(candidate, "__module__", None)
    return f"{module}:{name}" if module and module != "__main__" else None


def load_candidate(spec: str):
    """Import ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION``."""
    module_part, sep, name = spec.rpartition(":")
    if not sep or not module_part or not name:
        raise ValueError(f"candidate: expected 'MODULE:FUNCTION' or 'file.py:FUNCTION', got {spec!r}")
    if module_part.endswith(".py") or "/" in module_part:
        path = Path(module_part)
        if not path.is_file():
            raise ValueError(f"candidate: no file {str(path)!r}")
        module_spec = importlib.util.spec_from_file_location(f"seqcheck_candidate_{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    try:
        return _resolve(module, name)
    except AttributeError:
        raise ValueError(f"candidate: {module_part!r} has no attribute {name!r}") from None


def source_of_args(args: dict) -> str:
    lines = ["args = {"]
    for name, value in args.items():
        lines.append(f"    {name!r}: {_literal(value)},")
    lines.append("}")
    return "\n".join(lines)


def reproducer_source(*, title: str, call: str, args: dict, candidate: str | None) -> str:
    head = [f'"""{title}"""', "import numpy as np", "from seqcheck import equiv", ""]
    if candidate is not None:
        head.append(f"candidate = equiv.load_candidate({candidate!r})")
    else:
        head.append("candidate = ...  # the implementation under test (it could not be located by name)")
    return "\n".join(head + [source_of_args(args), f"print({call})", ""])


def _resolve(module, qualname: str):
    target = module
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _literal(value) -> str:
    if isinstance(value, np.ndarray):
        body = ", ".join(_scalar(v) for v in value.ravel().tolist())
        dtype = {"b": "bool", "i": "np.int64", "u": "np.int64", "c": "np.complex128"}.get(value.dtype.kind, "np.float64")
        return f"np.array([{body}], dtype={dtype}).reshape({tuple(value.shape)!r})"
    if isinstance(value, tuple):
        return "(" + "".join(_literal(v) + ", " for v in value) + ")"
    if isinstance(value, float):
        return _scalar(value)
    return repr(value)


def _scalar(value) -> str:
    if isinstance(value, complex):
        return f"complex({_scalar(value.real)}, {_scalar(value.imag)})"
    if isinstance(value, float) and not math.isfinite(value):
        return "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    return repr(value)
