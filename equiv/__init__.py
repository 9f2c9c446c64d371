"""Checking engine: error metrics, tolerance budgets, the form registry and its claims.

Public API (a contract other projects call):

- ``forms()`` -> sorted list of registered form keys (``family.mechanism.form``);
- ``reference(key)`` -> the float64 callable of form ``key``;
- ``check(candidate, key, *, dtype=None, max_examples=100, seed=None, backend="numpy",
  inputs=None, timeout=120, progress=True)`` -> a ``Result`` with ``status`` (passed, failed,
  error, not run), ``passed``, ``max_error``, ``budget``, ``examples``, ``counterexample``,
  ``worst_example``, ``reason`` and ``hint``;
- ``assert_equivalent(actual, key, args, *, dtype=None)`` for a project's own Hypothesis tests;
- ``claims()``, ``run_claim(key)``, ``replay(...)``, ``replay_claim(...)``, ``load_candidate(spec)``;
- ``implementations()`` -> the project's GPU implementations, each checked with ``check`` (a
  backward kernel with ``check_vjp``): ``check_implementation(impl, dtype)``;
- ``check(..., grad=True, backend="torch")``, ``check_vjp(vjp, key)``, ``replay_grad``, ``replay_vjp``,
  ``gradients()``: a candidate's backward against the float64 gradient oracles (docs/gradients.md).
"""

from __future__ import annotations

from seqcheck.equiv.check import assert_equivalent, check, check_implementation, replay, replay_claim, run_claim
from seqcheck.equiv.grad import check_vjp, replay_grad, replay_vjp
from seqcheck.equiv.engine import STATUSES, Comparison, Counterexample, Result, UsageError
from seqcheck.equiv.registry import (Claim, Form, Implementation, Sweep, all_claims, form_keys, get_form, gradient_keys,
                                     implementations)
from seqcheck.equiv.reproduce import load_candidate
from seqcheck.equiv.families import register_all

register_all()


def forms() -> list[str]:
    """Sorted keys of every registered form."""
    return form_keys()


def reference(key: str):
    """The float64 reference callable of form ``key``."""
    return get_form(key).fn


def gradients() -> list[str]:
    """Sorted keys of the forms with a gradient oracle (``check(..., grad=True)``, ``check_vjp``)."""
    return gradient_keys()


def claims() -> list[Claim]:
    """Every registered claim, sorted by key."""
    return all_claims()


__all__ = ["forms", "reference", "check", "assert_equivalent", "claims", "run_claim", "replay",
           "replay_claim", "load_candidate", "Result", "UsageError", "STATUSES", "Counterexample", "Comparison", "Claim", "Form",
           "Sweep", "get_form", "Implementation", "implementations", "check_implementation", "check_vjp", "replay_grad", "replay_vjp",
           "gradients"]
