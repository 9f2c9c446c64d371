"""Every GPU implementation of the project, one ``register`` call each (see registry.py)."""

from __future__ import annotations

from seqcheck.gpu.registry import Implementation, register  # noqa: F401
