"""Packaging beyond pyproject.toml: each top-level folder is the subpackage seqcheck.<folder>, and
every package below it is found by setuptools' find_packages (no list kept by hand, so a new
family's folders ship in the wheel without an edit here)."""

from setuptools import find_packages, setup

LAYERS = ("reference", "properties", "equiv", "gpu")

packages = ["seqcheck"] + [f"seqcheck.{layer}" for layer in LAYERS]
packages += [f"seqcheck.{layer}.{sub}" for layer in LAYERS for sub in find_packages(layer)]

setup(packages=packages, package_dir={"seqcheck": "seqcheck", **{f"seqcheck.{layer}": layer for layer in LAYERS}})
