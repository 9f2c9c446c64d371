"""Running error analysis: float64 arrays that carry a first-order bound on their rounding error.

A ``Tracked`` holds the values a float64 evaluation computes and, elementwise, a bound e on
|computed - exact| (exact: the same operations on the same inputs in real arithmetic), to first
order in u = 2^-53. Each operation adds its own rounding to the errors it propagates:

    a + b   e_a + e_b + u |r|                a * b   |a| e_b + |b| e_a + u |r|
    a / b   (e_a + |r| e_b) / |b| + u |r|    exp a   |r| (e_a + 2u)
    sqrt a  e_a / (2 |r|) + u |r|            sigmoid, softplus: the derivative times e_a + 4u |r|
    sum of n terms       sum e + gamma_(n-1) sum |terms|
    contraction of n     |A| e_B + e_A |B| + gamma_n |A| |B|,    gamma_n = n u / (1 - n u)
    max                  max e (a maximum moves by at most its arguments' errors)

whatever order the sums take (gamma_n bounds every order, FMA included). Plain NumPy arrays and
Python numbers are exact inputs (e = 0). So a computation written against the operations of
``OPS`` (the namespace ``reference.hybrid.jamba.Float64`` mirrors) yields its values and a
derived bound on the error of any evaluation that performs the same operations in float64;
two such evaluations differ by at most twice it. Discrete choices (top-k, masks) read the
values: the bound holds where both evaluations choose alike.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from seqcheck.reference.arith import U64


def gamma(n) -> float:
    n = max(int(n), 0)
    return n * U64 / (1 - n * U64)


class Tracked:
    """Values and a first-order bound on their absolute rounding error (module docstring)."""

    __array_ufunc__ = None  # NumPy defers to the reflected operators

    def __init__(self, value, error=None):
        self.value = np.asarray(value, dtype=np.float64)
        self.error = np.zeros(self.value.shape) if error is None else np.broadcast_to(error, self.value.shape)

    shape = property(lambda self: self.value.shape)
    ndim = property(lambda self: self.value.ndim)

    def __getitem__(self, index):
        return Tracked(self.value[index], self.error[index])

    def __neg__(self):
        return Tracked(-self.value, self.error)

    def __add__(self, other):
        v, e = _parts(other)
        r = self.value + v
        return Tracked(r, self.error + e + U64 * np.abs(r))

    __radd__ = __add__

    def __sub__(self, other):
        return self + (-_tracked(other))

    def __rsub__(self, other):
        return _tracked(other) + (-self)

    def __mul__(self, other):
        v, e = _parts(other)
        r = self.value * v
        return Tracked(r, np.abs(self.value) * e + np.abs(v) * self.error + U64 * np.abs(r))

    __rmul__ = __mul__

    def __truediv__(self, other):
        v, e = _parts(other)
        r = self.value / v
        return Tracked(r, (self.error + np.abs(r) * e) / np.abs(v) + U64 * np.abs(r))

    def __rtruediv__(self, other):
        return _tracked(other) / self


def _tracked(a) -> Tracked:
    return a if isinstance(a, Tracked) else Tracked(a)


def _parts(a):
    return (a.value, a.error) if isinstance(a, Tracked) else (np.asarray(a, dtype=np.float64), 0.0)


def _contracted(spec: str, *shapes) -> int:
    """The number of terms each output of ``np.einsum(spec, ...)`` sums."""
    inputs, output = spec.split("->")
    sizes = {}
    for term, shape in zip(inputs.split(","), shapes):
        letters = term.replace("...", "")
        for letter, n in zip(letters, shape[len(shape) - len(letters):]):
            sizes[letter] = n
    return int(np.prod([n for letter, n in sizes.items() if letter not in output], dtype=np.int64))


class OPS:
    """The operations, on ``Tracked`` arrays and exact NumPy inputs."""

    @staticmethod
    def einsum(spec, a, b):
        (va, ea), (vb, eb) = _parts(a), _parts(b)
        n = _contracted(spec, va.shape, vb.shape)
        magnitude = np.einsum(spec, np.abs(va), np.abs(vb))
        error = gamma(n) * magnitude
        if np.any(ea):
            error = error + np.einsum(spec, np.broadcast_to(ea, va.shape), np.abs(vb))
        if np.any(eb):
            error = error + np.einsum(spec, np.abs(va), np.broadcast_to(eb, vb.shape))
        return Tracked(np.einsum(spec, va, vb), error)

    @staticmethod
    def exp(a):
        v, e = _parts(a)
        r = np.exp(v)
        return Tracked(r, r * (e + 2 * U64))

    @staticmethod
    def sqrt(a):
        v, e = _parts(a)
        r = np.sqrt(v)
        return Tracked(r, e / (2 * r) + U64 * r)

    @staticmethod
    def sigmoid(a):
        v, e = _parts(a)
        r = expit(v)
        return Tracked(r, r * (1 - r) * e + 4 * U64 * r)

    @staticmethod
    def softplus(a):
        v, e = _parts(a)
        r = np.logaddexp(0.0, v)
        return Tracked(r, expit(v) * e + 4 * U64 * r)

    @staticmethod
    def where(condition, a, b):
        (va, ea), (vb, eb) = _parts(a), _parts(b)
        return Tracked(np.where(condition, va, vb), np.where(condition, ea, eb))

    @staticmethod
    def sum(a, axis, keepdims=False):
        v, e = _parts(a)
        n = v.shape[axis]
        e = np.broadcast_to(e, v.shape)
        return Tracked(v.sum(axis=axis, keepdims=keepdims),
                       e.sum(axis=axis, keepdims=keepdims) + gamma(n - 1) * np.abs(v).sum(axis=axis, keepdims=keepdims))

    @staticmethod
    def max(a, axis):
        v, e = _parts(a)
        return Tracked(v.max(axis=axis, keepdims=True, initial=-np.inf),
                       np.broadcast_to(e, v.shape).max(axis=axis, keepdims=True, initial=0.0))

    @staticmethod
    def stack(arrays, axis):
        parts = [_parts(a) for a in arrays]
        return Tracked(np.stack([v for v, _ in parts], axis=axis),
                       np.stack([np.broadcast_to(e, v.shape) for v, e in parts], axis=axis))

    @staticmethod
    def concatenate(arrays, axis):
        parts = [_parts(a) for a in arrays]
        return Tracked(np.concatenate([v for v, _ in parts], axis=axis),
                       np.concatenate([np.broadcast_to(e, v.shape) for v, e in parts], axis=axis))
