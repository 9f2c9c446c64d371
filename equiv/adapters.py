"""Adapters from other projects' layouts to seqcheck's forms (DESIGN.md: adapters live in equiv,
never in a reference). Each wraps a function written for the other layout into a candidate with
the form's signature, so ``equiv.check`` judges it as it is."""

from __future__ import annotations

import numpy as np


def mamba_selective_scan(selective_scan_fn):
    """A candidate for ``mamba.selective_scan.*`` from a function with the signature of
    state-spaces/mamba's ``selective_scan_fn`` / ``selective_scan_ref``
    (mamba_ssm/ops/selective_scan_interface.py): channels first, u, delta, z (B, D, L); B and C
    (D, N), (B, N, L) or (B, G, N, L), complex ones over time stored as real (re, im) pairs along
    L; ``return_last_state`` instead of ``return_state``; no initial state.

    >>> from mamba_ssm.ops.selective_scan_interface import selective_scan_fn   # doctest: +SKIP
    >>> equiv.check(mamba_selective_scan(selective_scan_fn), "mamba.selective_scan.recurrent",
    ...             backend="torch:cuda", dtype="float32",
    ...             inputs=inputs_for("mamba.selective_scan.recurrent", initial_state=False))
    """
    def candidate(u, delta, A, B, C, D=None, z=None, *, delta_bias=None, delta_softplus=False,
                  initial_state=None, return_state=False):
        if initial_state is not None:
            raise ValueError("initial_state: mamba's selective_scan_fn starts from a zero state; narrow the "
                             "inputs with inputs_for(key, initial_state=False)")
        result = selective_scan_fn(
            _time_last(u), _time_last(delta), A, _coefficient(B), _coefficient(C), D,
            None if z is None else _time_last(z), delta_bias=delta_bias, delta_softplus=delta_softplus,
            return_last_state=return_state)
        if return_state:
            out, last_state = result
            return _time_second(out), last_state
        return _time_second(result)

    candidate.__name__ = f"mamba_layout_{getattr(selective_scan_fn, '__name__', 'fn')}"
    candidate.__seqcheck_recipe__ = (__name__, "mamba_selective_scan", (selective_scan_fn,))  # for reproducers
    return candidate


def _time_last(x):
    """(B, T, ...) -> (B, ..., T)."""
    return x.movedim(1, -1) if hasattr(x, "movedim") else np.moveaxis(x, 1, -1)


def _time_second(x):
    """(B, ..., T) -> (B, T, ...)."""
    return x.movedim(-1, 1) if hasattr(x, "movedim") else np.moveaxis(x, -1, 1)


def _coefficient(M):
    """B or C: time-invariant (D, N) as is; over time, time last, complex as (re, im) pairs."""
    if M.ndim == 2:
        return M
    M = _time_last(M)
    if hasattr(M, "is_complex"):
        import torch

        return torch.view_as_real(M.contiguous()).flatten(-2) if M.is_complex() else M
    if np.iscomplexobj(M):
        return np.stack([M.real, M.imag], axis=-1).reshape(M.shape[:-1] + (2 * M.shape[-1],))
    return M
