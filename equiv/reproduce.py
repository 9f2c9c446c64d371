"""Runnable reproducers: the arguments written out as Python source, the code that rebuilds the
candidate, and the call that replays them (``replay``), exiting 1 while the failure reproduces.

A candidate is rebuilt, in this order of preference, by: the recipe an adapter attaches
(``__seqcheck_recipe__``: a factory and its arguments, each rebuilt the same way); its module and
name (``equiv.load_candidate('package.module:function')``); its file and name
(``equiv.load_candidate('/abs/path/kernels.py:function')``, which puts the file's folder on
``sys.path`` so the file's own imports of sibling modules work); or, for closures, lambdas,
partials and functions of a script run as ``__main__``, its value serialised with cloudpickle.
"""

from __future__ import annotations

import base64
import importlib
import importlib.util
import inspect
import math
import sys
import sysconfig
import tokenize
from pathlib import Path

import numpy as np

CANDIDATE_MODULE_PREFIX = "seqcheck_candidate_"


def rebuild(obj) -> tuple[list[str], str]:
    """(import lines, expression) that evaluate to ``obj`` in a fresh interpreter, where
    ``equiv`` is ``seqcheck.equiv``; raises ValueError when no way is found."""
    recipe = getattr(obj, "__seqcheck_recipe__", None)
    if recipe is not None:
        module, factory, arguments = recipe
        imports, parts = [f"from {module} import {factory}"], []
        for argument in arguments:
            if argument is None or isinstance(argument, (bool, int, float, str)):
                parts.append(repr(argument))
                continue
            lines, expression = rebuild(argument)
            imports += lines
            parts.append(expression)
        return imports, f"{factory}({', '.join(parts)})"
    named = _by_name(obj)
    if named is not None:
        root = _import_root(obj) if not named.startswith("/") else None
        imports = ["import sys", f"sys.path.insert(0, {root!r})  # where its module imports from"] if root else []
        return imports, f"equiv.load_candidate({named!r})"
    return _by_value(obj)


def load_candidate(spec: str):
    """Import ``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION`` (the file's folder goes on
    ``sys.path`` first, so the file can import its sibling modules)."""
    if not isinstance(spec, str):
        raise TypeError(f"candidate: expected a string 'MODULE:FUNCTION' or 'file.py:FUNCTION', got {type(spec).__name__}")
    module_part, sep, name = spec.rpartition(":")
    if not sep or not module_part or not name:
        raise ValueError(f"candidate: expected 'MODULE:FUNCTION' or 'file.py:FUNCTION', got {spec!r}")
    if module_part.endswith(".py") or "/" in module_part:
        path = Path(module_part).resolve()
        if not path.is_file():
            raise ValueError(f"candidate: no file {module_part!r}")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        module_spec = importlib.util.spec_from_file_location(f"{CANDIDATE_MODULE_PREFIX}{path.stem}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_part)
        except ImportError as error:
            raise ValueError(f"candidate: cannot import module {module_part!r}: {error}") from None
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


def imports_of_args(args: dict) -> list[str]:
    """The imports the arguments' source needs: those of values rebuilt by their recipe (a
    ``__seqcheck_recipe__``: (module, factory, arguments), as the Jamba stack's weights)."""
    found = []
    for value in args.values():
        if getattr(value, "__seqcheck_recipe__", None) is not None:
            found += [line for line in rebuild(value)[0] if line not in found]
    return found


def reproducer_source(*, title: str, call: str, args: dict, candidate) -> str:
    """A script that rebuilds ``candidate`` (None: the claim's own reference), replays ``call``
    on ``args``, prints the comparison and exits 1 while it fails."""
    head = [f'"""{title}"""', "import numpy as np", "from seqcheck import equiv"]
    try:
        imports, expression = rebuild(candidate)
        body = [f"candidate = {expression}"]
    except ValueError as error:
        imports, body = [], [f"candidate = None  # {error}; put the implementation under test here"]
    imports += [line for line in imports_of_args(args) if line not in imports]
    return "\n".join(head + imports + [""] + body + [source_of_args(args), f"comparison = {call}", "print(comparison)",
                                                     "raise SystemExit(0 if comparison.passed else 1)", ""])


def _by_name(obj) -> str | None:
    """'module:qualname' or '/abs/file.py:qualname' that ``load_candidate`` resolves to ``obj``."""
    name, module_name = getattr(obj, "__qualname__", None), getattr(obj, "__module__", None)
    if not isinstance(name, str) or "<" in name or not isinstance(module_name, str) or module_name == "__main__":
        return None
    if not module_name.startswith(CANDIDATE_MODULE_PREFIX):
        try:
            if _resolve(importlib.import_module(module_name), name) is obj:
                return f"{module_name}:{name}"
        except Exception:  # not importable by name: try its file
            pass
    try:
        source = inspect.getsourcefile(obj)
    except TypeError:
        return None
    if source and source.endswith(".py") and Path(source).is_file():
        return f"{Path(source).resolve()}:{name}"
    return None


def _import_root(obj) -> str | None:
    """The folder a module outside the installed packages (a project's source tree, a test
    folder) is imported from, which a fresh interpreter may not have on its path; None for
    installed and standard-library modules."""
    module = sys.modules.get(getattr(obj, "__module__", ""))
    source = getattr(module, "__file__", None)
    if not source:
        return None
    path = Path(source).resolve()
    installed = [Path(p).resolve() for p in sysconfig.get_paths().values() if p]
    if any(path.is_relative_to(folder) for folder in installed):
        return None
    depth = module.__name__.count(".") + (1 if path.name == "__init__.py" else 0)
    return str(path.parents[depth])


def _by_value(obj) -> tuple[list[str], str]:
    try:
        import cloudpickle

        blob = base64.b64encode(cloudpickle.dumps(obj)).decode()
    except Exception as error:
        raise ValueError(f"{_label(obj)} could not be rebuilt by name or serialised ({type(error).__name__}: "
                         f"{error})") from None
    imports = ["import base64", "import pickle  # the candidate, serialised with cloudpickle"]
    folder = _source_folder(obj)
    if folder is not None:
        imports += ["import sys", f"sys.path.insert(0, {folder!r})  # the folder of the candidate's source"]
    return imports, f"pickle.loads(base64.b64decode({blob!r}))  # {_label(obj)}"


def _label(obj) -> str:
    name = getattr(obj, "__qualname__", None) or type(obj).__name__
    try:
        where = f" from {inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"
    except (TypeError, OSError, SyntaxError, tokenize.TokenError):  # no source, or a "file" that is not Python
        where = ""
    return f"{name}{where}"


def _source_folder(obj) -> str | None:
    try:
        source = inspect.getsourcefile(getattr(obj, "func", obj))
    except TypeError:
        return None
    return str(Path(source).resolve().parent) if source and Path(source).is_file() else None


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
    if getattr(value, "__seqcheck_recipe__", None) is not None:
        return rebuild(value)[1]
    return repr(value)


def _scalar(value) -> str:
    if isinstance(value, complex):
        return f"complex({_scalar(value.real)}, {_scalar(value.imag)})"
    if isinstance(value, float) and not math.isfinite(value):
        return "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf")
    return repr(value)
