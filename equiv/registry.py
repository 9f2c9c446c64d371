"""The form registry: every form and every claim, keyed ``family.mechanism.form``.

A *form* is one float64 reference (``attention.flash.tiled``) with what checking it needs: the
error bound derived from its algorithm, the form it must equal (its *oracle*), and, for a
definition, the plain evaluation in a low-precision dtype that sets the baseline of a
low-precision candidate. A *claim* is a property relating two computations, checked by the same
engine as a user's candidate; every form with an oracle yields the claim ``form == oracle``.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from seqcheck.gpu.backend import where

Outputs = tuple  # a tuple of NumPy arrays, one per output


@dataclass(frozen=True)
class Sweep:
    """A deterministic series for the report: the error as one parameter grows.

    ``make_args(value, rng)`` builds the arguments at ``value`` from a NumPy Generator, seeded by
    ``seed`` when given (sweeps of several claims that share a ``seed`` run on the same data, so
    their plot compares them), else by the claim's key.
    """

    param: str
    label: str
    values: tuple
    make_args: Callable[[Any, Any], dict]
    seed: int | None = None


@dataclass(frozen=True)
class Form:
    """One registered float64 form.

    ``bound(args, expected)`` returns, per output, the float64 error bound at each position along
    ``time_axis`` (anything broadcastable to it); ``rule`` says in one line how it is derived.
    ``plain(args, dtype)`` evaluates the definition with every intermediate rounded to ``dtype``
    (only definitions have one: forms reach theirs through ``oracle``).
    ``data_args`` are the arguments a candidate receives in its working dtype.
    ``magnitude(args, expected)`` (definitions only, optional) gives per output and position the
    typical size of any evaluation's rounding error in units of the roundoff (the size of the
    terms the output sums, times the condition of what is applied to them), the scale of the
    low-precision floor; an output's entry may be a pair (M, M_acc) whose second part is counted
    in float32's roundoff (what kernels accumulate in whatever their dtype); without it the
    floor's scale is the output's largest magnitude. ``magnitude_rule`` says it in one line.
    ``axes`` names each output's axes, e.g. (("batch", "time", "head", "channel"),), for the
    index of the worst element in a counterexample.
    ``inputs(**options)`` is the strategy of valid keyword arguments (``inputs_for(key)``), its
    keyword-only options documented in an "Options:" section of its docstring.
    """

    key: str
    fn: Callable
    inputs: Callable[..., Any]
    bound: Callable[[dict, Outputs], tuple]
    rule: str
    statement: str = ""
    oracle: str | None = None
    oracle_drop: tuple[str, ...] = ()
    plain: Callable[[dict, Any], Outputs] | None = None
    magnitude: Callable[[dict, Outputs], tuple] | None = None
    magnitude_rule: str = "the size of the terms each position sums"
    data_args: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ("out",)
    time_axis: int = 1
    axes: tuple = ()
    sweeps: tuple[Sweep, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A property: ``relation(impl, args)`` returns (lhs outputs, rhs outputs) that must agree.

    ``impl`` is the implementation under test (``subject`` names it), by default ``default_impl``;
    the tests pass deliberately wrong implementations (mutants) to show the claim rejects them.
    ``bound(args, rhs)`` is the allowed error per output and position; ``None`` means exact.
    """

    key: str
    statement: str
    subject: str
    default_impl: Callable
    relation: Callable[[Callable, dict], tuple[Outputs, Outputs]]
    inputs: Callable[[], Any]
    bound: Callable[[dict, Outputs], tuple] | None
    rule: str
    exactness: str = "float64 bound"
    outputs: tuple[str, ...] = ("out",)
    time_axis: int = 1
    requires: tuple[str, ...] = ()
    sweeps: tuple[Sweep, ...] = field(default=())

    @property
    def family(self) -> str:
        return self.key.split(".")[0]


@dataclass(frozen=True)
class Implementation:
    """One of the project's GPU implementations of a registered form, declared in the family
    module of that form and checked with ``seqcheck.equiv.check`` (the call users make).

    ``target`` is ``"module:function"`` inside ``seqcheck.gpu``, loaded only when used (importing
    seqcheck never imports Numba or CuPy): a function with the form's signature taking and
    returning NumPy arrays (it moves them to the device itself), so the same entry runs on a GPU,
    under Numba's CUDA simulator, or, for array-module code, on NumPy.
    ``inputs(simulated)`` is the strategy of arguments it supports (tiny sizes when simulated).
    ``backward``: the target is an explicit backward ``vjp(**args, <cotangents>) -> {name:
    gradient}``, checked with ``check_vjp`` against the form's gradient oracle.
    """

    name: str
    form: str
    target: str
    runtime: str  # "numba-cuda" or "cupy"
    dtypes: tuple[str, ...]
    inputs: Callable[[bool], Any]
    backward: bool = False

    def load(self) -> Callable:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(f"seqcheck.gpu.{module}"), function)

    def missing(self) -> list[str]:
        """The modules it needs here that are not installed (CuPy code without a GPU needs none:
        it runs on NumPy)."""
        needed = () if where(self.runtime) == "numpy" else RUNTIME_MODULES[self.runtime]
        return [name for name in needed if importlib.util.find_spec(name) is None]


RUNTIME_MODULES = {"numba-cuda": ("numba",), "cupy": ("cupy",)}


@dataclass(frozen=True)
class Gradient:
    """The float64 gradient oracle of a registered form, declared beside the form.

    ``vjp(**args)`` takes the form's arguments plus one cotangent argument per output of the
    form (named in ``cotangents``, in the outputs' order; None for an output not returned, as
    lse without ``return_lse``) and returns {input name: gradient} for the inputs in ``wrt`` that
    the draw gave (an optional input left None, as the selective scan's D or z, has none).
    The engine draws the form's arguments from its inputs and each cotangent N(0, 1) of its
    output's shape. ``bound(args, expected)`` is the derived float64 bound per time position of
    each gradient (``expected`` in ``wrt``'s order), ``rule`` says how.
    """

    form: str
    vjp: Callable[..., dict]
    wrt: tuple[str, ...]
    cotangents: tuple[str, ...]
    bound: Callable
    rule: str
    axes: tuple = ()  # each gradient's axes, as Form.axes (for the worst element's index)
    plain: Callable | None = None  # (args, dtype) -> the definition's backward in dtype, in wrt's order
    magnitude: Callable | None = None  # (args, expected) -> the low-precision floor's scale per gradient and position
    tiling: tuple[str, ...] = ()  # a backward kernel's tile sizes: passed to the candidate, not to the oracle

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(f"d{name}" for name in self.wrt)


_FORMS: dict[str, Form] = {}
_CLAIMS: dict[str, Claim] = {}
_IMPLEMENTATIONS: dict[str, Implementation] = {}
_GRADIENTS: dict[str, Gradient] = {}


def register_form(form: Form) -> Form:
    if form.key in _FORMS:
        raise ValueError(f"form {form.key!r} is registered twice")
    if form.key.count(".") != 2:
        raise ValueError(f"form key must be 'family.mechanism.form', got {form.key!r}")
    _FORMS[form.key] = form
    if form.oracle is not None:
        register_claim(_equality_claim(form))
    return form


def register_claim(claim: Claim) -> Claim:
    if claim.key in _CLAIMS:
        raise ValueError(f"claim {claim.key!r} is registered twice")
    _CLAIMS[claim.key] = claim
    return claim


def register_implementation(implementation: Implementation) -> Implementation:
    if implementation.name in _IMPLEMENTATIONS:
        raise ValueError(f"GPU implementation {implementation.name!r} is registered twice")
    if implementation.form not in _FORMS:
        raise ValueError(f"GPU implementation {implementation.name!r}: no form {implementation.form!r} "
                         "is registered (declare it after the form, in the form's family module)")
    _IMPLEMENTATIONS[implementation.name] = implementation
    return implementation


def register_gradient(gradient: Gradient) -> Gradient:
    if gradient.form not in _FORMS:
        raise ValueError(f"gradient: no form {gradient.form!r} is registered (declare it after the form)")
    if gradient.form in _GRADIENTS:
        raise ValueError(f"the gradient of {gradient.form!r} is registered twice")
    _GRADIENTS[gradient.form] = gradient
    return gradient


def get_gradient(key: str) -> Gradient:
    get_form(key)  # an unknown key fails with the form registry's message
    if key not in _GRADIENTS:
        raise ValueError(f"form {key!r} has no gradient oracle yet (forms with one: {', '.join(gradient_keys())})")
    return _GRADIENTS[key]


def gradient_keys() -> list[str]:
    """The forms with a gradient oracle, sorted."""
    return sorted(_GRADIENTS)


def implementations() -> list[Implementation]:
    """Every GPU implementation of the project, sorted by name."""
    return [_IMPLEMENTATIONS[name] for name in sorted(_IMPLEMENTATIONS)]


def form_keys() -> list[str]:
    return sorted(_FORMS)


def get_form(key: str) -> Form:
    if not isinstance(key, str):
        raise TypeError(f"form key: expected a string such as 'attention.flash.tiled', got {key!r}")
    try:
        return _FORMS[key]
    except KeyError:
        near = difflib.get_close_matches(key, _FORMS, n=3)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        raise KeyError(f"no form {key!r} is registered{hint} (seqcheck.equiv.forms() lists them)") from None


def all_claims() -> list[Claim]:
    return [_CLAIMS[key] for key in sorted(_CLAIMS)]


def get_claim(key: str) -> Claim:
    try:
        return _CLAIMS[key]
    except KeyError:
        near = difflib.get_close_matches(key, _CLAIMS, n=3)
        hint = f"; did you mean {', '.join(map(repr, near))}?" if near else ""
        raise KeyError(f"no claim {key!r} is registered{hint}") from None


def definition_of(form: Form) -> tuple[Form, tuple[str, ...]]:
    """Follow the oracle chain to the definition; also return the arguments dropped on the way."""
    dropped: tuple[str, ...] = ()
    while form.oracle is not None:
        dropped += form.oracle_drop
        form = get_form(form.oracle)
    return form, dropped


def without(args: dict, names: tuple[str, ...]) -> dict:
    return {name: value for name, value in args.items() if name not in names}


def as_outputs(result) -> Outputs:
    return tuple(result) if isinstance(result, (tuple, list)) else (result,)


def mapped(make: Callable[..., Any], convert: Callable[[dict], dict]) -> Callable[..., Any]:
    """The strategy builder ``make`` with each drawn dict passed through ``convert`` (an
    adapter's layout): same options, signature and documentation."""
    @functools.wraps(make)
    def strategy(**options):
        return make(**options).map(convert)

    strategy.__signature__ = inspect.signature(make)
    return strategy


def _equality_claim(form: Form) -> Claim:
    def relation(impl, args):
        oracle = get_form(form.oracle)
        return as_outputs(impl(**args)), as_outputs(oracle.fn(**without(args, form.oracle_drop)))

    return Claim(
        key=f"{form.key} == {form.oracle}",
        statement=form.statement or f"{form.key} equals {form.oracle}",
        subject=form.key,
        default_impl=form.fn,
        relation=relation,
        inputs=form.inputs,
        bound=form.bound,
        rule=form.rule,
        outputs=form.outputs,
        time_axis=form.time_axis,
        sweeps=form.sweeps,
    )
