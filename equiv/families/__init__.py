"""One module per mechanism family: its forms, derived bounds, claims and report sweeps.

A new family adds a module here and its name to ``FAMILIES``; nothing else in ``equiv`` changes.
"""

import importlib

FAMILIES = ("attention", "positional", "ssm", "mamba", "linear", "eviction")


def register_all() -> None:
    for name in FAMILIES:
        importlib.import_module(f"{__name__}.{name}")
