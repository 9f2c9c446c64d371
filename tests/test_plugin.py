"""The pytest plugin: profiles registered, gpu tests skipped with the reason where no GPU exists."""

import pytest
from hypothesis import settings

from seqcheck.gpu.backend import gpu_unavailable_reason, has_gpu
from seqcheck.properties.profiles import PROFILES


@pytest.mark.parametrize("name", ["dev", "ci", "thorough", "sim"])
def test_profiles_are_registered(name):
    assert settings.get_profile(name).max_examples == PROFILES[name]["max_examples"]


def test_ci_profile_is_deterministic_and_has_no_deadline():
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.deadline is None and ci.database is None


def test_gpu_probe_gives_a_reason_or_a_device():
    assert has_gpu() == (gpu_unavailable_reason() is None)


@pytest.mark.gpu
def test_gpu_marker_runs_only_with_a_device():
    assert has_gpu(), "a gpu-marked test ran on a machine without a GPU"
