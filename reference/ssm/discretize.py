"""Discretisation of a continuous linear state space model x'(t) = A x(t) + B u(t)."""

import numbers

import numpy as np
import scipy.linalg

from .._checks import as_real, finite_real

_GBT_ALPHA = {"forward_euler": 0.0, "backward_euler": 1.0, "bilinear": 0.5}
METHODS = ("forward_euler", "backward_euler", "bilinear", "gbt", "zoh")


def _alpha(method, alpha):
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if alpha is None:
        if method == "gbt":
            raise ValueError("alpha must be given (a real number in [0, 1]) with method 'gbt'; got None")
        return _GBT_ALPHA.get(method)
    if method not in ("gbt", "bilinear"):
        raise ValueError(
            f"alpha applies only to method 'gbt' or 'bilinear'; got alpha={alpha!r} with method {method!r}"
        )
    if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a real number in [0, 1]; got {alpha!r}")
    return float(alpha)


def discretize(A, B, step, method, *, alpha=None):
    """(Abar, Bbar) of the discrete recurrence x_k = Abar x_{k-1} + Bbar u_k for step h.

    A is (N, N), B is (N, M) or (N,); Abar is (N, N) and Bbar has B's shape. Real inputs give
    float64, complex ones complex128. ``step`` is a finite real h > 0. Methods:

        "forward_euler"   Abar = I + h A                          Bbar = h B
        "backward_euler"  Abar = (I - h A)^-1                     Bbar = (I - h A)^-1 h B
        "gbt"             Abar = (I - a h A)^-1 (I + (1-a) h A)   Bbar = (I - a h A)^-1 h B
        "bilinear"        "gbt" with a = alpha, default 1/2 (Tustin)
        "zoh"             Abar = e^(hA)                           Bbar = int_0^h e^(sA) ds B

    The first three are "gbt" with a = 0, 1, 1/2 and are evaluated as such. For "zoh" both blocks
    come from one exponential of the augmented matrix,

        expm(h [[A, B], [0, 0]]) = [[e^(hA), int_0^h e^(sA) ds B], [0, I]],

    which needs no inverse of A, so it is valid for singular A (Van Loan 1978).
    Cross-checks with ``scipy.signal.cont2discrete`` methods 'euler', 'backward_diff', 'gbt',
    'bilinear' and 'zoh' (its ad, bd). The bilinear form is the one of S4 (Gu et al. 2022,
    arXiv:2111.00396, eq. (3)), ``state-spaces/s4: models/s4/s4.py SSMKernelDPLR._setup_state``;
    ZOH is the one of S4D (arXiv:2206.11893), ``models/s4/s4.py SSMKernelDiag._setup_step``,
    in matrix form. A and B must be finite (NaN or Inf: ValueError); a singular I - a h A
    is a ValueError.
    """
    A = as_real("A", A, complex_ok=True)
    B = as_real("B", B, complex_ok=True)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a square matrix of shape (N, N) with N >= 1; got shape {A.shape}")
    n = A.shape[0]
    if B.ndim not in (1, 2) or B.shape[0] != n or 0 in B.shape:
        raise ValueError(
            f"B must have shape (N,)=({n},) or (N, M)=({n}, M) with M >= 1 to match A; got shape {B.shape}"
        )
    for name, x in (("A", A), ("B", B)):
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} must be finite; got NaN or Inf entries")
    h = finite_real("step", step, "> 0")
    a = _alpha(method, alpha)
    b = B.reshape(n, -1)
    eye = np.eye(n)

    if method == "zoh":
        m = b.shape[1]
        augmented = np.zeros((n + m, n + m), dtype=np.result_type(A, b))
        augmented[:n, :n], augmented[:n, n:] = A, b
        e = scipy.linalg.expm(h * augmented)
        return e[:n, :n], e[:n, n:].reshape(B.shape)

    lhs = eye - a * h * A
    try:
        Abar = np.linalg.solve(lhs, eye + (1 - a) * h * A)
        Bbar = np.linalg.solve(lhs, h * b)
    except np.linalg.LinAlgError:
        raise ValueError(
            f"I - alpha*step*A is singular (alpha={a}, step={h}): 1/(alpha*step) is an eigenvalue of A"
        ) from None
    return Abar, Bbar.reshape(B.shape)
