"""One module per mechanism family: its forms (each with its inputs, bound and oracle), its
claims, adapters and report sweeps, and the GPU implementations of its forms.

Families are found by discovery: every module here whose name does not start with ``_`` is
imported once and registers what it declares. A new family is one new module; nothing else in
``equiv`` changes.
"""

import importlib
import pkgutil


def family_names() -> list[str]:
    """The family modules, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if not info.name.startswith("_"))


def register_all() -> None:
    for name in family_names():
        importlib.import_module(f"{__name__}.{name}")
