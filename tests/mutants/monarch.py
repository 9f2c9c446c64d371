"""Deliberately wrong Monarch code: each must be rejected by a claim. Each is one bug of the
kind structured-matrix code hits: the middle reshuffle left out (a rearrange read ``(l r)`` where
it is ``(r l)``), the twiddles left out of the DFT's second factor or given the wrong sign, the
singular value given whole to both factors, a rank-1 "projection" from a block's first column,
the transpose's blocks left untransposed, a block-diagonal factor's blocks read transposed, and
an FFT convolution without its zero padding (circular)."""

import numpy as np

from seqcheck.reference import monarch as ref


def factored_without_the_middle_shuffle(x, w1, w2):
    """The (k q) vector read as (l, r) directly, not as (r, l) transposed."""
    k, q, p = np.shape(w1)
    l, s, r = np.shape(w2)
    x = np.asarray(x)
    lead = x.shape[:-1]
    y = np.einsum("kqp,...kp->...kq", w1, x.reshape(lead + (k, p)))
    o = np.einsum("lsr,...lr->...ls", w2, y.reshape(lead + (l, r)))
    return np.swapaxes(o, -1, -2).reshape(lead + (s * l,))


def dft_without_twiddles(x):  # noqa: D401
    """The second factor's blocks F_A without the twiddles omega_n^{l j}."""
    x = np.asarray(x)
    n = x.shape[-1]
    w1, w2, perm = ref.dft_factors(n)
    A = w2.shape[1]
    s, j = np.arange(A)[:, None], np.arange(A)[None, :]
    plain = np.broadcast_to(np.exp(-2j * np.pi * ((s * j) % A) / A), w2.shape)
    return ref.monarch_multiply(x[..., perm], w1, plain)


def dft_mp_with_the_twiddles_conjugated(n, sizes=None, *, dps=50):
    """The twiddle omega_n^{l k} with the wrong sign (an inverse transform's)."""
    import mpmath

    M, F = ref.dft_mp(n, sizes, dps=dps)
    A, B = sizes
    with mpmath.workdps(dps):
        for o in range(n):
            s, l = divmod(o, B)
            for c in range(n):
                k, _ = divmod(c, B)
                M[o, c] = M[o, c] * mpmath.exp(4j * mpmath.pi * mpmath.mpf((l * k) % n) / n)
    return M, F


def project_with_sigma_to_both(M, sizes=None):
    """sigma_1 given whole to both factors, not sqrt(sigma_1) to each."""
    w1, w2 = ref.monarch_project(M, sizes)
    scale1 = np.linalg.norm(w1, axis=-1, keepdims=True)  # sqrt(sigma) per block
    return w1 * scale1, w2


def project_from_the_first_column(M, sizes=None):
    """A rank-1 fit of each block from its first column and first row (exact on rank-1 blocks,
    not the nearest otherwise)."""
    M = np.asarray(M, dtype=np.float64)
    n = M.shape[0]
    A, B = sizes
    blocks = M.reshape(n // B, B, A, n // A).transpose(1, 2, 0, 3)  # (k, r, p, s)
    column, row = blocks[..., :, 0], blocks[..., 0, :]
    pivot = np.where(blocks[..., 0, 0] == 0, 1.0, blocks[..., 0, 0])
    u, v = column, row / pivot[..., None]
    return np.swapaxes(v, 0, 1), np.swapaxes(u, 1, 2)


def transpose_without_transposing_the_blocks(w1, w2):
    """The factors' roles exchanged, each block left as it was."""
    return np.asarray(w2), np.asarray(w1)


def compose_with_the_blocks_transposed(w1, w2, D):
    """w1[k] D[k]^T where w1[k] D[k] belongs (D read in the other index order)."""
    return np.einsum("kqp,kjp->kqj", np.asarray(w1), np.asarray(D)), np.asarray(w2)


def fft_conv_without_padding(u, K, D=None):
    """The Monarch FFT convolution at n = T (M2's fft_size = L, not 2L): circular, it wraps around."""
    u, K = np.asarray(u, dtype=np.float64), np.asarray(K, dtype=np.float64)
    T = u.shape[1]
    if T == 0:
        return np.zeros_like(u)
    w1, w2, perm = ref.dft_factors(T)
    kernel = np.zeros((K.shape[0], T))
    kernel[:, :min(T, K.shape[1])] = K[:, :T]
    signal = np.swapaxes(u, 1, 2)
    spectrum = ref.monarch_multiply(signal[..., perm], w1, w2) * ref.monarch_multiply(kernel[:, perm], w1, w2)
    y = ref.monarch_multiply(spectrum[..., perm], w1.conj(), w2.conj()).real / T
    return np.swapaxes(y, 1, 2) + (0 if D is None else np.asarray(D) * u)


MUTANTS = {
    "monarch.matrix.factored == monarch.matrix.dense": factored_without_the_middle_shuffle,
    "monarch.dft.monarch == monarch.dft.direct": dft_without_twiddles,
    "monarch.dft.exact": dft_mp_with_the_twiddles_conjugated,
    "monarch.project.idempotent": project_with_sigma_to_both,
    "monarch.project.optimal": project_from_the_first_column,
    "monarch.matrix.transpose": transpose_without_transposing_the_blocks,
    "monarch.matrix.composition": compose_with_the_blocks_transposed,
    "monarch.conv.monarch_fft == monarch.conv.direct": fft_conv_without_padding,
}
"""The mutant each claim of the family must reject, by claim key."""


def vjp_without_the_inverse_shuffle(x, w1, w2, *, cotangent):
    """The backward that reshapes c_z (l, r) straight into (k, q), the middle reshuffle not undone."""
    x, w1, w2, c = (np.asarray(a) for a in (x, w1, w2, cotangent))
    k, q, p = w1.shape
    l, s, r = w2.shape
    N = int(np.prod(x.shape[:-1]))
    xs = x.reshape(N, k, p)
    z = np.swapaxes(np.einsum("kqp,nkp->nkq", w1, xs).reshape(N, r, l), -1, -2)
    c_o = np.swapaxes(c.reshape(N, s, l), -1, -2)
    c_y = np.einsum("lsr,nls->nlr", w2, c_o).reshape(N, k, q)
    grads = {"x": np.einsum("kqp,nkq->nkp", w1, c_y).reshape(x.shape), "w1": np.einsum("nkq,nkp->kqp", c_y, xs),
             "w2": np.einsum("nls,nlr->lsr", c_o, z)}
    inputs = {"x": x, "w1": w1, "w2": w2}
    return {name: np.conj(g) if np.iscomplexobj(inputs[name]) else g.real for name, g in grads.items()}


MUTANTS["monarch.matrix.dense_backward"] = vjp_without_the_inverse_shuffle
