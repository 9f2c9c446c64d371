"""Softmax attention and FlashAttention: forms, derived float64 bounds, claims, sweeps.

The float64 bound (docs/tolerance.md derives it): with u = 2**-53, each form computes row t's
output within ``u * vmax * (4 (D+3) sigma_t + 4 Tk + 8)`` of the exact value, where ``sigma_t``
bounds the magnitude of row t's scores (``scale * sum_d |q_td| |k_sd|`` plus |ALiBi bias| plus
the softcap) and ``vmax = max |v|``; two forms differ by at most twice that. The log-sum-exp
bound is ``2 u (2 (D+3) sigma_t + |lse_t| + Tk + 4)``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from seqcheck.equiv.bounds import softmax_magnitude
from seqcheck.equiv.registry import (Claim, Form, Gradient, Implementation, Sweep, register_claim, register_form,
                                     register_gradient, register_implementation, without)
from seqcheck.properties.attention import (attention_inputs, flash_backward_inputs, flash_inputs, split_kv_inputs,
                                           windows)
from seqcheck.reference import attention as ref
from seqcheck.reference.arith import U64

U_MP50 = 10.0**-50
BLOCK_ARGS = ("block_q", "block_k")
ATTENTION_OPTIONS = ("scale", "causal", "window", "key_padding_mask", "alibi_slopes", "softcap", "return_lse")


def _row_sigma(args: dict) -> np.ndarray:
    """sigma_t (Tq,): a bound on the magnitude of row t's scores, scale * sum_d |q_td| |k_sd|
    plus |ALiBi bias| plus the softcap, maximised over batch, heads and keys."""
    q, k = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k"))
    D, Tk, H, Hkv = q.shape[3], k.shape[1], q.shape[2], k.shape[2]
    scale = args.get("scale") or 1.0 / np.sqrt(D)
    k_per_head = np.repeat(np.abs(k), H // Hkv, axis=2)
    sigma = abs(scale) * np.einsum("bthd,bshd->bts", np.abs(q), k_per_head) if Tk else np.zeros(q.shape[:2] + (0,))
    sigma = sigma.max(axis=(0, 2), initial=0.0)
    if args.get("alibi_slopes") is not None:
        sigma = sigma + np.abs(args["alibi_slopes"]).max() * (Tk + q.shape[1])
    if args.get("softcap"):
        sigma = sigma + args["softcap"]
    return sigma


def attention_bound(args: dict, expected: tuple, unit_roundoff: float = U64) -> tuple:
    """Per-row bound on the difference of two correct forms (out, and lse when returned)."""
    q, k, v = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v"))
    D, Tk = q.shape[3], k.shape[1]
    sigma = _row_sigma(args)
    vmax = np.abs(v).max(initial=0.0)
    out = 2 * unit_roundoff * vmax * (4 * (D + 3) * sigma + 4 * Tk + 8)
    if len(expected) == 1:
        return (out,)
    lse = np.where(np.isfinite(expected[1]), np.abs(expected[1]), 0.0).max(axis=(0, 2), initial=0.0)
    return out, 2 * unit_roundoff * (2 * (D + 3) * sigma + lse + Tk + 4)


ATTENTION_RULE = "derived float64 bound: 2u vmax (4(D+3) sigma_t + 4Tk + 8) per row (lse: 2u(2(D+3) sigma_t + |lse_t| + Tk + 4))"


def _probabilities(args: dict) -> np.ndarray:
    """P (B, Tq, H, Tk): softmax attention with one-hot values (v_j = e_j) returns row t's
    weights P_tj as its output."""
    k = np.asarray(args["k"], dtype=np.float64)
    B, Tk, Hkv = k.shape[:3]
    one_hot = np.broadcast_to(np.eye(Tk)[None, :, None, :], (B, Tk, Hkv, Tk))
    options = {name: value for name, value in args.items() if name in ATTENTION_OPTIONS}
    return ref.softmax_attention(args["q"], k, one_hot, **{**options, "return_lse": False})


def attention_magnitude(args: dict, expected: tuple) -> tuple:
    """Per query row, the typical size of the rounding error of an evaluation of the definition in
    any summation order, in units of the unit roundoff (``bounds.softmax_magnitude``), with
    sigma_tj = |scale| sum_d |q_td| |k_jd| (+ |ALiBi bias| + softcap) bounding the score s_tj."""
    q, k, v = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v"))
    group = q.shape[2] // k.shape[2]
    scale = args.get("scale") or 1.0 / np.sqrt(q.shape[3])
    sigma = abs(scale) * np.einsum("bthd,bshd->bths", np.abs(q), np.repeat(np.abs(k), group, axis=2))
    if args.get("alibi_slopes") is not None:
        sigma = sigma + np.abs(args["alibi_slopes"]).max() * (k.shape[1] + q.shape[1])
    if args.get("softcap"):
        sigma = sigma + args["softcap"]
    options = {name: value for name, value in args.items() if name in ATTENTION_OPTIONS}
    _, lse = ref.softmax_attention(q, k, v, **{**options, "return_lse": True})
    return softmax_magnitude(_probabilities(args), sigma, np.repeat(v, group, axis=2), lse, q.shape[3], expected)


ATTENTION_MAGNITUDE_RULE = ("each row's magnitude (sqrt(n_t) + |lse_t|) sum_j P_tj |v_j| + sqrt(sum_j W_tj sum_j W_tj (v_j - out_t)^2), "
                            "W_tj = P_tj (sqrt(D) sigma_tj + s_t,max - s_tj), n_t keys seen "
                            "(lse: 1 + |lse_t| + sqrt(D) sum_j P_tj sigma_tj)")


def _plain(args: dict, dtype) -> tuple:
    result = ref.attention_in_dtype(**args, dtype=dtype)
    return result if isinstance(result, tuple) else (result,)


def _sweep_args(T: int, rng, *, block: int = 64) -> dict:
    """The report's sweeps: B=1, H=4, D=64, causal, blocks of 64 (T=256 when the block varies)."""
    B, H, D = 1, 4, 64
    return {"q": rng.standard_normal((B, T, H, D)), "k": rng.standard_normal((B, T, H, D)),
            "v": rng.standard_normal((B, T, H, D)), "causal": True, "block_q": block, "block_k": block}


SWEEP_T = Sweep("T", "sequence length T (B=1, H=4, D=64, causal, blocks of 64)", (16, 64, 256, 1024),
                lambda T, rng: _sweep_args(T, rng))
SWEEP_BLOCK = Sweep("block", "block size (T=256, B=1, H=4, D=64, causal)", (1, 4, 16, 64, 256),
                    lambda block, rng: _sweep_args(256, rng, block=block))

register_form(Form(
    key="attention.softmax.parallel",
    fn=ref.softmax_attention,
    inputs=attention_inputs,
    bound=attention_bound,
    rule=ATTENTION_RULE,
    statement="softmax attention, the definition: softmax(scale q k^T + bias, masked) v",
    plain=_plain,
    magnitude=attention_magnitude,
    magnitude_rule=ATTENTION_MAGNITUDE_RULE,
    data_args=("q", "k", "v"),
    outputs=("out", "lse"),
    axes=(("batch", "query", "head", "channel"), ("batch", "query", "head")),
))

register_form(Form(
    key="attention.flash.tiled",
    fn=ref.flash_attention,
    inputs=flash_inputs,
    bound=attention_bound,
    rule=ATTENTION_RULE,
    statement="FlashAttention's tiled online softmax equals softmax attention for every block size and mask",
    oracle="attention.softmax.parallel",
    oracle_drop=BLOCK_ARGS,
    data_args=("q", "k", "v"),
    outputs=("out", "lse"),
    axes=(("batch", "query", "head", "channel"), ("batch", "query", "head")),
    sweeps=(SWEEP_T, SWEEP_BLOCK),
))

register_form(Form(
    key="attention.flash.split_kv",
    fn=ref.split_kv_attention,
    inputs=split_kv_inputs,
    bound=attention_bound,
    rule=ATTENTION_RULE,
    statement="split-KV attention (partials merged by their log-sum-exp) equals one softmax",
    oracle="attention.softmax.parallel",
    oracle_drop=("num_splits",),
    data_args=("q", "k", "v"),
    outputs=("out", "lse"),
    axes=(("batch", "query", "head", "channel"), ("batch", "query", "head")),
    sweeps=(Sweep("T", "sequence length T (B=1, H=4, D=64, causal, 4 splits)", (16, 64, 256, 1024),
                  lambda T, rng: {**without(_sweep_args(T, rng), BLOCK_ARGS), "num_splits": 4}),),
))


def _repeat_kv(args: dict) -> dict:
    group = args["q"].shape[2] // args["k"].shape[2]
    return {**args, "k": np.repeat(args["k"], group, axis=2), "v": np.repeat(args["v"], group, axis=2)}


register_claim(Claim(
    key="attention.softmax.gqa",
    statement="grouped-query attention equals multi-head attention with each kv head repeated for its group",
    subject="attention.softmax.parallel",
    default_impl=ref.softmax_attention,
    relation=lambda impl, args: (impl(**args), impl(**_repeat_kv(args))),
    inputs=lambda: attention_inputs(kv_heads=st.integers(1, 3), group=st.integers(2, 4)),
    bound=attention_bound,
    rule=ATTENTION_RULE,
    outputs=("out", "lse"),
))


def _shifted(args: dict) -> dict:
    """The same attention with one more feature (q: c/scale, k: 1): row (b, t, h) of the scores
    gains the constant c[b, t, h] = args["shift"][b, t, h]."""
    q, k = args["q"], args["k"]
    scale = args["scale"] or 1.0 / np.sqrt(q.shape[3])
    return {**without(args, ("shift",)), "scale": scale, "return_lse": True,
            "q": np.concatenate([q, (args["shift"] / scale)[..., None]], axis=3),
            "k": np.concatenate([k, np.ones(k.shape[:3] + (1,))], axis=3)}


def _shift_rows(impl, args: dict):
    plain = {**without(args, ("shift",)), "scale": args["scale"] or 1.0 / np.sqrt(args["q"].shape[3]),
             "return_lse": True}
    out, lse = impl(**plain)
    return impl(**_shifted(args)), (out, lse + args["shift"])


@st.composite
def _shift_inputs(draw):
    args = draw(attention_inputs(softcap=None))
    magnitude = draw(st.sampled_from([1.0, 1e3]))
    seed = draw(st.integers(0, 2**32 - 1))
    args["shift"] = np.random.default_rng(seed).uniform(-magnitude, magnitude, args["q"].shape[:3])
    return args


def _shift_bound(args: dict, expected: tuple) -> tuple:
    return attention_bound(_shifted(args), expected)


register_claim(Claim(
    key="attention.softmax.row_shift",
    statement="adding a constant to a row of scores leaves the output unchanged and shifts the lse by it",
    subject="attention.softmax.parallel",
    default_impl=ref.softmax_attention,
    relation=_shift_rows,
    inputs=_shift_inputs,
    bound=_shift_bound,
    rule=ATTENTION_RULE + ", with sigma_t including |c|",
    outputs=("out", "lse"),
))


def _mpmath_difference(impl, args: dict):
    flash = impl(**args)
    exact = ref.softmax_attention_mp(**without(args, BLOCK_ARGS + ("dps",)), dps=args["dps"])
    flash, exact = (flash, exact) if isinstance(flash, tuple) else ((flash,), (exact,))
    differences = tuple(np.vectorize(lambda a, b: float(a - b) if a != b else 0.0, otypes=[float])(f, e)
                        for f, e in zip(flash, exact))
    return differences, tuple(np.zeros(d.shape) for d in differences)


register_claim(Claim(
    key="attention.flash.mpmath",
    statement="FlashAttention's tiling is exact: at 50 digits it equals softmax attention to the precision's bound",
    subject="attention.flash.tiled (mpmath)",
    default_impl=ref.flash_attention_mp,
    relation=_mpmath_difference,
    inputs=lambda: flash_inputs(batch=1, q_len=st.integers(1, 5), k_len=st.integers(1, 6), kv_heads=1,
                                group=st.integers(1, 2), head_dim=st.integers(1, 3)).map(lambda a: {**a, "dps": 50}),
    bound=lambda args, expected: attention_bound(args, expected, U_MP50),
    rule="the float64 bound's formula with u = 1e-50 (50 significant digits)",
    exactness="mpmath, 50 digits",
    outputs=("out", "lse"),
))


def _torch_sdpa(impl, args: dict):
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.from_dlpack(np.ascontiguousarray(args[n].transpose(0, 2, 1, 3))) for n in ("q", "k", "v"))
    mask = None
    if args["key_padding_mask"] is not None:
        mask = torch.from_dlpack(np.ascontiguousarray(args["key_padding_mask"][:, None, None, :]))
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=args["causal"],
                                            scale=args["scale"], enable_gqa=True)
    ours = impl(**args)
    return (ours,), (theirs.numpy().transpose(0, 2, 1, 3),)


def _where_conventions_coincide(args: dict) -> dict:
    """torch aligns is_causal top-left and takes no mask with it: use causal only where Tq == Tk
    and no padding mask is given (there top-left and bottom-right alignment are the same)."""
    square = args["q"].shape[1] == args["k"].shape[1]
    return {**args, "causal": args["causal"] and square and args["key_padding_mask"] is None}


register_claim(Claim(
    key="attention.softmax.torch_sdpa",
    statement="softmax attention equals torch's scaled_dot_product_attention in float64 where the conventions coincide",
    subject="attention.softmax.parallel",
    default_impl=ref.softmax_attention,
    relation=_torch_sdpa,
    inputs=lambda: attention_inputs(window=None, alibi_slopes=None, softcap=None, return_lse=False).map(
        _where_conventions_coincide),
    bound=attention_bound,
    rule=ATTENTION_RULE,
    requires=("torch",),
))


# ----------------------------------------------------------------------------- gradients

GRADIENT_OPTIONS = ("scale", "causal", "window", "key_padding_mask", "alibi_slopes", "softcap")


def attention_grad_bound(args: dict, expected: tuple) -> tuple:
    """Per-position bound on two correct float64 evaluations of the gradients (dq per query
    position, dk and dv per key position). With P_ij exp(s_ij - lse_i) formed within a relative
    (D + 3) u (2 sigma_i) + u |lse_i| of exact (the forward bound's score error, sigma_i bounding
    row i's scores) and every sum over at most Tq + Tk + D + Dv terms:

        |d(dV_j)|  <= F sum_i P_ij |dO_i|
        |d(dQ_i)|  <= F |scale| sum_j A_ij |k_j|,   |d(dK_j)| <= F g |scale| sum_i A_ij |q_i|
        A_ij = P_ij (|dO_i| |v_j| + |dO_i| |out_i| + |dL_i|),   F = 4 (Tq + Tk + D + Dv + 4) eps (1 + 2 (D+3) sigma + |lse|)

    norms over the head dimension, maximised over batch and heads (g = H / Hkv query heads per kv
    head, whose gradients sum)."""
    q, k, v = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v"))
    B, Tq, H, D = q.shape
    Tk, Hkv, Dv = k.shape[1], k.shape[2], v.shape[3]
    group = H // Hkv
    options = {name: args.get(name) for name in GRADIENT_OPTIONS if name in args}
    out, lse = ref.softmax_attention(q, k, v, **options, return_lse=True)
    P = _probabilities({**args, **options})  # (B, Tq, H, Tk)
    scale = abs(args.get("scale") or 1.0 / np.sqrt(D))
    norm_do = np.linalg.norm(args["cotangent"], axis=-1)  # (B, Tq, H)
    dl = np.zeros((B, Tq, H)) if args.get("lse_cotangent") is None else np.abs(args["lse_cotangent"])
    norm_v = np.repeat(np.linalg.norm(v, axis=-1), group, axis=2)  # (B, Tk, H)
    A = P * (norm_do[..., None] * (np.moveaxis(norm_v, 1, 2)[:, None] + np.linalg.norm(out, axis=-1)[..., None])
             + dl[..., None])
    finite_lse = np.where(np.isfinite(lse), np.abs(lse), 0.0).max(initial=0.0)
    factor = 4 * (Tq + Tk + D + Dv + 4) * 2 * U64 * (1 + 2 * (D + 3) * _row_sigma(args).max(initial=0.0) + finite_lse)
    k_norm = np.repeat(np.linalg.norm(k, axis=-1), group, axis=2)  # (B, Tk, H)
    dq = factor * scale * np.einsum("bihj,bjh->bih", A, k_norm).max(axis=(0, 2), initial=0.0)
    dk = factor * group * scale * np.einsum("bihj,bih->bjh", A, np.linalg.norm(q, axis=-1)).max(axis=(0, 2), initial=0.0)
    dv = factor * group * np.einsum("bihj,bih->bjh", P, norm_do).max(axis=(0, 2), initial=0.0)
    return dq, dk, dv


def attention_grad_magnitude(args: dict, expected: tuple) -> tuple:
    """The low-precision floor's scale per position: the sizes of the terms each gradient sums,
    each weight P_ij counted with the condition of forming it, 1 + sqrt(D) sigma_ij - log P_ij (a
    score's D-term rounding and exp's argument, as the forward's magnitude):

        dq_i: |scale| sum_j W_ij |k_j|,   dk_j: |scale| sum_i W_ij |q_i|,   dv_j: sum_i P_ij (1 + ...) |dO_i|
        W_ij = P_ij (1 + sqrt(D) sigma_ij - log P_ij) (|dO_i| |v_j| + |dO_i| |out_i| + |dL_i|)

    (the terms of dS_ij = P_ij (dP_ij - D_i + dL_i) cancel where one key dominates, so the sizes
    are of the terms, not of dS)."""
    q, k, v = (np.asarray(args[name], dtype=np.float64) for name in ("q", "k", "v"))
    B, Tq, H, D = q.shape
    group = H // k.shape[2]
    options = {name: args.get(name) for name in GRADIENT_OPTIONS if name in args}
    out = ref.softmax_attention(q, k, v, **options)
    P = _probabilities({**args, **options})  # (B, Tq, H, Tk)
    scale = abs(args.get("scale") or 1.0 / np.sqrt(D))
    sigma = scale * np.einsum("bthd,bshd->bths", np.abs(q), np.repeat(np.abs(k), group, axis=2))
    if args.get("alibi_slopes") is not None:
        sigma = sigma + np.abs(args["alibi_slopes"]).max() * (k.shape[1] + Tq)
    if args.get("softcap"):
        sigma = sigma + args["softcap"]
    with np.errstate(divide="ignore"):
        condition = np.where(P > 0, 1 + np.sqrt(D) * sigma - np.log(np.where(P > 0, P, 1.0)), 0.0)
    weights = P * condition
    norm_do = np.linalg.norm(args["cotangent"], axis=-1)  # (B, Tq, H)
    dl = np.zeros((B, Tq, H)) if args.get("lse_cotangent") is None else np.abs(args["lse_cotangent"])
    norm_v = np.repeat(np.linalg.norm(v, axis=-1), group, axis=2)  # (B, Tk, H)
    W = weights * (norm_do[..., None] * (np.moveaxis(norm_v, 1, 2)[:, None] + np.linalg.norm(out, axis=-1)[..., None])
                   + dl[..., None])
    k_norm = np.repeat(np.linalg.norm(k, axis=-1), group, axis=2)
    dq = scale * np.einsum("bihj,bjh->bih", W, k_norm).max(axis=(0, 2), initial=0.0)
    dk = group * scale * np.einsum("bihj,bih->bjh", W, np.linalg.norm(q, axis=-1)).max(axis=(0, 2), initial=0.0)
    dv = group * np.einsum("bihj,bih->bjh", weights, norm_do).max(axis=(0, 2), initial=0.0)
    return dq, dk, dv


GRADIENT_RULE = ("derived float64 bound: 4(Tq+Tk+D+Dv+4) eps (1 + 2(D+3) sigma + |lse|) times the gradients' "
                 "magnitudes (dv: sum_i P_ij |dO_i|; dq, dk: |scale| sum A |k| or |q|, A = P (|dO||v| + |dO||out| + |dL|))")


def softmax_attention_vjp(**args) -> dict:
    """The gradient oracle of ``attention.softmax.parallel``: the form's arguments (``return_lse``
    says whether lse is an output; its cotangent is then drawn) and their cotangents."""
    return ref.softmax_attention_vjp(**without(args, ("return_lse",)))


def softmax_attention_vjp_plain(args: dict, dtype) -> tuple:
    """The definition's backward evaluated in ``dtype`` (``attention_vjp_in_dtype``), (dq, dk, dv)."""
    grads = ref.attention_vjp_in_dtype(**without(args, ("return_lse",)), dtype=dtype)
    return tuple(grads[name] for name in ("q", "k", "v"))


register_gradient(Gradient(
    form="attention.softmax.parallel",
    vjp=softmax_attention_vjp,
    wrt=("q", "k", "v"),
    cotangents=("cotangent", "lse_cotangent"),
    bound=attention_grad_bound,
    rule=GRADIENT_RULE,
    axes=(("batch", "time", "head", "channel"),) * 3,
    plain=softmax_attention_vjp_plain,
    magnitude=attention_grad_magnitude,
    tiling=BLOCK_ARGS,
))


def _flash_backward(impl, args: dict) -> tuple:
    """The backward from the forward's own out and lse (as a kernel saves them) against the VJP."""
    cotangents = {name: args[name] for name in ("cotangent", "lse_cotangent")}
    forward = without(args, ("cotangent", "lse_cotangent"))
    out, lse = ref.flash_attention(**forward, return_lse=True)
    got = impl(**forward, out=out, lse=lse, **cotangents)
    want = ref.softmax_attention_vjp(**without(forward, BLOCK_ARGS), **cotangents)
    return tuple(np.asarray(got[name]) for name in ("q", "k", "v")), tuple(want[name] for name in ("q", "k", "v"))


register_claim(Claim(
    key="attention.flash.backward",
    statement="FlashAttention-2's tiled backward (P recomputed from the saved lse, D = rowsum(dO o out), any block "
              "sizes, masks, softcap, ALiBi, GQA, an lse cotangent) equals the definition's VJP",
    subject="attention.flash.backward",
    default_impl=ref.flash_attention_backward,
    relation=_flash_backward,
    inputs=flash_backward_inputs,
    bound=attention_grad_bound,
    rule=GRADIENT_RULE,
    outputs=("dq", "dk", "dv"),
))


# ----------------------------------------------------------------------------- GPU implementations

def _flash_numba_inputs(simulated: bool):
    """No ALiBi, no softcap. Simulated: B=1, T <= 6, H <= 4, D <= 4, tiles of 2 or 4 (so rows and
    keys span several ragged tiles); on a GPU: T <= 200, D <= 64, tiles of 16 or 32."""
    tiny = dict(batch=1, q_len=st.integers(1, 6), k_len=st.integers(1, 6), kv_heads=st.integers(1, 2),
                group=st.integers(1, 2), head_dim=st.integers(1, 4),
                block_q=st.sampled_from([2, 4]), block_k=st.sampled_from([2, 4]))
    moderate = dict(batch=st.integers(1, 2), q_len=st.integers(1, 200), k_len=st.integers(1, 200),
                    kv_heads=st.integers(1, 2), group=st.integers(1, 4), head_dim=st.integers(1, 64),
                    window=windows(64), block_q=st.sampled_from([16, 32]), block_k=st.sampled_from([16, 32]))
    return flash_inputs(alibi_slopes=None, softcap=None, **(tiny if simulated else moderate))


register_implementation(Implementation(
    name="numba_cuda.flash_attention",
    form="attention.flash.tiled",
    target="flash_numba:flash_attention",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_flash_numba_inputs,
))


register_implementation(Implementation(
    name="numba_cuda.flash_attention_backward",
    form="attention.softmax.parallel",
    target="flash_bwd_numba:flash_attention_vjp",
    runtime="numba-cuda",
    dtypes=("float32",),
    inputs=_flash_numba_inputs,  # the forward kernel's (tiles included); the cotangents are drawn for them
    backward=True,
))
