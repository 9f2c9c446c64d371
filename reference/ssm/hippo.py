"""HiPPO-LegS matrices and their normal-plus-low-rank and diagonal-plus-low-rank forms.

HiPPO: Gu et al. 2020 (arXiv:2008.07669); NPLR/DPLR: Gu et al. 2022, S4 (arXiv:2111.00396),
Theorem 1 and Corollary 1; ``state-spaces/s4: models/s4/s4.py transition, rank_correction,
nplr`` (the same definitions as ``src/models/hippo/hippo.py``).
"""

import numpy as np

from .._checks import even_positive_int, positive_int


def hippo_legs(N):
    """HiPPO-LegS (A (N, N), B (N,)), float64:

        A[n, k] = -sqrt(2n+1) sqrt(2k+1)  if n > k,   -(n+1)  if n = k,   0  if n < k
        B[n]    = sqrt(2n+1)

    Matches ``state-spaces/s4: models/s4/s4.py transition('legs', N)``, which forms the same A as
    T M T^-1 with T = diag(sqrt(2n+1)). Differences: entries are written directly (no inverse,
    so they can differ from s4's in the last bit); B is (N,), not (N, 1).
    """
    N = positive_int("N", N)
    r = np.sqrt(2.0 * np.arange(N) + 1)
    A = -np.tril(np.outer(r, r), -1) - np.diag(np.arange(N) + 1.0)
    return A, r.copy()


def hippo_legs_nplr(N):
    """HiPPO-LegS in normal-plus-low-rank form: (A (N, N), P (N,), B (N,)), float64, with

        P[n] = sqrt(n + 1/2),    A + P P^T = -I/2 + S,    S^T = -S

    (S[n, k] = -sqrt(2n+1) sqrt(2k+1) / 2 for n > k), so A + P P^T is normal. A and B are
    ``hippo_legs(N)``. Matches ``state-spaces/s4: models/s4/s4.py rank_correction('legs', N)``
    (rank 1; s4 returns P as (1, N)) and the AP of ``nplr``.
    """
    A, B = hippo_legs(N)
    return A, np.sqrt(np.arange(N) + 0.5), B


def dplr_from_legs(N):
    """HiPPO-LegS diagonalised: (Lambda (N/2,), P (N/2,), B (N/2,), V (N, N/2)), complex128, N even.

    With (A, P_r, B_r) = ``hippo_legs_nplr(N)`` and S the skew part of A + P_r P_r^T, the
    Hermitian -iS = U diag(w) U^* (``eigh``) gives A + P_r P_r^T = U diag(-1/2 + i w) U^*. The
    eigenvalues come in conjugate pairs; sorted by w, the half with w < 0 is kept:

        Lambda = -1/2 + i w[:N/2],   V = U[:, :N/2],   P = V^* P_r,   B = V^* B_r

    and the other half is the conjugate (eigenvectors conj(V)). Exact identities:

        V^* V = I_{N/2},    A + P_r P_r^T = 2 Re(V diag(Lambda) V^*),
        P_r = 2 Re(V P),    B_r = 2 Re(V B)

    so with W = [V, conj V] (unitary) and the doubled Lambda2 = [Lambda, conj Lambda],
    P2 = [P, conj P], B2 = [B, conj B]:  A = W (diag(Lambda2) - P2 P2^*) W^*,  B_r = W B2.
    A real output row c becomes C = c V (y = C x, unconjugated, over the kept half), which is
    the input of ``s4_dplr_kernel(Lambda, P, P, B, c V, ...)``.

    Matches ``state-spaces/s4: models/s4/s4.py nplr('legs', N)`` (its W, P, B, V), which
    diagonalises with eigh(AP * -1j) and keeps the negative-imaginary half. Differences: eigh
    is applied to the exactly skew part S (s4 passes AP * -1j, whose imaginary diagonal eigh
    ignores); B is not clipped (s4's B_clip=2.0 clamps Im B to [-2, 2], which changes the
    system); P is (N/2,), not (1, N/2). Eigenvectors are defined up to a unit phase per column,
    so V, P and B may differ from s4's by such phases; Lambda and every product above do not.
    """
    N = even_positive_int("N", N)
    A, P_r, B_r = hippo_legs_nplr(N)
    normal = A + np.outer(P_r, P_r)
    skew = (normal - normal.T) / 2
    w, U = np.linalg.eigh(-1j * skew)  # w ascending: the first N/2 are the negative ones
    V = U[:, : N // 2]
    Lambda = -0.5 + 1j * w[: N // 2]
    return Lambda, V.conj().T @ P_r, V.conj().T @ B_r, V
