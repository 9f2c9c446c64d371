"""Float arrays for property tests: one drawn seed, one drawn value style.

Drawing every element through Hypothesis would be slow at the sizes attention and scans need, so
the values come from a NumPy Generator seeded by a drawn integer; Hypothesis still shrinks the
seed, the style and every shape, so counterexamples come out small.
"""

from __future__ import annotations

import inspect

import numpy as np
from hypothesis import strategies as st

STYLES = ("normal", "uniform", "integers", "outliers")
"""normal: N(0,1); uniform: U(-1,1); integers: small integers in [-2, 2] (exact ties, zero rows);
outliers: N(0,1) with about one entry in twenty multiplied by 30 (heavy hitters, sudden maxima)."""


def values(rng: np.random.Generator, style: str, shape: tuple) -> np.ndarray:
    """Float64 values of ``shape`` in ``style`` (see STYLES)."""
    if style == "normal":
        return rng.standard_normal(shape)
    if style == "uniform":
        return rng.uniform(-1.0, 1.0, shape)
    if style == "integers":
        return rng.integers(-2, 3, shape).astype(np.float64)
    if style == "outliers":
        spikes = np.where(rng.random(shape) < 0.05, 30.0, 1.0)
        return rng.standard_normal(shape) * spikes
    raise ValueError(f"style: expected one of {STYLES}, got {style!r}")


def generators():
    """A NumPy Generator from a drawn seed (shrinks toward seed 0)."""
    return st.integers(0, 2**32 - 1).map(np.random.default_rng)


@st.composite
def random_arrays(draw, shapes: dict, styles=st.sampled_from(STYLES)):
    """A dict of float64 arrays with the given ``shapes``, sharing one seed and one style."""
    rng = draw(generators())
    style = draw(styles)
    return {name: values(rng, style, shape) for name, shape in shapes.items()}


def fixed_or(value):
    """Hypothesis strategies pass through; any other value becomes ``st.just(value)``."""
    return value if isinstance(value, st.SearchStrategy) else st.just(value)


def for_form(make, form: str, *, unused: tuple = ()):
    """``make`` narrowed to one form: ``form`` fixed, and a signature without the options that
    form ignores, so ``inputs_for`` lists (and accepts) only the options that do something."""
    def strategy(**options):
        return make(form=form, **options)

    signature = inspect.signature(make)
    strategy.__name__ = strategy.__qualname__ = f"{make.__name__}_{form}"
    strategy.__doc__ = f"``{make.__name__}`` for the {form} form."
    strategy.__signature__ = signature.replace(parameters=[
        p for name, p in signature.parameters.items() if name not in ("draw", "form") + tuple(unused)])
    return strategy
