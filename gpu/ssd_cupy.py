"""Mamba-2's chunked SSD on cuBLAS: the four steps of ``ssd_minimal_discrete`` as batched matmuls.

Written against an array module ``xp`` (CuPy on a GPU, NumPy in CI): no raw CUDA kernel is
needed, every step is a batched matrix product (cuBLAS under CuPy), an elementwise exp or a
cumsum. Layout as the form "mamba.ssd.chunked": x (B, T, H, P), dt (B, T, H), A (H,), B and C
(B, T, G, N) with head h reading group h // (H / G), initial and final state (B, H, P, N).

With Q = chunk_size and n = ceil(T / Q) chunks (the ragged tail padded with steps that neither
decay nor add: dt = 0, x = B = C = 0), per batch, group g and head r of the group:

    1. diagonal blocks   Y_diag = ((C_c B_c^T) o L_c) X_c,   L_c = exp(segsum(dt A))   (Q x Q)
    2. chunk states      S_c = (X_c o L_c[-1])^T B_c                                    (P x N)
    3. between chunks    h = exp(segsum([0, sum_c dt A])) [h0; S_1 .. S_n]          (n+1 x n+1)
    4. state to output   Y_off = (C_c h_{c-1}^T) o exp(cumsum_c(dt A))

Float32 (and float64 for float64 inputs) throughout; float16 inputs are widened to float32 on
the device and the output is rounded back to float16 (the state stays float32, as Mamba's
kernels return it). The output and state buffers are filled with NaN before any step writes
them, so a slice the algorithm forgets to write shows as NaN in the check.
"""

from __future__ import annotations

from seqcheck.gpu.xp import array_module, compute_dtype, nan_filled, to_device, to_host


def ssd_chunked(x, dt, A, B, C, *, chunk_size, initial_state=None, return_state=False, xp=None):
    """Host wrapper with the form's signature: NumPy (or device) arrays in, NumPy arrays out.

    Returns y (B, T, H, P) in x's dtype, and the final state (B, H, P, N) if return_state.
    """
    xp = array_module(xp)
    out_dtype = x.dtype
    work = compute_dtype(out_dtype)
    x, dt, B, C, A = (to_device(a, xp, work) for a in (x, dt, B, C, A))
    h0 = to_device(initial_state, xp, work)
    y, state = ssd_chunked_device(x, dt, A, B, C, int(chunk_size), h0, xp)
    y = to_host(y.astype(out_dtype, copy=False))
    return (y, to_host(state)) if return_state else y


def ssd_chunked_device(x, dt, A, B, C, chunk_size, h0, xp, *, pass_states=None, write=None):
    """The four steps on device arrays of one dtype; returns (y, final state).

    ``pass_states`` and ``write`` replace step 3 and the output write (``pass_chunk_states``,
    ``write_chunks``): the tests' mutants swap one of them for a wrong one.
    """
    pass_states = pass_chunk_states if pass_states is None else pass_states
    write = write_chunks if write is None else write
    batch, T, H, P = x.shape
    G, N = B.shape[2:]
    R, Q = H // G, chunk_size
    if Q < 1:
        raise ValueError(f"chunk_size must be an int >= 1; got {Q}")
    n = -(-T // Q)

    def chunks(a):  # (B, T, ...) -> (B, n, Q, ...), the tail padded with zeros
        pad = [(0, 0)] * a.ndim
        pad[1] = (0, n * Q - T)
        return xp.pad(a, pad).reshape((batch, n, Q) + a.shape[2:])

    # (B, n, G, R, Q, P), (B, n, G, Q, N), log decays (B, n, G, R, Q)
    X = chunks(x * dt[..., None]).reshape(batch, n, Q, G, R, P).transpose(0, 1, 3, 4, 2, 5)
    Bc = chunks(B).transpose(0, 1, 3, 2, 4)
    Cc = chunks(C).transpose(0, 1, 3, 2, 4)
    logs = chunks(dt * A).reshape(batch, n, Q, G, R).transpose(0, 1, 3, 4, 2)

    L = xp.exp(segsum(logs, xp))  # (B, n, G, R, Q, Q)
    # 1. diagonal blocks: one Q x N x Q product per group, one Q x Q x P per head
    scores = Cc @ xp.swapaxes(Bc, -1, -2)  # (B, n, G, Q, Q)
    Y = (scores[:, :, :, None] * L) @ X
    # 2. each chunk's state from its own inputs, decayed to the chunk's end
    states = xp.swapaxes(X * L[..., -1, :, None], -1, -2) @ Bc[:, :, :, None]  # (B, n, G, R, P, N)
    # 3. the state entering each chunk, and the final one
    if h0 is None:
        h0 = xp.zeros((batch, H, P, N), dtype=x.dtype)
    entering, final = pass_states(states, logs.sum(axis=-1), h0.reshape(batch, G, R, P, N), xp)
    # 4. the entering state's contribution, decayed from the chunk's start
    Y += (Cc[:, :, :, None] @ xp.swapaxes(entering, -1, -2)) * xp.exp(xp.cumsum(logs, axis=-1))[..., None]

    out = nan_filled(xp, (batch, n * Q, H, P), x.dtype)
    write(out.reshape(batch, n, Q, G, R, P).transpose(0, 1, 3, 4, 2, 5), Y)
    state = nan_filled(xp, (batch, H, P, N), x.dtype)
    state.reshape(batch, G, R, P, N)[...] = final
    return out[:, :T], state


def segsum(a, xp):
    """exp(segsum(a))'s exponent, (..., Q) -> (..., Q, Q): sum_{j < r <= i} a_r below the
    diagonal, 0 on it, -inf above; a cumsum of masked increments (ssd_minimal's stable segsum),
    never a difference of prefix sums."""
    Q = a.shape[-1]
    below = xp.tril(xp.ones((Q, Q), dtype=bool), -1)
    sums = xp.cumsum(xp.where(below, a[..., :, None], 0), axis=-2)
    return xp.where(xp.tril(xp.ones((Q, Q), dtype=bool)), sums, -xp.inf)


def pass_chunk_states(states, chunk_logs, h0, xp):
    """Step 3 as one matmul over chunks: states (B, n, G, R, P, N), chunk_logs (B, n, G, R) (the
    sum of a chunk's log decays), h0 (B, G, R, P, N). Returns the state entering each chunk
    (B, n, G, R, P, N) and the final state (B, G, R, P, N)."""
    batch, n, G, R, P, N = states.shape
    logs = xp.concatenate([xp.zeros_like(chunk_logs[:, :1]), chunk_logs], axis=1)  # (B, n+1, G, R)
    decay = xp.exp(segsum(logs.transpose(0, 2, 3, 1), xp))  # (B, G, R, n+1, n+1)
    stacked = xp.concatenate([h0[:, None], states], axis=1)  # (B, n+1, G, R, P, N)
    stacked = stacked.transpose(0, 2, 3, 1, 4, 5).reshape(batch, G, R, n + 1, P * N)
    passed = (decay @ stacked).reshape(batch, G, R, n + 1, P, N).transpose(0, 3, 1, 2, 4, 5)
    return passed[:, :-1], passed[:, -1]


def write_chunks(out, Y):
    """Write every chunk's outputs into the (NaN-filled) output view."""
    out[...] = Y
