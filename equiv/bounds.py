"""Pieces of derived bounds that several families share (a family module imports these, never
another family's module): magnitudes per channel or head, the running exponent of decays, and
the rounding magnitude of a softmax attention row."""

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


def softmax_magnitude(P: np.ndarray, sigma: np.ndarray, v: np.ndarray, lse: np.ndarray, head_dim: int,
                      expected: tuple) -> tuple:
    """Per query row t, the typical size of the rounding error of an evaluation of softmax
    attention in any summation order, in units of the unit roundoff (the low-precision floor's
    scale), from the weights P (B, Tq, H, Tk) (0 where a key is not seen), sigma_tj (B, Tq, H, Tk)
    bounding |s_tj|, v (B, Tk, H, Dv) per query head, the rows' lse (B, Tq, H) and the expected
    (out, [lse]):

        out: max over b, h, c of  (sqrt(n_t) + |lse_t|) sum_j P_tj |v_jc|  +  sqrt(sum_j W_tj  sum_j W_tj (v_jc - out_tc)^2)
        lse: max over b, h of     1 + |lse_t| + sqrt(D) sum_j P_tj sigma_tj

    with W_tj = P_tj (sqrt(D) sigma_tj + s_t,max - s_tj) and n_t the keys row t sees. The first term
    is the rounding of the weights and of the sum of n_t terms P_tj v_j (a random walk of n_t
    roundings, as any order, sequential included, makes them); the second bounds
    (Cauchy-Schwarz) sum_j W_tj |v_jc - out_tc|, how far relative perturbations of the weights
    move the output: the D-term dot product s_tj rounds by about sqrt(D) u sigma_tj, and
    s_t,max - s_tj = log(P_t,max / P_tj) is the argument of exp. A kernel that normalises its
    weights as exp(s - lse) (FlashAttention-2's backward does, and so does attention written with
    logsumexp) instead of dividing by their sum errs on every weight of the row by the rounding of
    lse, u |lse_t|, coherently: the sum no longer renormalises it away, hence |lse_t| sum_j P_tj
    |v_jc| (a float32 kernel on scores near 1000 erred by 60 ulp there). A row seeing one key has
    no spread term: its output is that key's value whatever the weights' error.
    """
    log_p = np.where(P > 0, np.log(np.where(P > 0, P, 1.0)), -np.inf)
    with np.errstate(invalid="ignore"):  # a fully masked row: -inf - -inf, where P = 0 anyway
        log_ratio = np.where(P > 0, log_p.max(axis=-1, keepdims=True, initial=-np.inf) - log_p, 0.0)
    W = P * (np.sqrt(head_dim) * sigma + log_ratio)  # (B, Tq, H, Tk)
    seen = np.sqrt((P > 0).sum(axis=-1))[..., None]  # sqrt(n_t), (B, Tq, H, 1)
    out = np.where(np.isfinite(expected[0]), expected[0], 0.0)
    total = W.sum(axis=-1)[..., None]
    spread = np.einsum("bths,bshc->bthc", W, v ** 2) - 2 * out * np.einsum("bths,bshc->bthc", W, v) + out ** 2 * total
    shift = (seen + np.abs(np.where(np.isfinite(lse), lse, 0.0))[..., None])  # (B, Tq, H, 1)
    terms = shift * np.einsum("bths,bshc->bthc", P, np.abs(v)) + np.sqrt(total * np.maximum(spread, 0.0))
    magnitudes = (terms.max(axis=(0, 2, 3), initial=0.0),)
    if len(expected) == 2:
        lse = np.where(np.isfinite(expected[1]), np.abs(expected[1]), 0.0)
        magnitudes += ((1 + lse + np.sqrt(head_dim) * (P * sigma).sum(axis=-1)).max(axis=(0, 2), initial=0.0),)
    return magnitudes
