"""Sparse attention: the block-sparse computation against dense masked attention, BigBird's and
Longformer's masks; derived bounds, claims.

The float64 bound (u = 2**-53). Per query row, both forms compute the scores s_ij = scale q_i.k_j
(D terms, within (D + 2) u S_ij, S_ij = scale |q_i| |k_j|), subtract a maximum (the row's, or the
running one, rescaled by exp(m_old - m_new) once per visited tile), exponentiate, sum the
visible terms and apply them to v. The output moves by the weights' relative errors times the
spread of the values and by the sums' roundings, less than

    2 (D + Tk + n_tiles + 16) u sum_j P_ij (|v_j| + |o_i|) (1 + S_ij + max_j S_ij)

per position (``sparse_bound``), and lse within 2 (Tk + n_tiles + 16) u (1 + max S + |lse|). A
row with no visible key must give exactly 0 and lse -inf.

In a low precision both forms are judged against the definition evaluated in it with the mask
they stand for (``masked_attention_in_dtype``). The block-sparse FlashAttention kernel of
``seqcheck.gpu.flash_numba`` is registered against the block-sparse form.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.registry import (Claim, Form, Gradient, Implementation, register_claim, register_form,
                                     register_gradient, register_implementation, without)
from seqcheck.equiv.bounds import per_position, softmax_magnitude
from seqcheck.properties.arrays import for_form, generators
from seqcheck.properties.sparse import sparse_inputs
from seqcheck.reference import sparse as ref
from seqcheck.reference.arith import U64

AXES = (("batch", "query", "head", "channel"), ("batch", "query", "head"))


def _visible(args: dict) -> np.ndarray:
    """The token mask a form's arguments stand for."""
    if "mask" in args:
        return np.asarray(args["mask"])
    T_q, T_k = np.shape(args["q"])[1], np.shape(args["k"])[1]
    expanded = ref.expand_block_mask(args["block_mask"], args["block_size"], T_q, T_k)
    token = args.get("token_mask")
    return expanded if token is None else expanded & np.asarray(token)


def _expanded(args: dict) -> tuple:
    """q, and k, v with each kv head repeated for its query heads (GQA), float64; the group size."""
    q, k, v = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v"))
    group = q.shape[2] // k.shape[2]
    return q, np.repeat(k, group, axis=2), np.repeat(v, group, axis=2), group


def sparse_bound(args: dict, expected: tuple) -> tuple:
    """Per position: 2 n u sum_j P (|v| + |o|)(1 + S + max S) for out, 2 n u (1 + max S + |lse|)
    for lse (module docstring)."""
    q, k, v, _ = _expanded(args)
    D, Tk = q.shape[3], k.shape[1]
    scale = D ** -0.5 if args.get("scale") is None else float(args["scale"])
    visible = _visible(args)[None, None]  # (1, 1, Tq, Tk)
    tiles = -(-Tk // args["block_size"]) if "block_size" in args else 1
    s = scale * np.einsum("bihd,bjhd->bhij", q, k)
    top = np.where(visible, s, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    w = np.where(visible, np.exp(np.where(visible, s - np.where(np.isfinite(top), top, 0.0), 0.0)), 0.0)
    total = w.sum(axis=-1, keepdims=True)
    P = w / np.where(total > 0, total, 1.0)
    o = np.einsum("bhij,bjhe->bhie", P, v)
    S = np.where(visible, scale * np.einsum("bihd,bjhd->bhij", np.abs(q), np.abs(k)), 0.0)
    S_max = S.max(axis=-1, keepdims=True, initial=0.0)
    growth = P * (1 + S + S_max)
    magnitude = np.einsum("bhij,bjhe->bhie", growth, np.abs(v)) + np.abs(o) * growth.sum(axis=-1, keepdims=True)
    n = D + Tk + tiles + 16
    out = 2 * n * U64 * magnitude.max(axis=(0, 1, 3), initial=0.0)
    bounds = (out,)
    if len(expected) > 1:
        lse = np.where(np.isfinite(expected[1]), np.abs(expected[1]), 0.0)  # (B, Tq, H)
        bounds += (2 * n * U64 * (1 + S_max[..., 0].max(axis=(0, 1), initial=0.0) + lse.max(axis=(0, 2), initial=0.0)),)
    return bounds


def _plain(args: dict, dtype) -> tuple:
    """The definition in ``dtype`` with the mask the arguments stand for."""
    result = ref.masked_attention_in_dtype(args["q"], args["k"], args["v"], _visible(args), dtype=dtype,
                                           scale=args.get("scale"), return_lse=args["return_lse"])
    return result if isinstance(result, tuple) else (result,)


def sparse_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale per query row: ``bounds.softmax_magnitude`` with P the
    definition's weights under the mask the arguments stand for and sigma_tj = |scale| |q_t||k_j|
    (a kernel's exp(s - lse) and its scores' dot products err by that much relatively)."""
    q, k, v, _ = _expanded(args)
    D = q.shape[3]
    scale = D ** -0.5 if args.get("scale") is None else float(args["scale"])
    visible = _visible(args)[None, :, None, :]  # (1, Tq, 1, Tk)
    s = scale * np.einsum("bihd,bjhd->bihj", q, k)
    top = np.where(visible, s, -np.inf).max(axis=-1, keepdims=True, initial=-np.inf)
    w = np.where(visible, np.exp(np.where(visible, s - np.where(np.isfinite(top), top, 0.0), 0.0)), 0.0)
    total = w.sum(axis=-1, keepdims=True)
    sigma = abs(scale) * np.einsum("bihd,bjhd->bihj", np.abs(q), np.abs(k))
    with np.errstate(divide="ignore"):
        lse = np.where(total > 0, top + np.log(np.where(total > 0, total, 1.0)), -np.inf)[..., 0]
    return softmax_magnitude(w / np.where(total > 0, total, 1.0), sigma, v, lse, D, expected)


MAGNITUDE_RULE = ("each row's magnitude (sqrt(n_t) + |lse_t|) sum_j P_tj |v_j| + sqrt(sum_j W_tj sum_j W_tj (v_j - out_t)^2), "
                  "W_tj = P_tj (sqrt(D) sigma_tj + s_t,max - s_tj), sigma_tj = |scale| |q_t||k_j|, over the visible "
                  "keys (lse: 1 + |lse_t| + sqrt(D) sum_j P_tj sigma_tj)")

RULE = ("derived float64 bound: 2 (D + Tk + tiles + 16) u sum_j P (|v_j| + |o|)(1 + S_j + max S), S_j = scale "
        "|q||k_j|; lse 2 (...) u (1 + max S + |lse|); an empty row exactly 0 and -inf")

for key, fn, form, statement in (
        ("sparse.attention.masked", ref.masked_attention, "masked",
         "softmax attention over the visible keys of a token mask, the definition; an empty row gives 0 and -inf"),
        ("sparse.attention.block_sparse", ref.block_sparse_attention, "block_sparse",
         "block-sparse attention: tiles of b visited only where the block mask is set (the last ones partial when b "
         "does not divide T), the token mask inside, online softmax across a row's visited tiles")):
    register_form(Form(key=key, fn=fn, inputs=for_form(sparse_inputs, form, unused=("block_size",) * (form == "masked")),
                       bound=sparse_bound, rule=RULE, statement=statement, plain=_plain, magnitude=sparse_magnitude,
                       magnitude_rule=MAGNITUDE_RULE, data_args=("q", "k", "v"),
                       outputs=("out", "lse"), axes=AXES))


def _dense(impl, args: dict) -> tuple:
    """The block-sparse computation against the definition with the mask it stands for."""
    got = impl(**args)
    expected = ref.masked_attention(args["q"], args["k"], args["v"], _visible(args), scale=args.get("scale"),
                                    return_lse=args["return_lse"])
    as_tuple = lambda r: tuple(np.asarray(a) for a in (r if isinstance(r, tuple) else (r,)))  # noqa: E731
    return as_tuple(got), as_tuple(expected)


register_claim(Claim(
    key="sparse.block_sparse.dense_equivalence",
    statement="block-sparse attention equals dense masked softmax attention with the mask its block and token "
              "masks stand for, for every block size (T not a multiple of it: the FlexAttention block-mask bug "
              "class, pytorch #141126) and every pattern (random, BigBird, Longformer, causal); a row whose blocks "
              "are all empty gives 0 and lse -inf",
    subject="sparse.attention.block_sparse",
    default_impl=ref.block_sparse_attention,
    relation=_dense,
    inputs=lambda: sparse_inputs(form="block_sparse"),
    bound=sparse_bound,
    rule=RULE,
    outputs=("out", "lse"),
))


# ----------------------------------------------------------------------------- the masks


@st.composite
def _bigbird_inputs(draw):
    return {"blocks": draw(st.integers(1, 12)), "random_blocks": draw(st.integers(0, 3)),
            "seed": draw(st.integers(0, 2**32 - 1))}


def _bigbird_structure(impl, args: dict) -> tuple:
    """The mask twice from the same seed, and per row: global rows and columns full, the window
    i - 1 .. i + 1 (clipped), exactly min(r, candidates) other blocks in rows 1 .. n - 2."""
    first, again = np.asarray(impl(**args)), np.asarray(impl(**args))
    n, r = args["blocks"], args["random_blocks"]
    i = np.arange(n)
    fixed = (np.abs(i[:, None] - i[None, :]) <= 1) | np.isin(i, [0, n - 1])[:, None] | np.isin(i, [0, n - 1])[None, :]
    extra = (first & ~fixed).sum(axis=1)
    candidates = np.array([sum(1 for j in range(1, n - 1) if abs(j - row) > 1) for row in range(n)])
    wanted = np.where((i > 0) & (i < n - 1), np.minimum(r, candidates), 0)
    lhs = (again.astype(float), (first & fixed).astype(float), extra.astype(float))
    return lhs, (first.astype(float), fixed.astype(float), wanted.astype(float))


register_claim(Claim(
    key="sparse.bigbird.structure",
    statement="BigBird's block mask: the same seed gives the same mask; blocks 0 and n - 1 global as rows and "
              "columns; every row its window i - 1 .. i + 1, clipped, never wrapping; rows 1 .. n - 2 exactly "
              "min(r, candidates) random blocks outside the window and the global blocks",
    subject="sparse.bigbird.block_mask",
    default_impl=ref.bigbird_block_mask,
    relation=_bigbird_structure,
    inputs=_bigbird_inputs,
    bound=None,
    rule="exact",
    exactness="exact",
    outputs=("same_seed", "fixed_blocks", "random_per_row"),
    time_axis=0,
))


@st.composite
def _longformer_inputs(draw):
    T = draw(st.integers(1, 16))
    tokens = sorted(set(draw(st.lists(st.integers(0, T - 1), max_size=3))))
    return {"length": T, "window": draw(st.integers(0, 4)), "global_tokens": np.asarray(tokens, dtype=np.int64)}


def _longformer_structure(impl, args: dict) -> tuple:
    """|i - j| <= w, or i or j global."""
    T, w, tokens = args["length"], args["window"], args["global_tokens"]
    i = np.arange(T)
    is_global = np.isin(i, tokens)
    expected = (np.abs(i[:, None] - i[None, :]) <= w) | is_global[:, None] | is_global[None, :]
    return (np.asarray(impl(**args)).astype(float),), (expected.astype(float),)


register_claim(Claim(
    key="sparse.longformer.symmetric_global",
    statement="Longformer's mask: query i sees key j where |i - j| <= w (w one side's width), and global tokens see "
              "every key and are seen by every query",
    subject="sparse.longformer.mask",
    default_impl=ref.longformer_mask,
    relation=_longformer_structure,
    inputs=_longformer_inputs,
    bound=None,
    rule="exact",
    exactness="exact",
    time_axis=0,
))


# ----------------------------------------------------------------------------- gradients

GRADIENT_WRT = ("q", "k", "v")


def _dense_vjp(**args) -> dict:
    """The definition's backward with the mask a form's arguments stand for."""
    return ref.masked_attention_vjp(args["q"], args["k"], args["v"], _visible(args), scale=args.get("scale"),
                                    cotangent=args["cotangent"], lse_cotangent=args.get("lse_cotangent"))


def grad_bound(args: dict, expected: tuple = ()) -> tuple:
    """2 n u times the backward's magnitudes, n = D + Dv + Tq + Tk + tiles + group + 16 (a kv head's
    gradients sum over its query heads): with G = 1 + S +
    max S (the weights' relative error factor), M_dS = P (G (|dP| + |D|) + |dO||V|^T + |dO||O| +
    |dlse|), dQ = scale (M_dS + |dS|) |K|, dK = scale (M_dS + |dS|)^T |Q|, dV = (P G)^T |dO|."""
    q, k, v, group = _expanded(args)
    c = np.asarray(args["cotangent"], dtype=np.float64)
    dl = np.zeros(q.shape[:3]) if args.get("lse_cotangent") is None else np.asarray(args["lse_cotangent"])
    B, Tq, H, D = q.shape
    Tk, Dv = k.shape[1], v.shape[3]
    scale = D ** -0.5 if args.get("scale") is None else float(args["scale"])
    visible = _visible(args)[None, None]
    tiles = -(-Tk // args["block_size"]) if "block_size" in args else 1
    out, lse = ref.masked_attention(q, k, v, _visible(args), scale=scale, return_lse=True)  # k, v expanded
    s = scale * np.einsum("bihd,bjhd->bhij", q, k)
    shift = np.swapaxes(np.where(np.isfinite(lse), lse, 0.0), 1, 2)[..., None]
    P = np.where(visible, np.exp(np.where(visible, s - shift, 0.0)), 0.0)
    S = np.where(visible, scale * np.einsum("bihd,bjhd->bhij", np.abs(q), np.abs(k)), 0.0)
    G = 1 + S + S.max(axis=-1, keepdims=True, initial=0.0)
    dP = np.einsum("bihe,bjhe->bhij", c, v)
    Dr = np.swapaxes((c * out).sum(axis=-1) - dl, 1, 2)[..., None]
    M_D = np.swapaxes((np.abs(c) * np.abs(out)).sum(axis=-1) + np.abs(dl), 1, 2)[..., None]
    M_dS = P * (G * (np.abs(dP) + np.abs(Dr)) + np.einsum("bihe,bjhe->bhij", np.abs(c), np.abs(v)) + M_D)
    dS = np.abs(P * (dP - Dr))
    n = 2 * (D + Dv + Tq + Tk + tiles + group + 16) * U64
    M_dq = scale * np.einsum("bhij,bjhd->bihd", M_dS + dS, np.abs(k))
    M_dk = _fold(scale * np.einsum("bhij,bihd->bjhd", M_dS + dS, np.abs(q)), group)
    M_dv = _fold(np.einsum("bhij,bihe->bjhe", P * G, np.abs(c)), group)
    return tuple(n * per_position(M) for M in (M_dq, M_dk, M_dv))


def _fold(magnitude: np.ndarray, group: int) -> np.ndarray:
    """A kv head's magnitude: the sum over its query heads."""
    B, Tk, H, n = magnitude.shape
    return magnitude.reshape(B, Tk, H // group, group, n).sum(axis=3)


GRADIENT_RULE = ("derived float64 bound: 2 (D + Dv + Tq + Tk + tiles + group + 16) u times the backward's magnitudes "
                 "(P (1 + S + max S) through dS = P (dP - D), dQ, dK, dV)")

for key in ("sparse.attention.masked", "sparse.attention.block_sparse"):
    register_gradient(Gradient(form=key, vjp=_dense_vjp, wrt=GRADIENT_WRT, cotangents=("cotangent", "lse_cotangent"),
                               bound=grad_bound, rule=GRADIENT_RULE, axes=(("batch", "query", "head", "channel"),
                                                                           ("batch", "key", "head", "channel"),
                                                                           ("batch", "key", "head", "channel"))))


@st.composite
def _backward_inputs(draw):
    args = draw(sparse_inputs(form="block_sparse", return_lse=True))
    rng = draw(generators())
    rows = args["q"].shape[:3]  # (B, Tq, H)
    return {**without(args, ("return_lse",)), "cotangent": rng.standard_normal(rows + args["v"].shape[3:]),
            "lse_cotangent": rng.standard_normal(rows)}


register_claim(Claim(
    key="sparse.block_sparse.backward",
    statement="the block-sparse backward (P recomputed per visited tile from the forward's lse, dK and dV per key "
              "tile, dQ per query tile) equals the dense masked backward, for every block size (T not a multiple "
              "of it included) and with rows that see no key (no NaN: FlexAttention's backward gave NaN there, "
              "pytorch #153799)",
    subject="sparse.attention.block_sparse_vjp",
    default_impl=ref.block_sparse_attention_vjp,
    relation=lambda vjp, args: (tuple(vjp(**args)[n] for n in GRADIENT_WRT),
                                tuple(_dense_vjp(**args)[n] for n in GRADIENT_WRT)),
    inputs=_backward_inputs,
    bound=grad_bound,
    rule=GRADIENT_RULE,
    outputs=("dq", "dk", "dv"),
))


# ----------------------------------------------------------------------------- GPU implementations

def _block_sparse_numba_inputs(simulated: bool):
    """Simulated: B = 1, T <= 6, H <= 4 (GQA groups of 1 or 2), D <= 4, tiles of 1 to 4 (ragged last
    tiles); on a GPU: T <= 200, groups up to 4, D <= 64, tiles of 16 or 32."""
    tiny = dict(batch=1, seq_len=st.integers(1, 6), kv_heads=st.integers(1, 2), group=st.integers(1, 2),
                head_dim=st.integers(1, 4), block_size=st.integers(1, 4))
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 200), kv_heads=st.integers(1, 2),
                    group=st.integers(1, 4), head_dim=st.integers(1, 64), block_size=st.sampled_from([16, 32]))
    return sparse_inputs(form="block_sparse", **(tiny if simulated else moderate))


register_implementation(Implementation(
    name="numba_cuda.block_sparse_attention",
    form="sparse.attention.block_sparse",
    target="flash_numba:block_sparse_attention",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_block_sparse_numba_inputs,
))
