"""Checking engine: error metrics, tolerance budgets, the form registry and its claims.

Public API (a contract other projects call):

- ``forms()`` -> sorted list of registered form keys (``family.mechanism.form``);
- ``reference(key)`` -> the float64 callable of form ``key``;
- ``check(candidate, key, *, dtype=None, max_examples=None, seed=None)`` -> a ``Result`` with
  ``passed``, ``max_error``, ``budget``, ``examples`` and ``counterexample``;
- ``assert_equivalent(actual, key, args, *, dtype=None)`` for a project's own Hypothesis tests;
- ``claims()``, ``run_claim(key)``, ``replay(...)``, ``replay_claim(...)``, ``load_candidate(spec)``.
"""

from __future__ import annotations

from seqcheck.equiv.check import assert_equivalent, check, replay, replay_claim, run_claim
from seqcheck.equiv.engine import Comparison, Counterexample, Result
from seqcheck.equiv.registry import Claim, Form, Sweep, all_claims, form_keys, get_form
from seqcheck.equiv.reproduce import load_candidate
from seqcheck.equiv.families import register_all

register_all()


def forms() -> list[str]:
    """Sorted keys of every registered form."""
    return form_keys()


def reference(key: str):
    """The float64 reference callable of form ``key``."""
    return get_form(key).fn


def claims() -> list[Claim]:
    """Every registered claim, sorted by key."""
    return all_claims()


__all__ = ["forms", "reference", "check", "assert_equivalent", "claims", "run_claim", "replay",
           "replay_claim", "load_candidate", "Result", "Counterexample", "Comparison", "Claim", "Form",
           "Sweep", "get_form"]
