"""``check``, ``assert_equivalent`` and ``replay``: the public ways to judge an implementation."""

from __future__ import annotations

import inspect
from functools import partial

import numpy as np

from seqcheck.equiv.budget import Budget, baseline_budget, baseline_rule, float64_budget
from seqcheck.equiv.convert import BACKENDS, numpy_dtype, round_to, to_backend, to_numpy
from seqcheck.equiv.engine import Comparison, Result, compare, verify
from seqcheck.equiv.registry import Claim, Form, as_outputs, get_claim, get_form
from seqcheck.equiv.reproduce import candidate_spec, reproducer_source


def check(candidate, key: str, *, dtype=None, max_examples=None, seed=None, backend="numpy",
          inputs=None) -> Result:
    """Check ``candidate`` against the float64 reference of form ``key`` under Hypothesis.

    ``candidate`` takes the reference's arguments (arrays of ``backend``: "numpy", "torch",
    "torch:cuda", "cupy" or "jax") and returns its outputs. ``dtype`` is the candidate's working
    precision: None claims float64 accuracy (budget: the form's derived bound); "float32",
    "float16", "bfloat16" get ``k * baseline + floor`` ("float64" is the same as None). ``inputs`` replaces the form's strategy,
    e.g. ``inputs_for(key, softcap=None)`` for a kernel without softcapping. ``seed`` None draws
    one (it is in the result). The result's counterexample holds the shrunk failing arguments and
    a runnable reproducer.
    """
    form = get_form(key)
    if not callable(candidate):
        raise TypeError(f"candidate: expected a callable, got {type(candidate).__name__}")
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    working = _working(dtype)
    if working is not None and form.plain is None and form.oracle is None:
        raise ValueError(f"dtype: form {key!r} has no low-precision baseline; check it with dtype=None")
    strategy = inputs if inputs is not None else _inputs_for(key)
    if working is not None:
        strategy = strategy.map(partial(_rounded, form, working)).filter(_finite)
    spec = candidate_spec(candidate)
    dtype_name = "float64" if working is None else working.name
    call = f"equiv.replay(candidate, {key!r}, args, dtype={None if working is None else dtype_name!r}, backend={backend!r})"
    return verify(
        key=key,
        relation=lambda args: (_run(candidate, form, args, backend, working), as_outputs(form.fn(**args))),
        tolerance=partial(_tolerance, form, working),
        strategy=strategy,
        names=form.outputs,
        time_axis=form.time_axis,
        max_examples=max_examples,
        seed=seed,
        dtype=dtype_name,
        backend=backend,
        reproducer=lambda args: reproducer_source(
            title=f"seqcheck counterexample: a candidate for {key} [{dtype_name}, {backend}]",
            call=call, args=args, candidate=spec),
        rule=form.rule if working is None else baseline_rule(form, working),
    )


def replay(candidate, key: str, args: dict, *, dtype=None, backend="numpy") -> Comparison:
    """Run ``candidate`` once on ``args`` exactly as ``check`` does and return the comparison."""
    form = get_form(key)
    working = _working(dtype)
    if working is not None:
        args = _rounded(form, working, args)
    expected = as_outputs(form.fn(**args))
    actual = _run(candidate, form, args, backend, working)
    return compare(actual, expected, _tolerance(form, working, args, expected), form.outputs, form.time_axis)


def assert_equivalent(actual, key: str, args: dict, *, dtype=None) -> None:
    """Raise AssertionError unless ``actual`` (outputs of any array library) matches form ``key``
    on ``args`` within the budget ``check`` would use."""
    form = get_form(key)
    working = _working(dtype)
    expected = as_outputs(form.fn(**args))
    outputs = tuple(to_numpy(a) for a in as_outputs(actual))
    verdict = compare(outputs, expected, _tolerance(form, working, args, expected), form.outputs, form.time_axis)
    if not verdict.passed:
        raise AssertionError(f"{key} [{'float64' if working is None else working.name}]: {verdict.message}")


def run_claim(claim: Claim | str, *, impl=None, max_examples=None, seed=None) -> Result:
    """Check a registered claim; ``impl`` replaces the reference of the claim's subject form."""
    claim = get_claim(claim) if isinstance(claim, str) else claim
    impl = claim.default_impl if impl is None else impl
    spec = candidate_spec(impl)
    exact = claim.bound is None
    call = f"equiv.replay_claim({claim.key!r}, args, impl=candidate)"
    return verify(
        key=claim.key,
        relation=lambda args: _claim_outputs(claim, impl, args),
        tolerance=lambda args, rhs: Budget(
            tuple(np.zeros(()) for _ in rhs) if exact else float64_budget(claim.bound, claim.rule, args, rhs).per_output,
            claim.rule),
        strategy=claim.inputs(),
        names=claim.outputs,
        time_axis=claim.time_axis,
        max_examples=max_examples,
        seed=seed,
        dtype="float64" if claim.exactness == "float64 bound" else claim.exactness,
        backend="numpy",
        reproducer=lambda args: reproducer_source(
            title=f"seqcheck counterexample to the claim {claim.key}", call=call, args=args, candidate=spec),
        rule=claim.rule,
    )


def replay_claim(key: str, args: dict, *, impl=None) -> Comparison:
    """Evaluate claim ``key`` once on ``args`` (with ``impl`` in place of its subject)."""
    claim = get_claim(key)
    impl = claim.default_impl if impl is None else impl
    lhs, rhs = _claim_outputs(claim, impl, args)
    bound = tuple(np.zeros(()) for _ in rhs) if claim.bound is None else as_outputs(claim.bound(args, rhs))
    return compare(lhs, rhs, Budget(bound, claim.rule), claim.outputs, claim.time_axis)


def _claim_outputs(claim: Claim, impl, args: dict):
    lhs, rhs = claim.relation(impl, args)
    return tuple(to_numpy(a) for a in as_outputs(lhs)), tuple(to_numpy(b) for b in as_outputs(rhs))


def _working(dtype):
    """The candidate's working precision; None (float64 accuracy claimed) for None or float64."""
    working = None if dtype is None else numpy_dtype(dtype)
    return None if working == np.float64 else working


def _run(candidate, form: Form, args: dict, backend: str, working) -> tuple:
    skipped = _tiling_args_not_taken(candidate, form)
    inputs = {name: to_backend(value, backend, _dtype_of(form, name, working))
              for name, value in args.items() if name not in skipped}
    return tuple(to_numpy(out) for out in as_outputs(candidate(**inputs)))


def _tiling_args_not_taken(candidate, form: Form) -> set:
    """Tiling parameters (block sizes, splits: the arguments the form's oracle does without) that
    the candidate's signature does not take; a kernel with fixed tiles is checked all the same."""
    try:
        parameters = inspect.signature(candidate).parameters.values()
    except (TypeError, ValueError):
        return set()
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return set()
    return set(form.oracle_drop) - {p.name for p in parameters}


def _dtype_of(form: Form, name: str, working):
    """Data arguments travel in the candidate's dtype, other float arrays (ALiBi slopes, say) in
    float32 when the candidate works in low precision, as kernels take them."""
    if working is None:
        return np.float64
    return working if name in form.data_args else np.dtype(np.float32)


def _rounded(form: Form, working, args: dict) -> dict:
    """Round the float arguments as ``_run`` will pass them, so the reference sees what the
    candidate sees."""
    return {name: round_to(value, _dtype_of(form, name, working))
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" else value
            for name, value in args.items()}


def _finite(args: dict) -> bool:
    return all(np.isfinite(v).all() for v in args.values() if isinstance(v, np.ndarray) and v.dtype.kind == "f")


def _tolerance(form: Form, working, args: dict, expected: tuple) -> Budget:
    if working is None:
        return float64_budget(form.bound, form.rule, args, expected)
    return baseline_budget(form, working, args, expected)


def _inputs_for(key: str):
    from seqcheck.properties import inputs_for

    return inputs_for(key)
