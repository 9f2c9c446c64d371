"""pytest plugin (entry point ``pytest11``): seqcheck's Hypothesis profiles and the ``gpu`` marker.

Choose a profile with ``pytest --hypothesis-profile=NAME`` (dev, ci, thorough, sim); without
one, ``ci`` is loaded when the CI variable is set and ``dev`` otherwise.

It lives in the root package, above the layers: it reads ``properties`` (the profiles) and
``gpu`` (backend detection) and nothing of ``equiv``, so pytest starts without registering every
family.
"""

from __future__ import annotations

import os

import pytest

from seqcheck.properties import profiles


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a real CUDA GPU (skipped, with the reason, where none exists)")
    if not config.getoption("hypothesis_profile", default=None):
        profiles.load("ci" if os.environ.get("CI") else "dev")


def pytest_collection_modifyitems(config, items):
    from seqcheck.gpu.backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))
