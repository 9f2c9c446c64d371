"""Deliberately wrong implementations, one module per family, each with a ``MUTANTS`` table
(claim key -> the mutant that claim must reject). ``mutate`` builds a mutant from a module of
the project by editing its source, the way a bug looks."""

import importlib
import inspect


def mutate(module_name: str, name: str, edits: list[tuple[str, str]]):
    """The module's source with each ``(old, new)`` edit applied (``old`` must occur exactly once),
    executed as a new module; returns its namespace."""
    module = importlib.import_module(module_name)
    source = inspect.getsource(module)
    for old, new in edits:
        count = source.count(old)
        if count != 1:
            raise AssertionError(f"mutant {name}: {old!r} occurs {count} times in {module_name}, expected once")
        source = source.replace(old, new)
    namespace = {"__name__": f"mutants.{name}", "__file__": f"<mutant {name} of {module_name}>",
                 "__package__": module.__package__}
    exec(compile(source, namespace["__file__"], "exec"), namespace)
    return namespace
