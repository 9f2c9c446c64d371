"""Pieces of derived bounds that several families share (a family module imports these, never
another family's module): magnitudes per channel or head, and the running exponent of decays."""

from __future__ import annotations

import numpy as np


def per_axis_max(state_magnitude: np.ndarray) -> np.ndarray:
    """Max over batch and the state axes of a (B, C, ...) magnitude: one value per channel C."""
    other = (0,) + tuple(range(2, state_magnitude.ndim))
    return state_magnitude.max(axis=other)


def cumulative_max(logs: np.ndarray) -> np.ndarray:
    """max over every axis but time (axis 1) of the running sums along time of ``logs``."""
    running = np.cumsum(logs, axis=1)
    return running.max(axis=tuple(a for a in range(running.ndim) if a != 1)) if running.size else np.zeros(logs.shape[1])


def with_exponents(out: np.ndarray, state: np.ndarray, exponents: np.ndarray) -> tuple:
    """The floor's two parts per output: m_t in the dtype's roundoff, and exponent_t m_t in the
    accumulation's (float32 for the low dtypes): kernels form the decays' exponents, cumulative
    sums of dt A, in float32 whatever their inputs, and a rounded exponent moves its decay by that
    roundoff times the exponent."""
    last = exponents[-1] if exponents.size else 0.0
    return (out, exponents * out), (state, last * state)


def with_step_rounding(exponents: np.ndarray) -> np.ndarray:
    """The running exponent plus the step count t + 1: a kernel that forms each step's decay
    exp(g_t) itself rounds it once per step (its exp need not be correctly rounded, expf errs by
    up to 2 ulp), and where the decays repeat (RWKV-5's, constant in time) those roundings add up
    coherently to about t ulp of the decay products, which the baseline's own correctly rounded
    exp may miss."""
    return exponents + np.arange(1, exponents.size + 1)


def per_position(magnitude: np.ndarray) -> np.ndarray:
    """max |magnitude| over every axis but time (axis 1): one value per time position."""
    return np.abs(magnitude).max(axis=tuple(a for a in range(magnitude.ndim) if a != 1), initial=0.0)
