"""``check``, ``assert_equivalent`` and ``replay``: the public ways to judge an implementation."""

from __future__ import annotations

import importlib.util
import inspect
import secrets
from functools import partial

import ml_dtypes
import numpy as np

from seqcheck.equiv.budget import Budget, baseline_budget, baseline_rule, float64_budget
from seqcheck.equiv.convert import BACKENDS, numpy_dtype, round_to, to_backend, to_numpy
from seqcheck.equiv.grad import check_grad
from seqcheck.equiv.engine import (DEFAULT_TIMEOUT, Comparison, Result, UsageError, compare, print_progress,
                                   verify)
from seqcheck.equiv.registry import Claim, Form, as_outputs, definition_of, get_claim, get_form
from seqcheck.equiv.reproduce import reproducer_source
from seqcheck.gpu.backend import where

DEFAULT_EXAMPLES = 100


def check(candidate, key: str, *, dtype=None, max_examples=DEFAULT_EXAMPLES, seed=None, backend="numpy",
          inputs=None, timeout=DEFAULT_TIMEOUT, progress=True, grad=False) -> Result:
    """Check ``candidate`` against the float64 reference of form ``key`` under Hypothesis.

    ``candidate`` takes the reference's arguments (arrays of ``backend``: "numpy", "torch",
    "torch:cuda", "cupy" or "jax") and returns its outputs: one array, or a tuple of arrays.
    ``dtype`` is the candidate's working precision: None (or "float64") claims float64 accuracy
    (budget: the form's derived bound); "float32", "float16", "bfloat16" get the baseline budget
    of docs/tolerance.md; a form without one refuses them (ValueError). ``inputs`` replaces the
    form's strategy, e.g. ``inputs_for(key, softcap=None)`` for a kernel without softcapping.
    ``seed`` None draws one (it is in the result). ``timeout``: seconds one example may take
    (None: no limit). ``progress``: True prints a line to stderr every few seconds once a check
    runs longer than that, False is silent, a callable receives the lines.

    ``grad=True`` judges the candidate's backward instead: it is differentiated with torch
    autograd (backend "torch" or "torch:cuda") or jax.grad (backend "jax") against the form's
    gradient oracle, a random cotangent drawn per output; with a low ``dtype`` the inputs and
    cotangents are rounded to it and the budget is the baseline of the definition's backward in
    it, where the form declares one (docs/gradients.md).

    The result's ``status`` is "passed", "failed" (``counterexample``: the shrunk failing
    arguments and a runnable reproducer; ``worst_example``: the worst seen), "error" (the
    candidate cannot run as declared; ``reason`` and ``hint``) or "not run" (no example drawn).
    """
    form = get_form(key)
    if not callable(candidate):
        raise TypeError(f"candidate: expected a callable, got {type(candidate).__name__}")
    if grad is not False and grad is not True:
        raise TypeError(f"grad: expected True or False, got {grad!r}")
    if grad:
        return check_grad(candidate, key, backend=backend, max_examples=max_examples, seed=_seed(seed),
                          inputs=inputs if inputs is not None else _inputs_for(key), timeout=timeout,
                          progress=_progress_sink(progress), dtype=_working(dtype))
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    working = _working(dtype)
    if working is not None and definition_of(form)[0].plain is None:
        raise ValueError(f"dtype: form {key!r} has no low-precision baseline (its definition is not evaluated in "
                         f"{working.name}); check it with dtype=None, which claims float64 accuracy")
    dtype_name = "float64" if working is None else working.name
    rule = form.rule if working is None else baseline_rule(form, working)
    seed_value = _seed(seed)
    unavailable = _backend_problem(backend, working)
    if unavailable is not None:
        return Result(key=key, status="error", max_error=float("nan"), budget=float("nan"), worst_ratio=float("nan"),
                      examples=0, seed=seed_value, dtype=dtype_name, backend=backend, rule=rule,
                      reason=unavailable[0], hint=unavailable[1])
    strategy = inputs if inputs is not None else _inputs_for(key)
    if working is not None:
        strategy = strategy.map(partial(_rounded_pair, form, working)).filter(_no_overflow).map(lambda pair: pair[1])
    call = f"equiv.replay(candidate, {key!r}, args, dtype={None if working is None else dtype_name!r}, backend={backend!r})"
    return verify(
        key=key,
        relation=lambda args: (_run(candidate, form, args, backend, working), as_outputs(form.fn(**args))),
        tolerance=partial(_tolerance, form, working),
        strategy=strategy,
        names=form.outputs,
        time_axis=form.time_axis,
        max_examples=max_examples,
        seed=seed_value,
        dtype=dtype_name,
        backend=backend,
        reproducer=lambda args: reproducer_source(
            title=f"seqcheck counterexample: a candidate for {key} [{dtype_name}, {backend}]",
            call=call, args=args, candidate=candidate),
        rule=rule,
        axes=form.axes,
        timeout=timeout,
        progress=_progress_sink(progress),
        first_example_errors=True,
        hint_for=partial(_hint_for_raise, candidate, backend),
    )


def replay(candidate, key: str, args: dict, *, dtype=None, backend="numpy") -> Comparison:
    """Run ``candidate`` once on ``args`` exactly as ``check`` does and return the comparison."""
    form = get_form(key)
    working = _working(dtype)
    if working is not None:
        args = _rounded(form, working, args)
    expected = as_outputs(form.fn(**args))
    actual = _run(candidate, form, args, backend, working)
    return compare(actual, expected, _tolerance(form, working, args, expected), form.outputs, form.time_axis,
                   form.axes)


def assert_equivalent(actual, key: str, args: dict, *, dtype=None) -> None:
    """Raise AssertionError unless ``actual`` (outputs of any array library) matches form ``key``
    on ``args`` within the budget ``check`` would use."""
    form = get_form(key)
    working = _working(dtype)
    expected = as_outputs(form.fn(**args))
    outputs = tuple(to_numpy(a) for a in as_outputs(actual))
    verdict = compare(outputs, expected, _tolerance(form, working, args, expected), form.outputs, form.time_axis,
                      form.axes)
    if not verdict.passed:
        raise AssertionError(f"{key} [{'float64' if working is None else working.name}]: {verdict.message}")


def run_claim(claim: Claim | str, *, impl=None, max_examples=None, seed=None, timeout=DEFAULT_TIMEOUT,
              progress=False) -> Result:
    """Check a registered claim; ``impl`` replaces the reference of the claim's subject form.
    ``max_examples`` None takes the current Hypothesis profile's; ``timeout`` and ``progress``
    as for ``check``."""
    claim = get_claim(claim) if isinstance(claim, str) else claim
    impl = claim.default_impl if impl is None else impl
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
        seed=_seed(seed),
        dtype="float64",  # a claim computes in float64 (its exactness, if any, is in claim.exactness and the rule)
        backend="numpy",
        reproducer=lambda args: reproducer_source(
            title=f"seqcheck counterexample to the claim {claim.key}", call=call, args=args, candidate=impl),
        rule=claim.rule,
        timeout=timeout,
        progress=_progress_sink(progress),
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


def check_implementation(impl, dtype: str, *, seed=None, max_examples=None, progress=False) -> Result:
    """Check one of the project's GPU implementations (``implementations()``) in ``dtype`` as a
    user's kernel is checked: ``check`` for a forward, ``check_vjp`` for a backward, on its inputs
    (tiny under Numba's CUDA simulator, where ``max_examples`` None means 5; elsewhere None
    takes the Hypothesis profile's)."""
    from seqcheck.equiv.grad import check_vjp  # the gradient module imports this one

    simulated = where(impl.runtime) == "simulator"
    examples = 5 if simulated and max_examples is None else max_examples
    if impl.backward:
        return check_vjp(impl.load(), impl.form, dtype=dtype, inputs=impl.inputs(simulated), seed=seed,
                         max_examples=examples, progress=progress)
    return check(impl.load(), impl.form, dtype=dtype, inputs=impl.inputs(simulated), seed=seed,
                 max_examples=examples, progress=progress)


def _working(dtype):
    """The candidate's working precision; None (float64 accuracy claimed) for None or float64."""
    working = None if dtype is None else numpy_dtype(dtype)
    return None if working == np.float64 else working


def _run(candidate, form: Form, args: dict, backend: str, working) -> tuple:
    skipped = _tiling_args_not_taken(candidate, form)
    inputs = {name: to_backend(value, backend, _dtype_of(form, name, working))
              for name, value in args.items() if name not in skipped}
    _check_signature(candidate, inputs)
    return _outputs(candidate(**inputs), form, backend, working)


def _check_signature(candidate, inputs: dict) -> None:
    try:
        signature = inspect.signature(candidate)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    try:
        signature.bind(**inputs)
    except TypeError as error:
        raise UsageError(f"the candidate's signature {signature} does not take the form's arguments ({error})",
                         f"the form passes {', '.join(inputs)} by keyword: take them (options it ignores as "
                         f"**options), or narrow the inputs to what it supports with inputs_for(key, ...)") from None


_LIBRARIES = {"numpy": "numpy", "torch": "torch", "torch:cuda": "torch", "cupy": "cupy", "jax": "jax"}


def _outputs(raw, form: Form, backend: str, working) -> tuple:
    """The candidate's outputs as float64 NumPy arrays, after checking that they are what the
    form declares: an array or a tuple of arrays, of the backend's library, at least as precise as
    the declared dtype. Anything else is a usage error (with the fix as its hint)."""
    names = ", ".join(form.outputs)
    if raw is None:
        raise UsageError("the candidate returned None", f"return the outputs: an array, or a tuple of arrays ({names})")
    if isinstance(raw, list):
        raise UsageError("the candidate returned a list", f"return an array, or a tuple of arrays ({names}); a list "
                         "could be one output or several")
    outputs = raw if isinstance(raw, tuple) else (raw,)
    expected_library = _LIBRARIES[backend]
    declared = np.dtype(np.float64) if working is None else working
    for number, out in enumerate(outputs):
        name = form.outputs[number] if number < len(form.outputs) else f"output {number}"
        library = _library(out)
        if library is None:
            raise UsageError(f"output {name!r} is a {type(out).__name__}, not an array",
                             f"return {expected_library} arrays")
        if library != expected_library and not (expected_library == "jax" and hasattr(out, "__dlpack__")):
            raise UsageError(f"the candidate returned {library} arrays with backend={backend!r}",
                             f"pass backend={library!r}" if library != "numpy"
                             else f"return {expected_library} arrays, or pass backend='numpy'")
        precision = _epsilon(out)
        if precision is not None and precision > float(ml_dtypes.finfo(declared).eps):
            given = "dtype=None (float64 accuracy)" if working is None else f"dtype={declared.name!r}"
            raise UsageError(f"output {name!r} is {_dtype_name(out)} but {given} was declared: {_dtype_name(out)} "
                             f"outputs judged by a {declared.name} budget",
                             f"pass dtype={_dtype_name(out).replace('complex64', 'float32')!r}")
    return tuple(to_numpy(out) for out in outputs)


def _library(x) -> str | None:
    if isinstance(x, (np.ndarray, np.generic, float, int, complex)) and not isinstance(x, bool):
        return "numpy"
    module = type(x).__module__.split(".")[0]
    if module in ("torch", "cupy"):
        return module
    if module in ("jax", "jaxlib"):
        return "jax"
    return None


def _dtype_name(x) -> str:
    dtype = getattr(x, "dtype", None)
    return str(dtype).replace("torch.", "") if dtype is not None else type(x).__name__


def _epsilon(x) -> float | None:
    """Machine epsilon of a floating (or complex) output's dtype; None for integer and bool outputs."""
    name = _dtype_name(x)
    if name.startswith("complex"):
        name = {"complex64": "float32", "complex128": "float64", "complex32": "float16"}.get(name, "float64")
    if not (name.startswith("float") or name.startswith("bfloat")):
        return None
    try:
        return float(ml_dtypes.finfo(numpy_dtype(name)).eps)
    except (TypeError, ValueError):
        return None


def _backend_problem(backend: str, working=None) -> tuple[str, str] | None:
    """Why ``backend`` cannot run here (for the working precision ``working``; None: float64),
    and the fix; None when it can."""
    package = _LIBRARIES[backend]
    if importlib.util.find_spec(package) is None:
        return (f"backend {backend!r} needs {package}, which is not installed",
                {"torch": "pip install 'seqcheck[torch]'", "cupy": "pip install 'seqcheck[cuda]' on a machine with a "
                 "CUDA GPU", "jax": "pip install 'seqcheck[jax]'"}.get(package, f"install {package}"))
    if backend == "jax" and (working is None or working.itemsize == 8):
        import jax

        if not jax.config.jax_enable_x64:  # jnp would silently make the float64 inputs float32
            return ("backend 'jax' with float64 inputs needs JAX's 64-bit mode, which is off: JAX would "
                    "compute in float32", "call jax.config.update('jax_enable_x64', True) before checking, or "
                    "check in a dtype the candidate computes in (dtype='float32')")
    if backend == "torch:cuda":
        import torch

        if not torch.cuda.is_available():
            return ("backend 'torch:cuda' needs a CUDA device, and torch.cuda.is_available() is False here",
                    "pass backend='torch' to check the candidate on the CPU")
    if backend == "cupy":
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as error:  # CuPy imports without a GPU but cannot allocate
            return (f"backend 'cupy' needs a CUDA device, and CuPy finds none ({type(error).__name__})",
                    "run on a machine with a GPU; CuPy code written against an array module can be checked on "
                    "NumPy with backend='numpy'")
        if count == 0:
            return ("backend 'cupy' needs a CUDA device, and CuPy finds none", "run on a machine with a GPU")
    return None


def _hint_for_raise(candidate, backend: str, error: BaseException) -> str:
    """A guess at the fix when the candidate raises on the first example."""
    text = f"{type(error).__module__} {error}"
    if backend == "numpy" and ("Tensor" in text or "torch" in text):
        return "the candidate looks like a torch function, given NumPy arrays: pass backend='torch'"
    if backend == "numpy" and "cupy" in text:
        return "the candidate looks like a CuPy function, given NumPy arrays: pass backend='cupy'"
    return ""


def _progress_sink(progress):
    if progress is True:
        return print_progress
    if progress is False or progress is None:
        return None
    if callable(progress):
        return progress
    raise TypeError(f"progress: expected True, False or a callable taking a line, got {type(progress).__name__}")


def _seed(seed) -> int:
    """``seed``, checked, or a fresh one for None (the result reports it)."""
    if seed is None:
        return secrets.randbits(32)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    return int(seed)


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


def _rounded_pair(form: Form, working, args: dict) -> tuple:
    return args, _rounded(form, working, args)


def _no_overflow(pair: tuple) -> bool:
    """Rounding to the working dtype left every finite float finite (an input drawn -inf, a GLA
    reset say, stays in; one that overflows float16 is not a valid input of that dtype)."""
    drawn, rounded = pair
    return all(np.array_equal(np.isfinite(value), np.isfinite(rounded[name])) for name, value in drawn.items()
               if isinstance(value, np.ndarray) and value.dtype.kind == "f")


def _tolerance(form: Form, working, args: dict, expected: tuple) -> Budget:
    if working is None:
        return float64_budget(form.bound, form.rule, args, expected)
    return baseline_budget(form, working, args, expected)


def _inputs_for(key: str):
    from seqcheck.properties import inputs_for

    return inputs_for(key)
