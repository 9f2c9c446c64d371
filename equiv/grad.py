"""Judging a candidate's backward pass against a form's float64 gradient oracle (docs/gradients.md).

``check(fn, key, grad=True, backend="torch")`` differentiates a candidate with torch autograd
(``backend="jax"``: with ``jax.grad``):
the form's arguments and a random cotangent per output are drawn, the candidate's forward runs on
float64 tensors that require grad, ``sum_o <out_o, cotangent_o>`` is differentiated, and each
input gradient is judged per time position against the oracle's within its derived bound.
``check_vjp(vjp, key)`` judges an explicit backward ``vjp(**args, cotangent=..., ...) ->
{name: gradient}`` on NumPy arrays the same way.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.budget import Budget, float64_budget, gradient_baseline_budget, gradient_baseline_rule
from seqcheck.equiv.convert import numpy_dtype, round_to, to_backend, to_numpy
from seqcheck.equiv.engine import DEFAULT_TIMEOUT, Comparison, Result, UsageError, compare, verify
from seqcheck.equiv.registry import Gradient, as_outputs, get_form, get_gradient, without
from seqcheck.equiv.reproduce import reproducer_source
from seqcheck.properties.arrays import generators

GRAD_BACKENDS = ("torch", "torch:cuda", "jax")


def with_cotangents(gradient: Gradient, strategy):
    """``strategy``'s arguments of the form plus a cotangent N(0, 1) for each output the
    reference returns on them (the others None)."""
    form = get_form(gradient.form)

    @st.composite
    def drawn(draw):
        args = draw(strategy)
        outputs = as_outputs(form.fn(**_oracle_args(gradient, args)))
        rng = draw(generators())
        cotangents = [rng.standard_normal(np.shape(out)) for out in outputs]
        return {**args, **dict(zip(gradient.cotangents, cotangents + [None] * len(gradient.cotangents)))}

    return drawn()


def _oracle_args(gradient: Gradient, args: dict) -> dict:
    """The arguments without a backward kernel's tile sizes, which the oracle does without."""
    return without(args, gradient.tiling)


def _cotangent_names(gradient: Gradient, args: dict) -> tuple:
    """The cotangents the draw gave (None: that output is not returned)."""
    return tuple(name for name in gradient.cotangents if args.get(name) is not None)


def _given(gradient: Gradient, args: dict) -> tuple:
    """The inputs in ``wrt`` that the draw gave (an optional one left None has no gradient)."""
    return tuple(name for name in gradient.wrt if args.get(name) is not None)


NOT_GIVEN = np.zeros(0)  # the gradient of an input the draw left None: nothing to judge


def _expected(gradient: Gradient, args: dict) -> tuple:
    grads = gradient.vjp(**_oracle_args(gradient, args))
    given = _given(gradient, args)
    return tuple(np.asarray(grads[name], dtype=np.result_type(grads[name], np.float64)) if name in given
                 else NOT_GIVEN for name in gradient.wrt)


def _autograd(candidate, gradient: Gradient, args: dict, backend: str, working=None) -> tuple:
    """The candidate's input gradients by torch autograd of sum_o <out_o, cotangent_o>, the
    entries where an output is not finite (a fully masked row's lse = -inf) left out; inputs and
    cotangents in the working dtype (None: float64)."""
    import torch

    forward = without(args, gradient.cotangents)
    inputs = {name: _to_candidate(value, backend, _dtype_of(gradient, name, working)) for name, value in forward.items()}
    given = _given(gradient, args)
    for name in given:
        inputs[name] = inputs[name].requires_grad_(True)
    raw = candidate(**inputs)
    if raw is None or isinstance(raw, list):
        raise UsageError(f"the candidate returned {'None' if raw is None else 'a list'}",
                         "return the outputs: a tensor, or a tuple of tensors")
    outputs = raw if isinstance(raw, tuple) else (raw,)
    names = _cotangent_names(gradient, args)
    if len(outputs) != len(names):
        raise UsageError(f"the candidate returned {len(outputs)} outputs where the drawn arguments ask for "
                         f"{len(names)} ({', '.join(names)})", "return one output per cotangent")
    objective = 0
    for out, name in zip(outputs, names):
        if not isinstance(out, torch.Tensor):
            raise UsageError(f"an output is a {type(out).__name__}, not a torch tensor", "return torch tensors")
        cotangent = _to_candidate(args[name], backend, _dtype_of(gradient, name, working))
        objective = objective + torch.where(torch.isfinite(out), out * cotangent, 0.0).sum().real  # Re for complex
    if not getattr(objective, "requires_grad", False):
        if all(not torch.any(out) for out in outputs):  # a constant 0 (an MoE that dropped every slot): gradient 0
            return tuple(NOT_GIVEN if name not in given else np.zeros(np.shape(args[name])) for name in gradient.wrt)
        raise UsageError("no output depends on the inputs through autograd (detached, or computed outside torch)",
                         "compute the outputs with torch operations on the given tensors, or use check_vjp")
    grads = dict(zip(given, torch.autograd.grad(objective, [inputs[name] for name in given], allow_unused=True)))
    return tuple(NOT_GIVEN if name not in given else np.zeros(np.shape(args[name])) if grads[name] is None
                 else to_numpy(grads[name]) for name in gradient.wrt)


def _jax_grad(candidate, gradient: Gradient, args: dict, working=None) -> tuple:
    """The candidate's input gradients by ``jax.grad`` of sum_o Re <out_o, cotangent_o> (entries
    where an output is not finite left out), conjugated for complex inputs: JAX's gradient of a
    real function is dL/dRe - i dL/dIm, the oracles' (and torch's) dL/dRe + i dL/dIm."""
    import jax
    import jax.numpy as jnp

    forward = without(args, gradient.cotangents)
    inputs = {name: _to_candidate(value, "jax", _dtype_of(gradient, name, working)) for name, value in forward.items()}
    given = _given(gradient, args)
    names = _cotangent_names(gradient, args)
    cotangents = [_to_candidate(args[name], "jax", _dtype_of(gradient, name, working)) for name in names]

    def objective(*differentiated):
        raw = candidate(**{**inputs, **dict(zip(given, differentiated))})
        if raw is None or isinstance(raw, list):
            raise UsageError(f"the candidate returned {'None' if raw is None else 'a list'}",
                             "return the outputs: an array, or a tuple of arrays")
        outputs = raw if isinstance(raw, tuple) else (raw,)
        if len(outputs) != len(names):
            raise UsageError(f"the candidate returned {len(outputs)} outputs where the drawn arguments ask for "
                             f"{len(names)} ({', '.join(names)})", "return one output per cotangent")
        return sum(jnp.real(jnp.where(jnp.isfinite(out), out * cotangent, 0)).sum()
                   for out, cotangent in zip(outputs, cotangents))

    # compiled whole (one compilation per shape, not one per operation); the other arguments are closed
    # over, so they stay concrete, and the differentiated ones are traced values under jax.grad alone too
    differentiate = jax.jit(jax.grad(objective, argnums=tuple(range(len(given)))))
    grads = dict(zip(given, differentiate(*(inputs[n] for n in given))))
    return tuple(NOT_GIVEN if name not in given else np.conj(to_numpy(grads[name])) for name in gradient.wrt)


def _explicit(vjp, gradient: Gradient, args: dict, working=None) -> tuple:
    """An explicit backward's gradients, checked to be {name: array} for every input in ``wrt``
    that the draw gave; its arguments in the working dtype (None: float64)."""
    raw = vjp(**{name: _to_candidate(value, "numpy", _dtype_of(gradient, name, working)) for name, value in args.items()})
    given = _given(gradient, args)
    if not isinstance(raw, dict):
        raise UsageError(f"the backward returned a {type(raw).__name__}, not a dict",
                         f"return {{name: gradient}} for {', '.join(given)}")
    missing = [name for name in given if name not in raw]
    if missing:
        raise UsageError(f"the backward's dict lacks {', '.join(missing)}",
                         f"return a gradient for each of {', '.join(given)}")
    return tuple(to_numpy(raw[name]) if name in given else NOT_GIVEN for name in gradient.wrt)


def _to_candidate(value, backend: str, dtype):
    """``to_backend``, with a complex array in the complex type of a low precision (complex64: there
    is none smaller), as a float one goes in the dtype."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "c" and np.dtype(dtype).itemsize < 8:
        value = value.astype(np.complex64)
    return to_backend(value, backend, dtype)


def _dtype_of(gradient: Gradient, name: str, working):
    """The inputs differentiated and the cotangents travel in the working dtype, other float
    arrays (ALiBi slopes, say) in float32 when it is low, as for the forward."""
    if working is None:
        return np.float64
    return working if name in gradient.wrt or name in gradient.cotangents else np.dtype(np.float32)


def _rounded(gradient: Gradient, working, args: dict) -> dict:
    """The float arguments rounded as they reach the candidate, so the oracle sees what it sees."""
    if working is None:
        return args
    return {name: round_to(value, _dtype_of(gradient, name, working))
            if isinstance(value, np.ndarray) and value.dtype.kind in "fc" else value for name, value in args.items()}


def _finite_after_rounding(gradient: Gradient, working, args: dict) -> bool:
    rounded = _rounded(gradient, working, args)
    return all(np.array_equal(np.isfinite(value), np.isfinite(rounded[name])) for name, value in args.items()
               if isinstance(value, np.ndarray) and value.dtype.kind in "fc")


def _tolerance(gradient: Gradient, working, args: dict, expected: tuple) -> Budget:
    args = _oracle_args(gradient, args)
    if working is None:
        return float64_budget(gradient.bound, gradient.rule, args, expected)
    return gradient_baseline_budget(gradient, working, args, expected)


def _working_for(gradient: Gradient, key: str, dtype):
    """The backward's working dtype (None: float64), refused where the form has no baseline."""
    working = None if dtype is None else numpy_dtype(dtype)
    if working is None or working == np.float64:
        return None
    if gradient.plain is None:
        raise ValueError(f"dtype: the gradients of {key!r} have no low-precision baseline (their definition's backward "
                         f"is not evaluated in {working.name}); check them with dtype=None, which claims float64 "
                         f"accuracy")
    return working


def _judge(key, gradient: Gradient, actual_of, call, candidate, backend, max_examples, seed, timeout, progress,
           inputs, working=None) -> Result:
    strategy = with_cotangents(gradient, inputs)
    if working is not None:
        strategy = strategy.filter(lambda args: _finite_after_rounding(gradient, working, args)).map(
            lambda args: _rounded(gradient, working, args))
    return verify(
        key=key,
        relation=lambda args: (actual_of(args), _expected(gradient, args)),
        tolerance=lambda args, expected: _tolerance(gradient, working, args, expected),
        strategy=strategy,
        names=gradient.outputs,
        time_axis=1,
        max_examples=max_examples,
        seed=seed,
        dtype="float64" if working is None else working.name,
        backend=backend,
        reproducer=lambda args: reproducer_source(title=f"seqcheck counterexample: the gradients of {key} [{backend}]",
                                                  call=call, args=args, candidate=candidate),
        rule=gradient.rule if working is None else gradient_baseline_rule(gradient, working),
        axes=gradient.axes,
        timeout=timeout,
        progress=progress,
        first_example_errors=True,
    )


def check_grad(candidate, key: str, *, backend, max_examples, seed, inputs, timeout, progress, dtype=None) -> Result:
    """``check(candidate, key, grad=True)``: the candidate's autograd gradients against the oracle
    (``inputs``: the strategy of the form's arguments, resolved by ``check``; ``dtype`` the
    candidate's working precision, None for float64)."""
    from seqcheck.equiv.check import _backend_problem

    if backend not in GRAD_BACKENDS:
        raise ValueError(f"backend: grad=True differentiates the candidate with torch autograd or jax.grad: expected "
                         f"one of {GRAD_BACKENDS}, got {backend!r} (an explicit backward: check_vjp)")
    gradient = get_gradient(key)
    working = _working_for(gradient, key, dtype)
    unavailable = _backend_problem(backend, working)
    if unavailable is not None:
        return Result(key=key, status="error", max_error=float("nan"), budget=float("nan"), worst_ratio=float("nan"),
                      examples=0, seed=seed, dtype="float64" if working is None else working.name, backend=backend,
                      rule=gradient.rule if working is None else gradient_baseline_rule(gradient, working),
                      reason=unavailable[0], hint=unavailable[1])
    call = (f"equiv.replay_grad(candidate, {key!r}, args, backend={backend!r}, "
            f"dtype={None if working is None else working.name!r})")
    return _judge(key, gradient, lambda args: _differentiated(candidate, gradient, args, backend, working), call,
                  candidate, backend, max_examples, seed, timeout, progress, inputs, working)


def _differentiated(candidate, gradient: Gradient, args: dict, backend: str, working) -> tuple:
    if backend == "jax":
        return _jax_grad(candidate, gradient, args, working)
    return _autograd(candidate, gradient, args, backend, working)


def check_vjp(vjp, key: str, *, dtype=None, max_examples=100, seed=None, inputs=None, timeout=DEFAULT_TIMEOUT,
              progress=True) -> Result:
    """Judge an explicit backward ``vjp(**args, <cotangents>) -> {name: gradient}`` (NumPy arrays
    in and out) against the float64 gradient oracle of form ``key``, per input and time position
    within the derived bound. ``dtype``: the backward's working precision: None (float64) claims
    float64 accuracy; "float32", "bfloat16", ... get the baseline budget (the definition's
    backward evaluated in that dtype), and the arguments arrive in it. ``inputs``: a strategy of
    the form's arguments (``inputs_for(key, ...)``; the cotangents are drawn for it); the rest as
    ``check``."""
    from seqcheck.equiv.check import _inputs_for, _progress_sink, _seed

    if not callable(vjp):
        raise TypeError(f"vjp: expected a callable, got {type(vjp).__name__}")
    gradient = get_gradient(key)
    working = _working_for(gradient, key, dtype)
    call = f"equiv.replay_vjp(vjp, {key!r}, args, dtype={None if working is None else working.name!r})"
    return _judge(key, gradient, lambda args: _explicit(vjp, gradient, args, working), call, vjp, "numpy",
                  max_examples, _seed(seed), timeout, _progress_sink(progress),
                  _inputs_for(key) if inputs is None else inputs, working)


def _compare(gradient: Gradient, args: dict, actual: tuple, working) -> Comparison:
    expected = _expected(gradient, args)
    return compare(actual, expected, _tolerance(gradient, working, args, expected), gradient.outputs, 1,
                   gradient.axes)


def replay_grad(candidate, key: str, args: dict, *, backend="torch", dtype=None) -> Comparison:
    """Differentiate ``candidate`` once on ``args`` (with their cotangents) as ``check(grad=True)`` does."""
    gradient = get_gradient(key)
    working = _working_for(gradient, key, dtype)
    args = _rounded(gradient, working, args)
    return _compare(gradient, args, _differentiated(candidate, gradient, args, backend, working), working)


def replay_vjp(vjp, key: str, args: dict, *, dtype=None) -> Comparison:
    """Run the explicit backward ``vjp`` once on ``args`` as ``check_vjp`` does."""
    gradient = get_gradient(key)
    working = _working_for(gradient, key, dtype)
    args = _rounded(gradient, working, args)
    return _compare(gradient, args, _explicit(vjp, gradient, args, working), working)


__all__ = ["check_grad", "check_vjp", "replay_grad", "replay_vjp"]
