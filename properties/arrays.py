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
    """Hypothesis strategies pass through; a ``range`` becomes the strategy of its members
    (``range(60, 70)``: 60..69, shrinking toward 60); any other value becomes ``st.just(value)``."""
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, range):
        if len(value) == 0:
            raise ValueError(f"empty range {value!r}")
        if value.step == 1:
            return st.integers(value.start, value.stop - 1)
        return st.sampled_from(value)
    return st.just(value)


def for_form(make, form: str, *, unused: tuple = ()):
    """``make`` narrowed to one form: ``form`` fixed, and a signature without the options that
    form ignores, so ``inputs_for`` lists (and accepts) only the options that do something."""
    def strategy(**options):
        return make(form=form, **options)

    signature = inspect.signature(make)
    strategy.__name__ = strategy.__qualname__ = f"{make.__name__}_{form}"
    strategy.__doc__ = f"``{make.__name__}`` for the {form} form."
    strategy.__wrapped__ = make  # where ``properties.options`` reads the options' descriptions
    strategy.__signature__ = signature.replace(parameters=[
        p for name, p in signature.parameters.items() if name not in ("draw", "form") + tuple(unused)])
    return strategy


# ----------------------------------------------------------------------------- size tiers

SIZES = ("small", "default", "large")
"""Size tiers of the strategies' ``size`` option (docs/inputs.md): "small" draws the tiny shapes
that run in milliseconds and shrink fast; "large" the sizes production kernels tile by;
"default" draws each size axis from both: a large value in about ``LARGE_PER_100`` draws of 100,
a small one otherwise, in one table ordered by size, so shrinking walks down through the small
values: a failure that a small size shows shrinks to it, one that needs a large size shrinks to
the smallest large size that fails (Tk = 65 for a bug past one 64-key tile)."""

LARGE_PER_100 = 30
"""Percentage of "default" draws of a size axis taken from its large values (Hypothesis's
generator reuses earlier choices: the measured rate is lower, see docs/inputs.md)."""

TILE_LENGTHS = tuple(sorted({m + d for m in range(16, 257, 16) for d in (-1, 0, 1)}))
"""Large-tier time lengths: every multiple of 16 up to 256 and its neighbours (15, 16, 17, 31,
..., 63, 64, 65, ..., 255, 256, 257): the tile boundaries of 16-, 32-, 64-, 128- and 256-wide
kernels, each from one side and the other."""

HEAD_DIMS = (32, 40, 48, 64, 80, 96, 112, 128)
"""Large-tier head dimensions (attention, linear attention, SSD's P, the scan's channels)."""

TILE_BLOCKS = (15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129)
"""Large-tier block and chunk sizes: the usual tiles and their neighbours."""


def tiers(size: str = "default"):
    """``size`` checked (one of ``SIZES``), as a strategy: what the strategies pass to ``sized``."""
    if size not in SIZES:
        raise ValueError(f"size: expected one of {SIZES}, got {size!r}")
    return st.just(size)


class Sized:
    """The default of a size option: ``small`` values, ``large`` values, named by ``label``;
    ``at(tier)`` is the strategy of one tier; ``build`` turns it into the option's (windows:
    pairs of sides).

    At "default" one index is drawn into a table of both, ordered by value, in which each small
    value appears often enough that about ``LARGE_PER_100`` indices in 100 fall on the large
    values. The table is monotone, so Hypothesis's shrinking of the index is a walk down the
    sizes, through the large values to the small ones, and stops at the smallest failing size.
    """

    def __init__(self, small, large, label: str, build=None):
        self.small, self.large, self.label, self.build = tuple(small), tuple(large), label, build
        repeat = -(-len(self.large) * (100 - LARGE_PER_100) // (LARGE_PER_100 * len(self.small)))
        self.mixed = tuple(sorted(self.small * max(1, repeat) + self.large))

    def at(self, tier: str):
        values = {"small": self.small, "large": self.large}.get(tier, self.mixed)
        strategy = st.sampled_from(values)
        return strategy if self.build is None else self.build(strategy)

    def __repr__(self) -> str:
        return self.label


def sized(value, tier: str):
    """The strategy of a size option: a ``Sized`` default at ``tier``, else ``fixed_or(value)``
    (a value or strategy the caller gave overrides the tier for that axis)."""
    return value.at(tier) if isinstance(value, Sized) else fixed_or(value)


def lengths(small_max: int, *, small_min: int = 1) -> Sized:
    """A time length: ``small_min``..``small_max`` at the small tier, ``TILE_LENGTHS`` at the large."""
    return Sized(range(small_min, small_max + 1), TILE_LENGTHS,
                 f"{small_min}..{small_max} (large: 15..257 near multiples of 16)")


def head_dims(small_max: int, *, large=HEAD_DIMS) -> Sized:
    """A head dimension: 1..``small_max`` at the small tier, ``large`` (32..128) at the large."""
    return Sized(range(1, small_max + 1), large, f"1..{small_max} (large: {', '.join(map(str, large))})")


def blocks(length: int, *, extra: int = 1, choices=TILE_BLOCKS, whole: bool = True, small_up_to: int = 32):
    """A block or chunk size for ``length`` steps: up to ``small_up_to`` steps any size from 1 to
    length + ``extra``; beyond, the tile sizes ``choices`` that fit, and (``whole``) length + 1,
    one block for everything, so a pure-Python tiled reference stays fast at T = 257 whichever
    tier (or explicit length) gave the length."""
    if length <= small_up_to:
        return st.integers(1, length + extra)
    return st.sampled_from(sorted({b for b in choices if b <= length} | ({length + 1} if whole else set())))
