"""Hypothesis profiles shared by the pytest plugin and ``seqcheck report``.

``dev`` (fast, local), ``ci`` (derandomized, no deadline, bounded so the suite stays within
minutes on 2 cores), ``thorough`` (many examples, nightly), ``sim`` (tiny, CUDA simulator).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROFILES = {
    "dev": dict(max_examples=25, deadline=None),
    "ci": dict(max_examples=40, deadline=None, derandomize=True, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow]),
    "thorough": dict(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]),
    "sim": dict(max_examples=5, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow]),
}

for _name, _options in PROFILES.items():
    settings.register_profile(_name, **_options)


def load(name: str) -> None:
    if name not in PROFILES:
        raise ValueError(f"profile: expected one of {sorted(PROFILES)}, got {name!r}")
    settings.load_profile(name)
