"""The project's GPU implementations, each one entry: which form it computes, how to load it,
which dtypes it supports and which inputs it takes. Every entry is checked with
``seqcheck.equiv.check``, the call users make: the tests and the report iterate over this list.

A new kernel is one module in ``gpu/`` and one ``register`` call in ``gpu/catalog.py``;
nothing else changes. Loading is lazy, so importing seqcheck never imports Numba or CuPy.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

from seqcheck.gpu.backend import has_gpu


@dataclass(frozen=True)
class Implementation:
    """One GPU implementation of a registered form.

    ``target`` is ``"module:function"`` inside ``seqcheck.gpu``: a function with the form's
    signature taking and returning NumPy arrays (it moves them to the device itself), so the
    same entry runs on a GPU, under Numba's CUDA simulator, or, for array-module code, on NumPy.
    ``inputs(simulated)`` is the strategy of arguments it supports (tiny sizes when simulated).
    """

    name: str
    form: str
    target: str
    runtime: str  # "numba-cuda" or "cupy"
    dtypes: tuple[str, ...]
    inputs: Callable[[bool], object]

    def load(self) -> Callable:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(f"seqcheck.gpu.{module}"), function)

    def missing(self) -> list[str]:
        """The modules it needs here that are not installed (CuPy code without a GPU needs none:
        it runs on NumPy)."""
        needed = () if where(self.runtime) == "numpy" else RUNTIME_MODULES[self.runtime]
        return [name for name in needed if importlib.util.find_spec(name) is None]


RUNTIME_MODULES = {"numba-cuda": ("numba",), "cupy": ("cupy",)}


_IMPLEMENTATIONS: dict[str, Implementation] = {}


def register(implementation: Implementation) -> Implementation:
    if implementation.name in _IMPLEMENTATIONS:
        raise ValueError(f"GPU implementation {implementation.name!r} is registered twice")
    _IMPLEMENTATIONS[implementation.name] = implementation
    return implementation


def implementations() -> list[Implementation]:
    importlib.import_module("seqcheck.gpu.catalog")
    return [_IMPLEMENTATIONS[name] for name in sorted(_IMPLEMENTATIONS)]


def where(runtime: str) -> str:
    """Where an implementation of ``runtime`` runs here: "gpu", "simulator" (Numba's CUDA
    simulator, no GPU) or "numpy" (CuPy code on its NumPy array module, no GPU)."""
    if has_gpu():
        return "gpu"
    return "simulator" if runtime == "numba-cuda" else "numpy"


def use_simulator_without_gpu() -> None:
    """Turn Numba's CUDA simulator on where no GPU exists; must run before numba.cuda is imported."""
    if not has_gpu():
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
