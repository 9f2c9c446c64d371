"""Monarch matrices (Dao et al. 2022, "Monarch: Expressive Structured Matrices for Efficient and
Accurate Training", sec. 3): a product of two block-diagonal matrices with fixed permutations,

    M = P_out B2 P_mid B1,   out = x M^T,

in HazyResearch/fly's layout (src/models/layers/blockdiag_butterfly_multiply.py
``blockdiag_butterfly_multiply_reference``, version 2): x (..., n), w1 (k, q, p) with k p = n,
w2 (l, s, r) with l r = k q; out (..., l s).

    1. y[k, q]  = sum_p w1[k, q, p] x[k, p]         B1 = block_diag(w1[0], ..., w1[k-1])
    2. z[l, r]  = y viewed as (k q) = (r l)          P_mid: the (r, l) view transposed
    3. o[l, s]  = sum_r w2[l, s, r] z[l, r]         B2 = block_diag(w2[0], ..., w2[l-1])
    4. out      = o in (s l) order                  P_out

For n = b^2 and every size b this is the paper's M = P L P^T R (R = B1, L = B2, P = P_mid =
P_out, its own inverse). Entrywise, where q = l (the shapes the projection returns, w1 (A, B,
n/A), w2 (B, n/B, A) for n = A B): M[s B + l, k (n/A) + p] = w2[l, s, k] w1[k, l, p], every
(l, k) block of rank 1. Complex factors are allowed (the DFT is Monarch).
"""

import numpy as np
from scipy.linalg import block_diag

from .._checks import as_real, check_layout, int_in_range


def _factors(w1, w2, n=None):
    w1, w2 = as_real("w1", w1, complex_ok=True), as_real("w2", w2, complex_ok=True)
    k, q, p = check_layout("w1", w1, "(k, q, p)")
    l, s, r = check_layout("w2", w2, "(l, s, r)")
    if l * r != k * q:
        raise ValueError(f"w2 must have shape (l, s, r) with l r = k q = {k * q} to match w1; got shape {w2.shape}")
    if n is not None and k * p != n:
        raise ValueError(f"x must have a last axis n = k p = {k * p} to match w1; got n = {n}")
    if not (np.isfinite(w1).all() and np.isfinite(w2).all()):
        raise ValueError("w1 and w2 must be finite")
    return w1, w2


def _input(x):
    x = as_real("x", x, complex_ok=True)
    if x.ndim == 0:
        raise ValueError(f"x must have shape (..., n); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    return x


def monarch_multiply(x, w1, w2):
    """x M^T by the two block-diagonal products and the two reshuffles (module docstring), as
    fly's ``blockdiag_butterfly_multiply_reference`` (version 2). x (..., n); returns (..., l s)."""
    x = _input(x)
    w1, w2 = _factors(w1, w2, x.shape[-1])
    k, q, p = w1.shape
    l, s, r = w2.shape
    lead = x.shape[:-1]
    y = np.einsum("kqp,...kp->...kq", w1, x.reshape(lead + (k, p)))
    z = np.swapaxes(y.reshape(lead + (r, l)), -1, -2)  # (k q) = (r l) -> (l, r)
    o = np.einsum("lsr,...lr->...ls", w2, z)
    return np.swapaxes(o, -1, -2).reshape(lead + (s * l,))


def _shuffle(rows, cols):
    """The row order of P X for the permutation P taking a vector in (rows cols) order to (cols
    rows) order: (P X) = X[order]."""
    i = np.arange(rows * cols)
    return (i % rows) * cols + i // rows


def monarch_dense(w1, w2):
    """The dense (l s, k p) matrix M = P_out block_diag(w2) P_mid block_diag(w1) (fly's version 3,
    ``torch.block_diag`` and the permutations, here as row orders), so that
    monarch_multiply(x) = x M^T."""
    w1, w2 = _factors(w1, w2)
    k, q, p = w1.shape
    l, s, r = w2.shape
    inner = block_diag(*w1)[_shuffle(r, l)]  # P_mid B1, (l r, k p)
    outer = np.einsum("lsr,lrn->lsn", w2, inner.reshape(l, r, k * p)).reshape(l * s, k * p)  # B2 P_mid B1
    return outer[_shuffle(l, s)]


def dense_multiply(x, w1, w2):
    """x M^T with M = ``monarch_dense(w1, w2)``: the definition, one dense product."""
    x = _input(x)
    w1, w2 = _factors(w1, w2, x.shape[-1])
    return x @ monarch_dense(w1, w2).T


def default_sizes(n):
    """fly's ``factors(n)[-1]`` swapped: (A, B) with A B = n, B the largest divisor <= sqrt(n)."""
    n = int_in_range("n", n, 1)
    b = max(d for d in range(1, int(np.sqrt(n)) + 1) if n % d == 0)
    return n // b, b


def _sizes(sizes, n):
    if sizes is None:
        return default_sizes(n)
    if not isinstance(sizes, (tuple, list)) or len(sizes) != 2:
        raise TypeError(f"sizes must be a pair (A, B) with A B = n; got {sizes!r}")
    A, B = int_in_range("sizes", sizes[0], 1), int_in_range("sizes", sizes[1], 1)
    if A * B != n:
        raise ValueError(f"sizes must be a pair (A, B) with A B = n = {n}; got {tuple(sizes)}")
    return A, B


def monarch_project(M, sizes=None):
    """The Monarch matrix nearest to a square M (n, n) in Frobenius norm (Dao et al. 2022, sec. 3.3;
    fly: src/ops/blockdiag_butterfly_projection.py ``blockdiag_butterfly_project``): with (A, B) =
    ``sizes`` (n = A B), M's entries M[(p, k), (r, s)] (p < n/B, k < B, r < A, s < n/A) form B x A
    blocks (p, s), each replaced by its best rank-1 approximation sqrt(sigma_1) u_1 and
    sqrt(sigma_1) v_1^T (the leading singular pair). Returns (w1 (A, B, n/A), w2 (B, n/B, A))."""
    M = as_real("M", M, complex_ok=True)
    n, n_cols = check_layout("M", M, "(n, n)")
    if n != n_cols:
        raise ValueError(f"M must be square (n, n), as fly's projection; got shape {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError("M must be finite")
    A, B = _sizes(sizes, n)
    blocks = M.reshape(n // B, B, A, n // A).transpose(1, 2, 0, 3)  # (k, r, p, s)
    U, S, Vh = np.linalg.svd(blocks, full_matrices=False)
    root = np.sqrt(S[..., 0])
    u, v = U[..., :, 0] * root[..., None], Vh[..., 0, :] * root[..., None]  # (k, r, p), (k, r, s)
    return np.swapaxes(v, 0, 1), np.swapaxes(u, 1, 2)  # w1 (r, k, s), w2 (k, p, r)


def monarch_transpose(w1, w2):
    """Factors of the transpose: for w1 (k, q, p), w2 (q, s, k) (the shapes with q = l and r = k,
    as the projection's), M^T = Pi_rows^T Monarch(w1', w2') Pi_cols with w1' = w2's blocks read
    (l, k, s), w2' = w1's read (k, p, l), and Pi_rows, Pi_cols the digit swaps of M^T's row index
    (k, p) -> (p, k) and column index (s, l) -> (l, s). Returns (w1', w2')."""
    w1, w2 = _factors(w1, w2)
    if w2.shape[0] != w1.shape[1] or w2.shape[2] != w1.shape[0]:
        raise ValueError(f"w2 must have shape (q, s, k)=({w1.shape[1]}, s, {w1.shape[0]}) to match w1 (the "
                         f"transpose rule's shapes); got shape {w2.shape}")
    return np.transpose(w2, (0, 2, 1)), np.transpose(w1, (0, 2, 1))


def monarch_compose(w1, w2, D):
    """Factors of M block_diag(D): a block-diagonal D (k, p, p) with the input blocks of w1 (k, q,
    p) composes into the first factor, M block_diag(D) = Monarch(w1 D, w2) (each block w1[k] D[k]).
    Returns (w1 D, w2)."""
    w1, w2 = _factors(w1, w2)
    D = as_real("D", D, complex_ok=True)
    if not np.isfinite(D).all():
        raise ValueError("D must be finite")
    k, _, p = w1.shape
    if D.shape != (k, p, p):
        raise ValueError(f"D must have shape (k, p, p)={(k, p, p)} to match w1; got shape {D.shape}")
    return np.einsum("kqp,kpj->kqj", w1, D), w2


def dft_factors(n, sizes=None):
    """The DFT as a Monarch product (fly's ``ButterflyFFT`` in closed form): with (A, B) =
    ``sizes`` (n = A B), omega_N = e^{-2 pi i / N} and perm[j B + i] = i A + j,

        w1[j, l, i] = omega_B^{l i}                       A blocks of F_B
        w2[l, s, j] = omega_n^{l j} omega_A^{s j}         B blocks of F_A, twiddles folded in

    and monarch_multiply(x[..., perm], w1, w2) = fft(x) for every n (a prime n: B = 1, the
    second factor one dense DFT). Returns (w1 (A, B, B), w2 (B, A, A), perm (n,))."""
    n = int_in_range("n", n, 1)
    A, B = _sizes(sizes, n)
    l, i = np.arange(B)[:, None], np.arange(B)[None, :]
    w1 = np.broadcast_to(np.exp(-2j * np.pi * ((l * i) % B) / B), (A, B, B)).copy()  # every block F_B
    l, s, j = np.arange(B)[:, None, None], np.arange(A)[None, :, None], np.arange(A)[None, None, :]
    w2 = np.exp(-2j * np.pi * (((l * j) % n) / n + ((s * j) % A) / A))
    m = np.arange(n)
    perm = (m % B) * A + m // B
    return w1, w2, perm


def _signal(x):
    x = as_real("x", x, complex_ok=True)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"x must have shape (..., n) with n >= 1; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x must be finite")
    return x


def dft(x):
    """The DFT along the last axis as its sum (the definition): X_f = sum_t x_t e^{-2 pi i f t / n},
    the exponent's f t taken mod n (exact), x (..., n) real or complex."""
    x = _signal(x)
    n = x.shape[-1]
    f = np.arange(n)
    return x @ np.exp(-2j * np.pi * ((f[:, None] * f[None, :]) % n) / n).T


def monarch_dft(x):
    """The DFT along the last axis as the Monarch product of ``dft_factors(n)`` on x[..., perm]
    (fly's ``ButterflyFFT``), any n (a prime one: B = 1, one dense block)."""
    x = _signal(x)
    w1, w2, perm = dft_factors(x.shape[-1])
    return monarch_multiply(x[..., perm], w1, w2)


def dft_mp(n, sizes=None, *, dps=50):
    """``dft_factors``'s product M, entry by entry in mpmath at ``dps`` digits (M[s B + l, k B + p]
    = w2[l, s, k] w1[k, l, p]), and the DFT matrix it must equal with its columns permuted,
    F[o, perm[c]] = omega_n^{o perm[c]}. Returns (M, F[:, perm]) as object arrays of mpc."""
    import mpmath

    n = int_in_range("n", n, 1)
    A, B = _sizes(sizes, n)
    dps = int_in_range("dps", dps, 1)
    m = np.arange(n)
    perm = (m % B) * A + m // B
    with mpmath.workdps(dps):
        def omega(numerator, N):
            return mpmath.exp(-2j * mpmath.pi * mpmath.mpf(int(numerator) % N) / N)

        M = np.empty((n, n), dtype=object)
        F = np.empty((n, n), dtype=object)
        for o in range(n):
            s, l = divmod(o, B)
            for c in range(n):
                k, p = divmod(c, B)
                M[o, c] = omega(l * k, n) * omega(s * k, A) * omega(l * p, B)
                F[o, c] = omega(o * perm[c], n)
    return M, F


def monarch_fft_conv(u, K, D=None):
    """The causal convolution y_t = sum_l K_l u_{t-l} + D u_t through DFTs computed as Monarch
    products (``dft_factors`` of n = T + L, any n): y = Re(conj-DFT(DFT(u) DFT(K))) / n, first T,
    as M2's ``fftconv_ref`` (HazyResearch/m2: bert/src/mm/hyena_utils.py, fft_size = 2L for a
    length-L kernel) computes it with torch.fft. u (B, T, Dch), K (Dch, L), D (Dch,) or None."""
    u = as_real("u", u)
    B_, T, Dch = check_layout("u", u, "(B, T, Dch)")
    K = as_real("K", K)
    _, L = check_layout("K", K, "(Dch, L)", may_be_empty=("L",))
    if K.shape[0] != Dch:
        raise ValueError(f"K must have shape (Dch, L) with Dch={Dch} to match u; got shape {K.shape}")
    D = np.zeros(Dch) if D is None else as_real("D", D)
    if D.shape != (Dch,):
        raise ValueError(f"D must have shape (Dch,)=({Dch},) to match u; got shape {D.shape}")
    for name, a in (("u", u), ("K", K), ("D", D)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
    n = max(T + L, 1)
    w1, w2, perm = dft_factors(n)
    signal = np.zeros((B_, Dch, n))
    signal[..., :T] = np.swapaxes(u, 1, 2)
    kernel = np.zeros((Dch, n))
    kernel[:, :L] = K
    spectrum = monarch_multiply(signal[..., perm], w1, w2) * monarch_multiply(kernel[:, perm], w1, w2)
    y = monarch_multiply(spectrum[..., perm], w1.conj(), w2.conj()).real / n
    return np.swapaxes(y[..., :T], 1, 2) + D * u


def monarch_vjp(x, w1, w2, *, cotangent):
    """The VJP of ``monarch_multiply`` (out = x M^T) with ``cotangent`` c (..., l s): the steps run
    backwards, c_o = c in (l, s) order, dw2[l, s, r] = sum c_o[l, s] z[l, r], c_z = w2^T c_o,
    c_y = c_z in (k, q) order, dw1[k, q, p] = sum c_y[k, q] x[k, p], c_x = w1^T c_y (sums over the
    leading axes), conjugated for complex arguments (the project's convention: the gradient of a
    real loss is dL/dRe + i dL/dIm), its real part for a real one. Returns {"x", "w1", "w2":
    gradient}."""
    x = _input(x)
    w1, w2 = _factors(w1, w2, x.shape[-1])
    k, q, p = w1.shape
    l, s, r = w2.shape
    lead = x.shape[:-1]
    c = as_real("cotangent", cotangent, complex_ok=True)
    if not np.isfinite(c).all():
        raise ValueError("cotangent must be finite")
    if c.shape != lead + (l * s,):
        raise ValueError(f"cotangent must have shape (..., l s)={lead + (l * s,)} to match x and w2; got shape {c.shape}")
    N = int(np.prod(lead, dtype=np.int64))
    xs = x.reshape(N, k, p)
    y = np.einsum("kqp,nkp->nkq", w1, xs)
    z = np.swapaxes(y.reshape(N, r, l), -1, -2)  # (N, l, r)
    c_o = np.swapaxes(c.reshape(N, s, l), -1, -2)  # (N, l, s)
    dw2 = np.einsum("nls,nlr->lsr", c_o, z)
    c_z = np.einsum("lsr,nls->nlr", w2, c_o)
    c_y = np.swapaxes(c_z, -1, -2).reshape(N, k, q)
    dw1 = np.einsum("nkq,nkp->kqp", c_y, xs)
    c_x = np.einsum("kqp,nkq->nkp", w1, c_y).reshape(x.shape)
    grads = {"x": np.conj(c_x), "w1": np.conj(dw1), "w2": np.conj(dw2)}
    real = {"x": not np.iscomplexobj(x), "w1": not np.iscomplexobj(w1), "w2": not np.iscomplexobj(w2)}
    return {name: g.real if real[name] else g for name, g in grads.items()}
