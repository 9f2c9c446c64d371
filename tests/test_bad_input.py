"""Bad input is refused, by name: DESIGN.md "Conventions" and docs/conventions.md.

Every public reference function (everything in ``__all__`` of the ``seqcheck.reference``
subpackages) and every registered form is walked automatically. For each, a valid call is built (for
a reference function by a builder of the table ``CASES`` below, for a form by drawing from
``inputs_for(key)`` with Hypothesis derandomized), then every argument is mutated one at a time:
None, bool for a number, complex for a real, a string, an object array of strings, one axis more
or fewer, each axis one longer, -1 for a count, NaN and inf for a finite scalar. Each mutation must
raise a ValueError or TypeError whose message names the argument (it starts with the name, or says
"to match <name>": ``names_argument``), or be listed in ``ALLOWED`` as valid by design (then it may run,
or raise an error that names the argument).

A new public function without a builder fails ``test_every_public_function_has_a_case``; a new form
is walked as soon as it is registered.

The empty-axis rule is tested on the same builders: batch and time axes may be 0 (outputs empty, of
the shape the other sizes predict; a returned state is the initial state), every other axis must be
>= 1 (ValueError naming an argument that carries it).
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import pkgutil
import re
from fnmatch import fnmatch
from typing import Callable, NamedTuple

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from seqcheck import equiv, reference
from seqcheck.equiv.registry import without
from seqcheck.properties import inputs_for
from seqcheck.reference.eviction import H2O, TOVA, Policy

SUBPACKAGES = sorted(info.name for info in pkgutil.iter_modules(reference.__path__) if info.ispkg)
"""Every mechanism's subpackage of seqcheck.reference (found, so a new family is walked without an edit)."""

# ----------------------------------------------------------------------------- discovery


def public_callables() -> dict:
    """'<subpackage>.<name>' -> every function and Policy class exported by a reference subpackage."""
    found = {}
    for sub in SUBPACKAGES:
        module = importlib.import_module(f"seqcheck.reference.{sub}")
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj) or (isinstance(obj, type) and issubclass(obj, Policy) and obj is not Policy):
                found[f"{sub}.{name}"] = obj
    return found


# ----------------------------------------------------------------------------- valid arguments


class Case(NamedTuple):
    """A valid call: ``build(sizes)`` gives keyword arguments; ``empty`` are the sizes that may be 0."""

    build: Callable[[dict], dict]
    sizes: dict
    empty: tuple = ()


def normal(*shape, seed=0):
    return np.random.default_rng(seed + len(shape)).standard_normal(shape)


def positive(*shape, seed=0):
    return np.random.default_rng(seed + 7).uniform(0.2, 1.0, shape)


def modes(*shape, seed=0):
    rng = np.random.default_rng(seed + 3)
    return -rng.uniform(0.1, 1.0, shape) + 1j * rng.uniform(-3, 3, shape)


def _attention(B, Tq, Tk, H, Hkv, D, Dv):
    return dict(q=normal(B, Tq, H, D), k=normal(B, Tk, Hkv, D, seed=1), v=normal(B, Tk, Hkv, Dv, seed=2),
                scale=0.7, causal=False, window=(2, 1), key_padding_mask=np.ones((B, Tk), bool),
                alibi_slopes=positive(H), softcap=5.0, return_lse=True)


ATTENTION = dict(B=1, Tq=2, Tk=3, H=2, Hkv=1, D=2, Dv=3)


def _attention_grad(B, Tq, Tk, H, Hkv, D, Dv, saved=False):
    args = {name: a for name, a in _attention(B, Tq, Tk, H, Hkv, D, Dv).items() if name != "return_lse"}
    args.update(cotangent=normal(B, Tq, H, Dv, seed=6), lse_cotangent=normal(B, Tq, H, seed=7))
    if saved:
        args.update(out=normal(B, Tq, H, Dv, seed=8), lse=normal(B, Tq, H, seed=9), block_q=2, block_k=2)
    return args
AT_EMPTY = ("B", "Tq", "Tk")


def _scan(B, T, D, N, G, complex_A=False):
    A = -positive(D, N) + (1j * normal(D, N) if complex_A else 0)
    return dict(u=normal(B, T, D), delta=positive(B, T, D), A=A, B=normal(B, T, G, N, seed=1), C=normal(D, N, seed=2),
                D=normal(D, seed=3), z=normal(B, T, D, seed=4), delta_bias=positive(D), delta_softplus=True,
                initial_state=normal(B, D, N, seed=5) + (0j if complex_A else 0), return_state=True)


SCAN = dict(B=1, T=3, D=2, N=2, G=1)


def _step(B, D, N, G):
    return dict(u_t=normal(B, D), delta_t=positive(B, D), A=-positive(D, N), B_t=normal(B, G, N, seed=1),
                C_t=normal(B, N, seed=2), D=normal(D, seed=3), z_t=normal(B, D, seed=4), state=normal(B, D, N, seed=5),
                delta_bias=positive(D), delta_softplus=True)


def _ssd(B, T, H, P, G, N, decay=False):
    args = dict(x=normal(B, T, H, P), dt=positive(B, T, H), A=-positive(H), B=normal(B, T, G, N, seed=1),
                C=normal(B, T, G, N, seed=2))
    if decay:
        args.update(A=None, decay=positive(B, T, H, seed=3))
    return args


SSD = dict(B=1, T=3, H=2, P=2, G=1, N=2)


def _linear(B, T, H, D, M, state=True):
    args = dict(q=normal(B, T, H, D), k=normal(B, T, H, D, seed=1), v=normal(B, T, H, M, seed=2),
                feature_map="elu", eps=1e-6)
    if state:
        args.update(initial_state=(positive(B, H, D, M), positive(B, H, D)), return_state=True)
    return args


LINEAR = dict(B=1, T=3, H=1, D=2, M=2)


def _retention(B, T, H, K, V, state=True):
    args = dict(q=normal(B, T, H, K), k=normal(B, T, H, K, seed=1), v=normal(B, T, H, V, seed=2),
                gamma=np.linspace(0.5, 0.9, H))
    if state:
        args.update(initial_state=normal(B, H, K, V, seed=3), return_state=True)
    return args


RETENTION = dict(B=1, T=3, H=2, K=2, V=3)


def _delta(B, T, H, K, V, state=True):
    args = dict(q=normal(B, T, H, K), k=normal(B, T, H, K, seed=1), v=normal(B, T, H, V, seed=2),
                beta=positive(B, T, H, seed=5) / 4, g=-positive(B, T, H, seed=4), scale=0.5)
    if state:
        args.update(initial_state=normal(B, H, K, V, seed=3), return_state=True)
    return args


def _wkv7(B, T, H, K, V, state=True):
    args = dict(r=normal(B, T, H, K), w=-positive(B, T, H, K, seed=4), k=normal(B, T, H, K, seed=1),
                v=normal(B, T, H, V, seed=2), a=-positive(B, T, H, K, seed=5) / 2, b=positive(B, T, H, K, seed=6) / 2,
                w_kind="log", scale=0.5)
    if state:
        args.update(initial_state=normal(B, H, K, V, seed=3), return_state=True)
    return args


def _aft(B, T, D, per_channel=False):
    return dict(q=normal(B, T, D), k=normal(B, T, D, seed=1), v=normal(B, T, D, seed=2),
                w=normal(T, T, D, seed=3) if per_channel else normal(T, T, seed=3), causal=True)


AFT = dict(B=1, T=3, D=2)


def _wkv(B, T, C):
    return dict(k=normal(B, T, C), v=normal(B, T, C, seed=1), w=positive(C, seed=2), u=normal(C, seed=3))


def _wkv_state(B, C):
    return np.stack([normal(B, C, seed=4), positive(B, C, seed=5), normal(B, C, seed=6)], axis=-1)


WKV = dict(B=1, T=3, C=2)


def _msr(B, T, H, K, V):
    return dict(q=normal(B, T, H, K), k=normal(B, T, H, K, seed=1), v=normal(B, T, H, V, seed=2))


def _gla(B, T, H, K, V, state=True):
    args = dict(q=normal(B, T, H, K), k=normal(B, T, H, K, seed=1), v=normal(B, T, H, V, seed=2),
                g=-positive(B, T, H, K, seed=4), scale=0.5)
    if state:
        args.update(initial_state=normal(B, H, K, V, seed=3), return_state=True)
    return args


def _wkv6(B, T, H, K, V, state=True):
    args = dict(r=normal(B, T, H, K), k=normal(B, T, H, K, seed=1), v=normal(B, T, H, V, seed=2),
                g=-positive(B, T, H, K, seed=4), u=normal(H, K, seed=5))
    if state:
        args.update(initial_state=normal(B, H, K, V, seed=3), return_state=True)
    return args


def _lti(B, T, Dch, N):
    return dict(u=normal(B, T, Dch), Abar=0.5 * normal(Dch, N, N, seed=1), Bbar=normal(Dch, N, seed=2),
                C=normal(Dch, N, seed=3), D=normal(Dch, seed=4))


def _s4(H, n, L):
    return dict(Lambda=modes(H, n), P=modes(H, n, seed=1) + 1, Q=modes(H, n, seed=2) + 1, B=modes(H, n, seed=3),
                C=modes(H, n, seed=4), log_dt=-positive(H), length=L)


def _decode(B, T, H, Hkv, D, Dv):
    return dict(q=normal(B, T, H, D), k=normal(B, T, Hkv, D, seed=1), v=normal(B, T, Hkv, Dv, seed=2),
                policy=H2O(heavy=1), budget=2, prefill_len=min(2, T), rope="post", rope_base=100.0,
                position_offset=1, scale=0.5, return_rows=True)


DECODE = dict(B=1, T=4, H=2, Hkv=1, D=2, Dv=3)


def _decode_form(**sizes):
    args = _decode(**sizes)
    del args["policy"], args["return_rows"]
    return args


def _moe_logits(B, T, E, seed=11):
    return normal(B, T, E, seed=seed)


def _moe_layer(B, T, D, F, E, k):
    return dict(x=normal(B, T, D), **_moe_routing(B, T, E, k), w_gate=normal(E, D, F, seed=1) / 2,
                w_up=normal(E, D, F, seed=2) / 2, w_down=normal(E, F, D, seed=3) / 2, capacity=2)


MOE = dict(B=1, T=3, D=2, F=2, E=3, k=2)
MOE_ROUTER = dict(B=1, T=3, E=3)


def _moe_noisy(B, T, E):
    return dict(clean_logits=_moe_logits(B, T, E), noise_logits=normal(B, T, E, seed=12), noise=normal(B, T, E, seed=13))


def _colt5_ffn(B, T, D, F, G):
    return dict(x=normal(B, T, D), scores=positive(B, T), light_gate=normal(D, F, seed=1), light_up=normal(D, F, seed=2),
                light_down=normal(F, D, seed=3), heavy_gate=normal(D, G, seed=4), heavy_up=normal(D, G, seed=5),
                heavy_down=normal(G, D, seed=6), k=min(2, T))


def _colt5_attention(B, T, D, H, d, G, e):
    return dict(x=normal(B, T, D), q_scores=positive(B, T), kv_scores=positive(B, T, seed=1),
                light_qkv=normal(3, D, H, d, seed=2), light_out=normal(H, d, D, seed=3),
                heavy_qkv=normal(3, D, G, e, seed=4), heavy_out=normal(G, e, D, seed=5), window=1, k_q=min(2, T),
                k_kv=min(2, T))


def _jamba(B, T, name="x"):
    from seqcheck.reference.hybrid import JambaConfig, jamba_params

    return {name: normal(B, T, 8), "params": jamba_params(JambaConfig(), 0)}


def _jamba_cache(B):
    from seqcheck.reference.hybrid import JambaConfig, jamba_params, jamba_step

    return jamba_step(normal(B, 8, seed=9), jamba_params(JambaConfig(), 0))[1]


def _monarch(k, q, p, s, B=1):
    return dict(x=normal(B, k * p), w1=normal(k, q, p, seed=1), w2=normal(q, s, k, seed=2))


MONARCH = dict(B=2, k=2, q=3, p=2, s=2)


def _sparse(B, T, H, D, n):
    return dict(q=normal(B, T, H, D), k=normal(B, T, H, D, seed=1), v=normal(B, T, H, D, seed=2),
                block_mask=np.ones((n, n), bool), block_size=2, token_mask=np.tri(T, dtype=bool), scale=0.5,
                return_lse=True)


def _moe_routing(B, T, E, k):
    """Slot j of token t routed to expert (t + j) mod E, gates in (0.2, 1)."""
    index = (np.arange(T)[None, :, None] + np.arange(k)) % max(E, 1)
    return dict(expert_index=np.broadcast_to(index, (B, T, k)).copy(), gate=positive(B, T, k))


def _with(build, **extra):
    return lambda s: {**build(**s), **extra}


CASES = {
    # attention
    "attention.softmax_attention": Case(_with(_attention), ATTENTION, AT_EMPTY),
    "attention.flash_attention": Case(_with(_attention, block_q=2, block_k=2), ATTENTION, AT_EMPTY),
    "attention.split_kv_attention": Case(_with(_attention, num_splits=2), ATTENTION, AT_EMPTY),
    "attention.attention_in_dtype": Case(_with(_attention, dtype=np.float32), ATTENTION, AT_EMPTY),
    "attention.softmax_attention_mp": Case(_with(_attention, dps=20), ATTENTION, AT_EMPTY),
    "attention.flash_attention_mp": Case(_with(_attention, dps=20, block_q=2, block_k=2), ATTENTION, AT_EMPTY),
    "attention.softmax_attention_vjp": Case(lambda s: _attention_grad(**s), ATTENTION, AT_EMPTY),
    "attention.flash_attention_backward": Case(lambda s: _attention_grad(**s, saved=True), ATTENTION, AT_EMPTY),
    "attention.attention_vjp_in_dtype": Case(lambda s: {**_attention_grad(**s), "dtype": np.float32}, ATTENTION,
                                             AT_EMPTY),
    "attention.attention_mask": Case(
        lambda s: dict(batch=s["B"], Tq=s["Tq"], Tk=s["Tk"], causal=True, window=(1, 0),
                       key_padding_mask=np.ones((s["B"], s["Tk"]), bool)),
        dict(B=1, Tq=2, Tk=3), ("B", "Tq", "Tk")),
    "attention.combine_partials": Case(
        lambda s: dict(outputs=normal(s["S"], s["B"], s["Tq"], s["H"], s["Dv"]),
                       lses=normal(s["S"], s["B"], s["Tq"], s["H"], seed=1)),
        dict(S=2, B=1, Tq=2, H=2, Dv=3), ("B", "Tq")),
    # positional
    "positional.alibi_slopes": Case(lambda s: dict(num_heads=s["H"]), dict(H=3)),
    "positional.alibi_bias": Case(lambda s: dict(slopes=positive(s["H"]), Tq=s["Tq"], Tk=s["Tk"]),
                                  dict(H=2, Tq=2, Tk=3), ("Tq", "Tk")),
    "positional.apply_rope": Case(
        lambda s: dict(x=normal(s["B"], s["T"], s["H"], s["D"]), positions=3 * positive(s["B"], s["T"]),
                       base=100.0, interpolation_factor=2.0, pairing="interleaved"),
        dict(B=1, T=3, H=2, D=4), ("B", "T")),
    "positional.rope_vjp": Case(
        lambda s: dict(x=normal(s["B"], s["T"], s["H"], s["D"]), positions=3 * positive(s["B"], s["T"]),
                       cotangent=normal(s["B"], s["T"], s["H"], s["D"], seed=4), base=100.0, interpolation_factor=2.0,
                       pairing="interleaved"),
        dict(B=1, T=3, H=2, D=4), ("B", "T")),
    "positional.rope_in_dtype": Case(
        lambda s: dict(x=normal(s["B"], s["T"], s["H"], s["D"]), positions=3 * positive(s["B"], s["T"]),
                       dtype=np.float16, base=100.0, interpolation_factor=2.0, pairing="half"),
        dict(B=1, T=3, H=2, D=4), ("B", "T")),
    "positional.rope_angles": Case(
        lambda s: dict(positions=3 * positive(s["T"]), dim=s["D"], base=100.0, interpolation_factor=2.0),
        dict(T=3, D=4), ("T",)),
    "positional.rope_matrix": Case(
        lambda s: dict(position=2.5, dim=s["D"], base=100.0, interpolation_factor=2.0, pairing="half"), dict(D=4)),
    "positional.rope_permutation": Case(lambda s: dict(dim=s["D"]), dict(D=4)),
    "positional.sinusoidal_encoding": Case(
        lambda s: dict(positions=3 * positive(s["T"]), dim=s["D"], base=100.0, layout="interleaved"),
        dict(T=3, D=4), ("T",)),
    # ssm
    "ssm.discretize": Case(lambda s: dict(A=-np.eye(s["N"]) + 0.1 * normal(s["N"], s["N"]), B=normal(s["N"], s["M"]),
                                          step=0.1, method="gbt", alpha=0.5), dict(N=2, M=1)),
    "ssm.hippo_legs": Case(lambda s: dict(N=s["N"]), dict(N=3)),
    "ssm.hippo_legs_nplr": Case(lambda s: dict(N=s["N"]), dict(N=3)),
    "ssm.dplr_from_legs": Case(lambda s: dict(N=s["N"]), dict(N=4)),
    "ssm.lti_recurrent": Case(
        lambda s: {**_lti(**s), "initial_state": normal(s["B"], s["Dch"], s["N"], seed=5), "return_state": True},
        dict(B=1, T=3, Dch=2, N=2), ("B", "T")),
    "ssm.lti_kernel": Case(lambda s: {**{k: v for k, v in _lti(1, 1, s["Dch"], s["N"]).items()
                                         if k in ("Abar", "Bbar", "C")}, "length": s["L"]},
                           dict(Dch=2, N=2, L=3), ("L",)),
    "ssm.lti_vjp": Case(
        lambda s: {**_lti(**s), "initial_state": normal(s["B"], s["Dch"], s["N"], seed=5),
                   "cotangent": normal(s["B"], s["T"], s["Dch"], seed=6),
                   "state_cotangent": normal(s["B"], s["Dch"], s["N"], seed=7)},
        dict(B=1, T=3, Dch=2, N=2), ("B", "T")),
    "ssm.lti_kernel_vjp": Case(lambda s: {**{k: v for k, v in _lti(1, 1, s["Dch"], s["N"]).items()
                                             if k in ("Abar", "Bbar", "C")}, "length": s["L"],
                                          "cotangent": normal(s["Dch"], s["L"], seed=6)},
                               dict(Dch=2, N=2, L=3), ("L",)),
    "ssm.causal_conv": Case(lambda s: dict(u=normal(s["B"], s["T"], s["Dch"]), K=normal(s["Dch"], s["L"], seed=1),
                                           D=normal(s["Dch"], seed=2)), dict(B=1, T=3, Dch=2, L=2), ("B", "T", "L")),
    "ssm.fft_conv": Case(lambda s: dict(u=normal(s["B"], s["T"], s["Dch"]), K=normal(s["Dch"], s["L"], seed=1),
                                        D=normal(s["Dch"], seed=2)), dict(B=1, T=3, Dch=2, L=2), ("B", "T", "L")),
    "ssm.s4_krylov_kernel": Case(lambda s: _s4(**s), dict(H=2, n=2, L=3), ("L",)),
    "ssm.s4_dplr_kernel": Case(lambda s: _s4(**s), dict(H=2, n=2, L=3), ("L",)),
    "ssm.s4_krylov_vjp": Case(lambda s: {**_s4(**s), "cotangent": normal(s["H"], s["L"], seed=6)},
                              dict(H=2, n=2, L=3), ("L",)),
    "ssm.s4d_vjp": Case(
        lambda s: dict(log_dt=-positive(s["H"]), A=modes(s["H"], s["n"]), B=modes(s["H"], s["n"], seed=1),
                       C=modes(s["H"], s["n"], seed=2), length=s["L"], discretization="bilinear",
                       cotangent=normal(s["H"], s["L"], seed=6)),
        dict(H=2, n=2, L=3), ("L",)),
    "ssm.s4d_kernel": Case(
        lambda s: dict(log_dt=-positive(s["H"]), A=modes(s["H"], s["n"]), B=modes(s["H"], s["n"], seed=1),
                       C=modes(s["H"], s["n"], seed=2), length=s["L"], discretization="bilinear", conj_halving=True),
        dict(H=2, n=2, L=3), ("L",)),
    "ssm.s4d_init_lin": Case(lambda s: dict(H=s["H"], N=s["N"]), dict(H=2, N=4)),
    "ssm.s4d_init_inv": Case(lambda s: dict(H=s["H"], N=s["N"]), dict(H=2, N=4)),
    # mamba
    "mamba.selective_scan_recurrent": Case(lambda s: _scan(**s), SCAN, ("B", "T")),
    "mamba.selective_scan_recurrent(complex A)": Case(lambda s: _scan(**s, complex_A=True), SCAN, ("B", "T")),
    "mamba.selective_scan_parallel": Case(_with(_scan, tree="random", rng=3), SCAN, ("B", "T")),
    "mamba.selective_scan_chunked": Case(_with(_scan, chunk_size=2), SCAN, ("B", "T")),
    "mamba.selective_scan_vjp": Case(lambda s: {**{n: a for n, a in _scan(**s).items() if n != "return_state"},
                                                "cotangent": normal(s["B"], s["T"], s["D"], seed=6),
                                                "state_cotangent": normal(s["B"], s["D"], s["N"], seed=7)},
                                     SCAN, ("B", "T")),
    "mamba.selective_scan_vjp_in_dtype": Case(
        lambda s: {**{n: a for n, a in _scan(**s).items() if n != "return_state"}, "dtype": np.float32,
                   "cotangent": normal(s["B"], s["T"], s["D"], seed=6),
                   "state_cotangent": normal(s["B"], s["D"], s["N"], seed=7)},
        SCAN, ("B", "T")),
    "mamba.selective_scan_chunked_vjp": Case(
        lambda s: {**{n: a for n, a in _scan(**s).items() if n != "return_state"}, "chunk_size": 2,
                   "cotangent": normal(s["B"], s["T"], s["D"], seed=6),
                   "state_cotangent": normal(s["B"], s["D"], s["N"], seed=7)},
        SCAN, ("B", "T")),
    "mamba.selective_scan_step": Case(lambda s: _step(**s), dict(B=1, D=2, N=2, G=1), ("B",)),
    "mamba.associative_scan": Case(
        lambda s: dict(a=positive(s["B"], s["T"], s["F"]), b=normal(s["B"], s["T"], s["F"]), tree="random", rng=1),
        dict(B=1, T=3, F=2), ("B", "T", "F")),
    "mamba.scan_combine": Case(lambda s: dict(left=(positive(s["n"]), normal(s["n"])),
                                              right=(positive(s["n"], seed=1), normal(s["n"], seed=1))),
                               dict(n=2), ("n",)),
    "mamba.segsum": Case(lambda s: dict(x=-positive(s["R"], s["T"])), dict(R=2, T=3), ("R", "T")),
    "mamba.segprod": Case(lambda s: dict(a=positive(s["R"], s["T"])), dict(R=2, T=3), ("R", "T")),
    "mamba.ssd_recurrent": Case(lambda s: {**_ssd(**s), "initial_state": normal(s["B"], s["H"], s["P"], s["N"], seed=9),
                                           "return_state": True}, SSD, ("B", "T")),
    "mamba.ssd_recurrent(decay)": Case(lambda s: {**_ssd(**s, decay=True),
                                                  "initial_state": normal(s["B"], s["H"], s["P"], s["N"], seed=9),
                                                  "return_state": True}, SSD, ("B", "T")),
    "mamba.ssd_quadratic": Case(lambda s: _ssd(**s), SSD, ("B", "T")),
    "mamba.ssd_vjp": Case(lambda s: {**_ssd(**s), "initial_state": normal(s["B"], s["H"], s["P"], s["N"], seed=9),
                                     "cotangent": normal(s["B"], s["T"], s["H"], s["P"], seed=6),
                                     "state_cotangent": normal(s["B"], s["H"], s["P"], s["N"], seed=7)},
                          SSD, ("B", "T")),
    "mamba.ssd_vjp_in_dtype": Case(lambda s: {**_ssd(**s), "initial_state": normal(s["B"], s["H"], s["P"], s["N"], seed=9),
                                              "cotangent": normal(s["B"], s["T"], s["H"], s["P"], seed=6),
                                              "state_cotangent": normal(s["B"], s["H"], s["P"], s["N"], seed=7),
                                              "dtype": np.float32},
                                   SSD, ("B", "T")),
    "mamba.ssd_chunked_vjp": Case(lambda s: {**_ssd(**s), "chunk_size": 2,
                                             "initial_state": normal(s["B"], s["H"], s["P"], s["N"], seed=9),
                                             "cotangent": normal(s["B"], s["T"], s["H"], s["P"], seed=6),
                                             "state_cotangent": normal(s["B"], s["H"], s["P"], s["N"], seed=7)},
                                  SSD, ("B", "T")),
    "mamba.ssd_chunked": Case(lambda s: {**_ssd(**s), "chunk_size": 2,
                                         "initial_state": normal(s["B"], s["H"], s["P"], s["N"], seed=9),
                                         "return_state": True}, SSD, ("B", "T")),
    "mamba.rms_norm_gated": Case(
        lambda s: dict(x=normal(s["R"], s["F"]), z=normal(s["R"], s["F"], seed=1), weight=positive(s["F"]),
                       eps=1e-6, group_size=2, norm_before_gate=True, bias=normal(s["F"], seed=2)),
        dict(R=2, F=4), ("R",)),
    # linear attention
    "linear_attention.elu_feature_map": Case(lambda s: dict(x=normal(s["B"], s["T"])), dict(B=1, T=3), ("B", "T")),
    "linear_attention.identity_feature_map": Case(lambda s: dict(x=normal(s["B"], s["T"])), dict(B=1, T=3),
                                                  ("B", "T")),
    "linear_attention.linear_attention_parallel": Case(lambda s: {**_linear(**s, state=False), "causal": True},
                                                       LINEAR, ("B", "T")),
    "linear_attention.linear_attention_parallel(non-causal)": Case(
        lambda s: dict(q=normal(s["B"], s["T"], s["H"], s["D"]), k=normal(s["B"], s["S"], s["H"], s["D"], seed=1),
                       v=normal(s["B"], s["S"], s["H"], s["M"], seed=2), feature_map="elu", eps=1e-6, causal=False),
        dict(B=1, T=2, S=3, H=1, D=2, M=2), ("B", "T", "S")),
    "linear_attention.linear_attention_recurrent": Case(lambda s: _linear(**s), LINEAR, ("B", "T")),
    "linear_attention.linear_attention_vjp": Case(
        lambda s: {**without(_linear(**s), ("return_state",)), "cotangent": normal(s["B"], s["T"], s["H"], s["M"], seed=6),
                   "state_cotangent": (normal(s["B"], s["H"], s["D"], s["M"], seed=7), normal(s["B"], s["H"], s["D"], seed=8))},
        LINEAR, ("B", "T")),
    "linear_attention.linear_attention_chunked": Case(_with(_linear, chunk_size=2), LINEAR, ("B", "T")),
    "linear_attention.linear_attention_step": Case(
        lambda s: dict(q_t=normal(s["B"], s["H"], s["D"]), k_t=normal(s["B"], s["H"], s["D"], seed=1),
                       v_t=normal(s["B"], s["H"], s["M"], seed=2),
                       state=(positive(s["B"], s["H"], s["D"], s["M"]), positive(s["B"], s["H"], s["D"])),
                       feature_map="elu", eps=1e-6),
        dict(B=1, H=1, D=2, M=2), ("B",)),
    # retention
    "retention.retention_parallel": Case(lambda s: _retention(**s, state=False), RETENTION, ("B", "T")),
    "retention.retention_recurrent": Case(lambda s: _retention(**s), RETENTION, ("B", "T")),
    "retention.retention_chunked": Case(_with(_retention, chunk_size=2), RETENTION, ("B", "T")),
    "retention.retention_step": Case(
        lambda s: dict(q_t=normal(s["B"], s["H"], s["K"]), k_t=normal(s["B"], s["H"], s["K"], seed=1),
                       v_t=normal(s["B"], s["H"], s["V"], seed=2), gamma=np.linspace(0.5, 0.9, s["H"]),
                       state=normal(s["B"], s["H"], s["K"], s["V"], seed=3)),
        dict(B=1, H=2, K=2, V=3), ("B",)),
    "retention.msr_parallel": Case(_with(_msr, eps=0.0), RETENTION, ("B", "T")),
    "retention.msr_recurrent": Case(_with(_msr, eps=0.0), RETENTION, ("B", "T")),
    "retention.msr_chunked": Case(_with(_msr, eps=1e-6, chunk_size=2), RETENTION, ("B", "T")),
    "retention.msr_decays": Case(lambda s: dict(heads=3), {}),
    "retention.msr_scales": Case(lambda s: dict(heads=3, length=4), {}),
    "retention.msr_vjp": Case(lambda s: {**_msr(**s), "eps": 1e-6,
                                         "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6)},
                              RETENTION, ("B", "T")),
    "retention.msr_rotate": Case(lambda s: dict(x=normal(s["B"], s["T"], s["H"], s["K"]), positions=np.arange(s["T"])),
                                 dict(B=1, T=3, H=2, K=2), ("B", "T")),
    # the delta rule
    "delta.delta_rule_recurrent": Case(lambda s: _delta(**s), RETENTION, ("B", "T")),
    "delta.delta_rule_chunked": Case(_with(_delta, chunk_size=2), RETENTION, ("B", "T")),
    "delta.delta_rule_vjp": Case(lambda s: {**{n: a for n, a in _delta(**s).items() if n != "return_state"},
                                            "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                                            "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7)},
                                 RETENTION, ("B", "T")),
    "delta.delta_rule_vjp_in_dtype": Case(
        lambda s: {**{n: a for n, a in _delta(**s).items() if n != "return_state"}, "dtype": np.float32,
                   "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                   "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7)},
        RETENTION, ("B", "T")),
    "delta.delta_rule_step": Case(
        lambda s: dict(q_t=normal(s["B"], s["H"], s["K"]), k_t=normal(s["B"], s["H"], s["K"], seed=1),
                       v_t=normal(s["B"], s["H"], s["V"], seed=2), beta_t=positive(s["B"], s["H"], seed=5) / 4,
                       g_t=-positive(s["B"], s["H"], seed=4), state=normal(s["B"], s["H"], s["K"], s["V"], seed=3),
                       scale=0.5),
        dict(B=1, H=2, K=2, V=3), ("B",)),
    # RWKV
    "rwkv.wkv4_naive": Case(lambda s: _wkv(**s), WKV, ("B", "T")),
    "rwkv.wkv4_parallel": Case(lambda s: _wkv(**s), WKV, ("B", "T")),
    "rwkv.wkv4_recurrent": Case(lambda s: {**_wkv(**s), "initial_state": _wkv_state(s["B"], s["C"]),
                                           "return_state": True}, WKV, ("B", "T")),
    "rwkv.wkv4_chunked": Case(lambda s: {**_wkv(**s), "initial_state": _wkv_state(s["B"], s["C"]),
                                         "return_state": True, "chunk_size": 2}, WKV, ("B", "T")),
    "rwkv.wkv4_vjp": Case(lambda s: {**_wkv(**s), "cotangent": normal(s["B"], s["T"], s["C"], seed=6)}, WKV, ("B", "T")),
    "rwkv.wkv6_parallel": Case(lambda s: _wkv6(**s, state=False), RETENTION, ("B", "T")),
    "rwkv.wkv6_recurrent": Case(lambda s: _wkv6(**s), RETENTION, ("B", "T")),
    "rwkv.wkv6_chunked": Case(_with(_wkv6, chunk_size=2), RETENTION, ("B", "T")),
    "rwkv.wkv6_vjp": Case(lambda s: {**without(_wkv6(**s), ("return_state",)),
                                     "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                                     "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7)},
                          RETENTION, ("B", "T")),
    "rwkv.wkv6_vjp_in_dtype": Case(lambda s: {**without(_wkv6(**s), ("return_state",)), "dtype": np.float32,
                                              "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                                              "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7)},
                                   RETENTION, ("B", "T")),
    "rwkv.wkv6_step": Case(
        lambda s: dict(r_t=normal(s["B"], s["H"], s["K"]), k_t=normal(s["B"], s["H"], s["K"], seed=1),
                       v_t=normal(s["B"], s["H"], s["V"], seed=2), g_t=-positive(s["B"], s["H"], s["K"], seed=4),
                       u=normal(s["H"], s["K"], seed=5), state=normal(s["B"], s["H"], s["K"], s["V"], seed=3)),
        dict(B=1, H=2, K=2, V=3), ("B",)),
    "rwkv.wkv_group_norm": Case(lambda s: dict(o=normal(s["B"], s["T"], s["H"], s["V"]),
                                               weight=normal(s["H"] * s["V"], seed=1),
                                               bias=normal(s["H"] * s["V"], seed=2), eps=1e-5),
                                dict(B=1, T=3, H=2, V=3), ("B", "T")),
    # RWKV-7
    "rwkv7.wkv7_recurrent": Case(lambda s: _wkv7(**s), RETENTION, ("B", "T")),
    "rwkv7.wkv7_chunked": Case(_with(_wkv7, chunk_size=2), RETENTION, ("B", "T")),
    "rwkv7.wkv7_vjp": Case(lambda s: {**without(_wkv7(**s), ("return_state",)),
                                      "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=7),
                                      "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=8)},
                           RETENTION, ("B", "T")),
    "rwkv7.wkv7_step": Case(
        lambda s: dict(r_t=normal(s["B"], s["H"], s["K"]), w_t=-positive(s["B"], s["H"], s["K"], seed=4),
                       k_t=normal(s["B"], s["H"], s["K"], seed=1), v_t=normal(s["B"], s["H"], s["V"], seed=2),
                       a_t=-positive(s["B"], s["H"], s["K"], seed=5) / 2, b_t=positive(s["B"], s["H"], s["K"], seed=6) / 2,
                       state=normal(s["B"], s["H"], s["K"], s["V"], seed=3), w_kind="log", scale=0.5),
        dict(B=1, H=2, K=2, V=3), ("B",)),
    # AFT
    "aft.aft_full": Case(lambda s: _aft(**s), AFT, ("B", "T")),
    "aft.aft_full(per-channel w)": Case(lambda s: _aft(**s, per_channel=True), AFT, ("B", "T")),
    "aft.aft_full_naive": Case(lambda s: _aft(**s), AFT, ("B", "T")),
    "aft.aft_local": Case(_with(_aft, window=2), AFT, ("B", "T")),
    "aft.aft_simple": Case(lambda s: {name: a for name, a in _aft(**s).items() if name != "w"}, AFT, ("B", "T")),
    "aft.aft_conv": Case(
        lambda s: dict(q=normal(s["B"], s["T"], s["H"], s["D"]), k=normal(s["B"], s["T"], s["H"], s["D"], seed=1),
                       v=normal(s["B"], s["T"], s["H"], s["D"], seed=2), w=normal(s["H"], s["s"], seed=3)),
        dict(B=1, T=3, H=2, D=2, s=3), ("B", "T")),
    "aft.aft_full_vjp": Case(lambda s: {**_aft(**s), "cotangent": normal(s["B"], s["T"], s["D"], seed=6)}, AFT,
                             ("B", "T")),
    "aft.aft_local_vjp": Case(lambda s: {**_aft(**s), "window": 2, "cotangent": normal(s["B"], s["T"], s["D"], seed=6)},
                              AFT, ("B", "T")),
    "aft.aft_simple_vjp": Case(lambda s: {**without(_aft(**s), ("w",)), "cotangent": normal(s["B"], s["T"], s["D"], seed=6)},
                               AFT, ("B", "T")),
    "aft.aft_conv_vjp": Case(
        lambda s: dict(q=normal(s["B"], s["T"], s["H"], s["D"]), k=normal(s["B"], s["T"], s["H"], s["D"], seed=1),
                       v=normal(s["B"], s["T"], s["H"], s["D"], seed=2), w=normal(s["H"], s["s"], seed=3),
                       cotangent=normal(s["B"], s["T"], s["H"], s["D"], seed=6)),
        dict(B=1, T=3, H=2, D=2, s=3), ("B", "T")),
    # gated linear attention
    "gla.gla_parallel": Case(lambda s: _gla(**s, state=False), RETENTION, ("B", "T")),
    "gla.gla_recurrent": Case(lambda s: _gla(**s), RETENTION, ("B", "T")),
    "gla.gla_chunked": Case(_with(_gla, chunk_size=2), RETENTION, ("B", "T")),
    "gla.gla_vjp": Case(lambda s: {**{n: a for n, a in _gla(**s).items() if n != "return_state"},
                                   "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                                   "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7)},
                        RETENTION, ("B", "T")),
    "gla.gla_vjp_in_dtype": Case(lambda s: {**{n: a for n, a in _gla(**s).items() if n != "return_state"},
                                            "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                                            "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7),
                                            "dtype": np.float32},
                                 RETENTION, ("B", "T")),
    "gla.gla_chunked_vjp": Case(lambda s: {**{n: a for n, a in _gla(**s).items() if n != "return_state"},
                                           "cotangent": normal(s["B"], s["T"], s["H"], s["V"], seed=6),
                                           "state_cotangent": normal(s["B"], s["H"], s["K"], s["V"], seed=7),
                                           "chunk_size": 2},
                                RETENTION, ("B", "T")),
    "gla.gla_step": Case(
        lambda s: dict(q_t=normal(s["B"], s["H"], s["K"]), k_t=normal(s["B"], s["H"], s["K"], seed=1),
                       v_t=normal(s["B"], s["H"], s["V"], seed=2), g_t=-positive(s["B"], s["H"], s["K"], seed=4),
                       state=normal(s["B"], s["H"], s["K"], s["V"], seed=3), scale=0.5),
        dict(B=1, H=2, K=2, V=3), ("B",)),
    # eviction
    "eviction.simulate_decoding": Case(lambda s: _decode(**s), DECODE, ("B", "T")),
    "eviction.simulate_layers": Case(
        lambda s: dict(q=normal(s["L"], s["B"], s["T"], s["H"], s["D"]), k=normal(s["L"], s["B"], s["T"], 1, s["D"]),
                       v=normal(s["L"], s["B"], s["T"], 1, s["Dv"], seed=1), policy=TOVA(), budget=2),
        dict(L=2, B=1, T=3, H=2, D=2, Dv=2), ("L", "B", "T")),
    "eviction.topk_lowest_index": Case(lambda s: dict(scores=normal(s["R"], s["n"]), k=2), dict(R=2, n=3), ("R",)),
    "eviction.argmin_highest_index": Case(lambda s: dict(scores=normal(s["R"], s["n"])), dict(R=2, n=3), ("R",)),
    "eviction.Window": Case(lambda s: {}, {}),
    "eviction.TOVA": Case(lambda s: {}, {}),
    "eviction.TOVAKVPress": Case(lambda s: {}, {}),
    "eviction.StreamingLLM": Case(lambda s: dict(sinks=1), {}),
    "eviction.H2O": Case(lambda s: dict(heavy=1), {}),
    "eviction.Scissorhands": Case(lambda s: dict(recent=1, history=2, drop=1, threshold="position"), {}),
    "eviction.SnapKV": Case(lambda s: dict(window=2, kernel_size=3, pooling="maxpool", heads="kv"), {}),
    "eviction.TOVAByPosition": Case(lambda s: {}, {}),
    "eviction.make_policy": Case(lambda s: dict(policy="h2o", heavy=1), {}),
    "eviction.decode": Case(lambda s: {**_decode(**s), "policy": "h2o", "heavy": 1}, DECODE, ("B", "T")),
    "eviction.decode_layers": Case(
        lambda s: dict(q=normal(s["L"], s["B"], s["T"], s["H"], s["D"]), k=normal(s["L"], s["B"], s["T"], 1, s["D"]),
                       v=normal(s["L"], s["B"], s["T"], 1, s["Dv"], seed=1), policy="tova", budget=2),
        dict(L=2, B=1, T=3, H=2, D=2, Dv=2), ("L", "B", "T")),
    **{f"eviction.{name}_decode": Case(_with(_decode_form, **parameters), DECODE, ("B", "T"))
       for name, parameters in (("window", {}), ("streaming_llm", {"sinks": 1}), ("tova", {}), ("tova_kvpress", {}),
                                ("h2o", {"heavy": 1}), ("scissorhands", {"recent": 1, "history": 2}),
                                ("snapkv", {"window": 1}))},
    "eviction.cache_attention": Case(
        lambda s: dict(q=normal(s["B"], s["T"], s["H"], s["D"]), k=normal(s["B"], s["n"], 1, s["D"], seed=1),
                       v=normal(s["B"], s["n"], 1, s["Dv"], seed=2),
                       keep=np.tile(np.arange(s["n"]) % 2 == 0, (s["B"], 1)), scale=0.5),
        dict(B=1, T=2, H=2, D=2, n=3, Dv=2), ("B", "T", "n")),
    "eviction.tova_select": Case(
        lambda s: dict(probs=np.abs(normal(s["B"], s["H"], s["n"])),
                       positions=np.tile(np.roll(np.arange(s["n"]), 1), (s["B"], 1)), budget=2),
        dict(B=1, H=2, n=3), ("B",)),
    # MoE
    "moe.topk_routing": Case(lambda s: dict(logits=_moe_logits(**s), top_k=2, normalize=True), MOE_ROUTER, ("B", "T")),
    "moe.noisy_logits": Case(lambda s: _moe_noisy(**s), MOE_ROUTER, ("B", "T")),
    "moe.noisy_topk_routing": Case(lambda s: {**_moe_noisy(**s), "top_k": 2}, MOE_ROUTER, ("B", "T")),
    "moe.switch_routing": Case(lambda s: dict(logits=_moe_logits(**s), capacity=1), MOE_ROUTER, ("B", "T")),
    "moe.expert_choice_routing": Case(lambda s: dict(logits=_moe_logits(**s), capacity=min(1, s["T"])), MOE_ROUTER,
                                      ("B", "T")),
    "moe.switch_capacity": Case(lambda s: dict(tokens=64, experts=8, capacity_factor=1.25, min_capacity=4), {}),
    "moe.apply_capacity": Case(lambda s: {**_moe_routing(**s, E=3), "capacity": 1}, dict(B=1, T=3, k=2), ("B", "T")),
    "moe.dense_gates": Case(lambda s: {**_moe_routing(**s), "experts": s["E"]}, dict(B=1, T=3, E=3, k=2), ("B", "T")),
    "moe.rank_experts": Case(lambda s: dict(scores=_moe_logits(**s)), MOE_ROUTER, ("B", "T")),
    "moe.expert_ffn": Case(lambda s: dict(x=normal(s["n"], s["D"]), w_gate=normal(s["D"], s["F"], seed=1),
                                          w_up=normal(s["D"], s["F"], seed=2), w_down=normal(s["F"], s["D"], seed=3)),
                           dict(n=3, D=2, F=2), ("n",)),
    "moe.moe_per_token": Case(lambda s: _moe_layer(**s), MOE, ("B", "T")),
    "moe.moe_dispatch": Case(lambda s: _moe_layer(**s), MOE, ("B", "T")),
    "moe.moe_in_dtype": Case(_with(_moe_layer, dtype=np.float32), MOE, ("B", "T")),
    "moe.moe_vjp": Case(lambda s: {**_moe_layer(**s), "cotangent": normal(s["B"], s["T"], s["D"], seed=6)}, MOE,
                        ("B", "T")),
    "moe.moe_dispatch_vjp": Case(lambda s: {**_moe_layer(**s), "cotangent": normal(s["B"], s["T"], s["D"], seed=6)},
                                 MOE, ("B", "T")),
    "moe.moe_vjp_in_dtype": Case(lambda s: {**_moe_layer(**s), "dtype": np.float32,
                                            "cotangent": normal(s["B"], s["T"], s["D"], seed=6)}, MOE, ("B", "T")),
    "moe.load_balancing_loss": Case(lambda s: dict(logits=_moe_logits(s["B"], s["T"], s["E"]),
                                                   expert_index=_moe_routing(**s)["expert_index"], variant="mixtral"),
                                    dict(B=1, T=3, E=3, k=2), ("B", "T")),
    "moe.router_z_loss": Case(lambda s: dict(logits=_moe_logits(**s)), MOE_ROUTER, ("B", "T")),
    "moe.importance_loss": Case(lambda s: {**_moe_routing(**s), "experts": s["E"]}, dict(B=1, T=3, E=3, k=2),
                                ("B", "T")),
    "moe.smooth_load": Case(lambda s: {**_moe_noisy(**s), "top_k": 2}, MOE_ROUTER, ("B", "T")),
    "moe.routed_mask": Case(lambda s: dict(scores=positive(s["B"], s["T"]), k=min(2, s["T"])), dict(B=1, T=3),
                            ("B", "T")),
    "moe.colt5_ffn": Case(lambda s: _colt5_ffn(**s), dict(B=1, T=3, D=2, F=2, G=3), ("B", "T")),
    "moe.colt5_attention": Case(lambda s: _colt5_attention(**s), dict(B=1, T=3, D=2, H=2, d=2, G=1, e=3), ("B", "T")),
    "moe.multi_head": Case(lambda s: dict(x_q=normal(s["B"], s["T"], s["D"]), x_kv=normal(s["B"], s["S"], s["D"], seed=1),
                                          qkv=normal(3, s["D"], s["H"], s["d"], seed=2),
                                          out=normal(s["H"], s["d"], s["D"], seed=3), value_scale=positive(s["B"], s["S"])),
                           dict(B=1, T=2, S=3, D=2, H=2, d=2), ("B", "T", "S")),
    # Monarch
    "monarch.monarch_multiply": Case(lambda s: _monarch(**s), MONARCH, ("B",)),
    "monarch.dense_multiply": Case(lambda s: _monarch(**s), MONARCH, ("B",)),
    "monarch.monarch_dense": Case(lambda s: without(_monarch(**s), ("x",)), dict(k=2, q=3, p=2, s=2)),
    "monarch.monarch_transpose": Case(lambda s: without(_monarch(**s), ("x",)), dict(k=2, q=3, p=2, s=2)),
    "monarch.monarch_compose": Case(lambda s: {**without(_monarch(**s), ("x",)), "D": normal(s["k"], s["p"], s["p"])},
                                    dict(k=2, q=3, p=2, s=2)),
    "monarch.monarch_project": Case(lambda s: dict(M=normal(6, 6), sizes=(3, 2)), {}),
    "monarch.default_sizes": Case(lambda s: dict(n=12), {}),
    "monarch.monarch_vjp": Case(lambda s: {**_monarch(**s), "cotangent": normal(s["B"], s["q"] * s["s"], seed=3)},
                                MONARCH, ("B",)),
    "monarch.dft": Case(lambda s: dict(x=normal(s["B"], s["n"])), dict(B=2, n=6), ("B",)),
    "monarch.monarch_dft": Case(lambda s: dict(x=normal(s["B"], s["n"])), dict(B=2, n=6), ("B",)),
    "monarch.dft_factors": Case(lambda s: dict(n=6, sizes=(3, 2)), {}),
    "monarch.dft_mp": Case(lambda s: dict(n=4, sizes=(2, 2), dps=20), {}),
    "monarch.monarch_fft_conv": Case(lambda s: dict(u=normal(s["B"], s["T"], s["D"]), K=normal(s["D"], s["L"], seed=1),
                                                    D=normal(s["D"], seed=2)), dict(B=1, T=3, D=2, L=2), ("B", "T", "L")),
    # sparse attention
    "sparse.masked_attention": Case(lambda s: {**without(_sparse(**s, n=-(-s["T"] // 2)), ("block_mask", "block_size",
                                                                                         "token_mask")),
                                               "mask": np.tri(s["T"], dtype=bool)}, dict(B=1, T=3, H=2, D=2), ("B", "T")),
    "sparse.masked_attention_in_dtype": Case(
        lambda s: {**without(_sparse(**s, n=-(-s["T"] // 2)), ("block_mask", "block_size", "token_mask")),
                   "mask": np.tri(s["T"], dtype=bool), "dtype": np.float32}, dict(B=1, T=3, H=2, D=2), ("B", "T")),
    "sparse.block_sparse_attention": Case(lambda s: _sparse(**s, n=-(-s["T"] // 2)), dict(B=1, T=3, H=2, D=2), ("B", "T")),
    "sparse.masked_attention_vjp": Case(
        lambda s: {**without(_sparse(**s, n=-(-s["T"] // 2)), ("block_mask", "block_size", "token_mask", "return_lse")),
                   "mask": np.tri(s["T"], dtype=bool), "cotangent": normal(s["B"], s["T"], s["H"], s["D"], seed=6),
                   "lse_cotangent": normal(s["B"], s["T"], s["H"], seed=7)}, dict(B=1, T=3, H=2, D=2), ("B", "T")),
    "sparse.block_sparse_attention_vjp": Case(
        lambda s: {**without(_sparse(**s, n=-(-s["T"] // 2)), ("return_lse",)),
                   "cotangent": normal(s["B"], s["T"], s["H"], s["D"], seed=6),
                   "lse_cotangent": normal(s["B"], s["T"], s["H"], seed=7)}, dict(B=1, T=3, H=2, D=2), ("B", "T")),
    "sparse.block_mask_of": Case(lambda s: dict(mask=np.tri(s["T"], dtype=bool), block_size=2), dict(T=3), ("T",)),
    "sparse.expand_block_mask": Case(lambda s: dict(block_mask=np.ones((2, 2), bool), block_size=2, Tq=3, Tk=4), {}),
    "sparse.bigbird_block_mask": Case(lambda s: dict(blocks=6, random_blocks=1, seed=3), {}),
    "sparse.longformer_mask": Case(lambda s: dict(length=6, window=1, global_tokens=np.array([0, 4])), {}),
    # JEPA masks
    "jepa.multiblock3d": Case(lambda s: dict(grid=(2, 6, 6), blocks=3, spatial_scale=(0.15, 0.3), batch=s["B"], seed=3),
                              dict(B=2), ("B",)),
    "jepa.multiblock3d_sizes": Case(lambda s: dict(grid=(2, 6, 6), spatial_scale=(0.15, 0.3)), {}),
    "jepa.ijepa_multiblock": Case(lambda s: dict(grid=(8, 8), batch=s["B"], seed=2, min_keep=2), dict(B=2), ("B",)),
    "jepa.ijepa_sizes": Case(lambda s: dict(grid=(14, 14), scale=(0.15, 0.2), aspect_ratio=(0.75, 1.5)), {}),
    "jepa.collate_indices": Case(lambda s: dict(masks=np.random.default_rng(0).random((s["N"], 3, 4)) < 0.5,
                                                max_keep=5), dict(N=2)),
    # hybrid stacks
    "hybrid.jamba_params": Case(lambda s: dict(config=__import__("seqcheck.reference.hybrid").reference.hybrid.JambaConfig(),
                                               seed=3), {}),
    "hybrid.jamba_parallel": Case(lambda s: {**_jamba(**s), "valid": np.ones((s["B"], s["T"]), bool),
                                             "return_router_loss": True}, dict(B=1, T=3), ("B", "T")),
    "hybrid.jamba_recurrent": Case(lambda s: _jamba(**s), dict(B=1, T=3), ("B", "T")),
    "hybrid.jamba_prefill_decode": Case(lambda s: {**_jamba(**s), "prefill": min(2, s["T"])}, dict(B=1, T=3),
                                        ("B", "T")),
    "hybrid.jamba_step": Case(lambda s: {"x_t": normal(s["B"], 8), "params": _jamba(s["B"], 1)["params"],
                                         "cache": _jamba_cache(s["B"])}, dict(B=1), ("B",)),
    "hybrid.jamba_layer_parallel": Case(lambda s: {**_jamba(**s, name="h"), "layer": 1,
                                                   "valid": np.ones((s["B"], s["T"]), bool)}, dict(B=1, T=3), ("B", "T")),
    "hybrid.jamba_layer_prefill_decode": Case(lambda s: {**_jamba(**s, name="h"), "layer": 1, "prefill": min(2, s["T"])},
                                              dict(B=1, T=3), ("B", "T")),
    "moe.load_loss": Case(lambda s: {**_moe_noisy(**s), "top_k": 2}, MOE_ROUTER, ("B", "T")),
}


def case_function(case_name: str):
    return public_callables()[case_name.split("(")[0]]


# ----------------------------------------------------------------------------- mutations


def mutations(value, parameter) -> list:
    """(label, mutated value) for one argument's valid ``value``; ``parameter`` from its signature."""
    out = []
    if value is not None and parameter.default is not None:
        out.append(("None", None))
    if isinstance(value, (bool, np.bool_)):
        return out + [("str", "abc"), ("int for bool", 1)]
    if isinstance(value, numbers.Real):
        out += [("bool", True), ("complex", complex(value, 1.0)), ("str", "abc"), ("ndim+1", np.array([value]))]
        if isinstance(value, numbers.Integral):
            out.append(("-1", -1))
        else:
            out += [("nan", float("nan")), ("inf", float("inf"))]
        return out
    if isinstance(value, np.ndarray):
        out += [("str", "abc"), ("object str", np.full(value.shape, "a", dtype=object)),
                ("ndim+1", value[..., None])]
        if value.ndim:
            out.append(("ndim-1", value[0] if value.shape[0] else value.reshape(value.shape[1:])))
        out += [(f"axis {i} +1", np.concatenate([value, value.take([0], axis=i)], axis=i))
                for i, n in enumerate(value.shape) if n]
        if value.dtype == bool:
            out.append(("float for bool", value.astype(np.float64)))
        else:
            out.append(("bool", value != 0))
            if value.dtype.kind != "c":
                out.append(("complex", value + 0.5j))
        return out
    return out + [("str", "not-an-option")] if isinstance(value, str) else out + [("str", "abc")]


# Mutations that are valid by design, (function name pattern, argument, mutation pattern): reason.
# Function names are ``__qualname__``s (a registered form that is a reference shares its entries);
# patterns are fnmatch's. An allowed mutation may run, or raise an error that names the argument.
SOFTMAX = ("softmax_attention", "flash_attention", "split_kv_attention", "attention_in_dtype",
           "softmax_attention_mp", "flash_attention_mp", "cache_attention")
DECODE_FNS = ("simulate_decoding", "decode", "*_decode")
ALLOWED = {
    # complex numbers where the mechanism is defined for them
    ("discretize", "[AB]", "complex"): "discretisation is defined for complex systems",
    ("lti_kernel*", "[ABC]*", "complex"): "the Krylov kernel of a complex system is complex",
    ("selective_scan_*", "A", "complex"): "complex A: the complex selective scan (2 Re(C x))",
    ("selective_scan_*", "[BC]", "complex"): "with a complex A, B and C may be complex",
    ("associative_scan", "[ab]", "complex"): "the scan operator is elementwise on any numbers",
    ("segsum", "x", "complex"): "segment sums of complex logs (the complex selective scan's chunks)",
    ("segprod", "a", "complex"): "segment products of complex decays",
    # None meaning something
    ("s4d_kernel", "B", "None"): "B=None means ones (models/s4/s4d.py has no B)",
    ("s4d_vjp", "B", "None"): "B=None means ones, which have no gradient",
    ("s4d_krylov_kernel", "B", "None"): "B=None means ones",
    ("rms_norm_gated", "z", "None"): "z=None: no gate",
    ("*_step", "state", "None"): "state=None: the zero state",
    # arrays of any shape
    ("rope_angles", "positions", "[an][xd]*"): "positions may have any shape",
    ("sinusoidal*", "positions", "[an][xd]*"): "positions may have any shape",
    ("*_feature_map", "x", "[an][xd]*"): "an elementwise map takes any shape",
    ("segsum", "x", "[an][xd]*"): "(..., T): any leading shape, any T",
    ("segprod", "a", "[an][xd]*"): "(..., T): any leading shape, any T",
    ("topk_lowest_index", "scores", "axis*"): "(..., n): any leading shape, any n >= k",
    ("topk_lowest_index", "scores", "ndim-1"): "(..., n): any leading shape",
    ("argmin_highest_index", "scores", "[an][xd]*"): "(..., n): any shape with n >= 1",
    # axes that no other argument shares
    ("causal_conv", "[uK]", "axis [01] +1"): "any batch B; u: any length T; K: any kernel length L",
    ("fft_conv", "[uK]", "axis [01] +1"): "any batch B; u: any length T; K: any kernel length L",
    ("lti_*", "u", "axis [01] +1"): "any batch B and length T",
    ("lti_kernel*", "Abar", "ndim-1"): "Abar (N, N) is shared by every channel",
    ("lti_recurrent", "Abar", "ndim-1"): "Abar (N, N) is shared by every channel",
    ("lti_vjp", "Abar", "ndim-1"): "Abar (N, N) is shared by every channel",
    ("discretize", "B", "axis 1 +1"): "any number M of inputs",
    ("*", "alibi_slopes", "ndim*"): "(H,) and (B, H) are both layouts: the mutated shape can be the other one",
    ("apply_rope", "x", "axis 2 +1"): "any number of heads H",
    ("rope_*", "x", "axis 2 +1"): "any number of heads H",
    ("apply_rope", "positions", "ndim-1"): "positions (T,) are shared by the batch",
    ("rope_*", "positions", "ndim-1"): "positions (T,) are shared by the batch",
    ("alibi_bias", "slopes", "axis 0 +1"): "one slope per head: any H",
    ("combine_partials", "outputs", "axis 4 +1"): "any Dv",
    ("ssd_*", "x", "axis 3 +1"): "any head dim P (when no initial state fixes it)",
    ("selective_scan_*", "[BC]", "axis 2 +1"): "(B, T, G, N): any number of groups G dividing D",
    ("selective_scan_step", "[BC]_t", "axis 1 +1"): "(B, G, N): any number of groups G dividing D",
    ("selective_scan_step", "[BC]_t", "ndim-1"): "(B, G, N) -> (G, N): can read as the layout (B, N)",
    ("linear_attention_parallel", "q", "axis 1 +1"): "non-causal: T is independent of the key length S",
    ("linear_attention_*", "v", "axis 3 +1"): "any value dim M (when no initial state fixes it)",
    ("retention_*", "v", "axis 3 +1"): "any value dim V (when no initial state fixes it)",
    ("gla_*", "v", "axis 3 +1"): "any value dim V (when no initial state fixes it)",
    ("msr_*", "v", "axis 3 +1"): "any value dim V",
    ("delta_rule_*", "v", "axis 3 +1"): "any value dim V (when no initial state fixes it)",
    ("aft_*", "q", "None"): "q=None: no gate (sigmoid(Q) = 1), the ungated AFT that RWKV-4's WKV is",
    ("aft_full*", "w", "ndim*"): "(T, T) and (T, T, D) are both layouts: the mutated shape can be the other one",
    ("aft_local", "w", "ndim*"): "(T, T) and (T, T, D) are both layouts: the mutated shape can be the other one",
    ("wkv7_*", "v", "axis 3 +1"): "any value dim V (when no initial state fixes it)",
    ("wkv6_*", "v", "axis 3 +1"): "any value dim V (when no initial state fixes it)",
    ("wkv6_*", "u", "ndim-1"): "u (H, K) -> (H,): one bonus per head is a layout",
    ("wkv6_*", "g", "ndim*"): "(B, T, H, K), (B, T, H), (H, K) and (H,) are all layouts: the mutated shape can be "
                              "another one",
    ("wkv_group_norm", "o", "axis [01] +1"): "any batch and time",
    ("delta_rule_*", "g*", "None"): "no gate: the plain delta rule",
    ("msr_rotate", "x", "axis [02] +1"): "any batch and head count",
    **{(f, "q", "axis 3 +1"): "H need only be a multiple of Hkv" for f in ("simulate_layers", "decode_layers")},
    **{(f, "v", "axis 4 +1"): "any Dv" for f in ("simulate_layers", "decode_layers")},
    **{(f, "q", "axis 2 +1"): "H need only be a multiple of Hkv (GQA, MQA)" for f in SOFTMAX + DECODE_FNS
       + ("masked_attention*", "block_sparse_attention*")},
    **{(f, "q", "axis 1 +1"): "Tq is independent of Tk" for f in SOFTMAX},
    ("tova_select", "probs", "axis 1 +1"): "any head count (TOVA averages over heads)",
    **{(f, "v", "axis 3 +1"): "any Dv" for f in SOFTMAX + DECODE_FNS},
    ("*_routing", "logits", "axis * +1"): "any B, T and E (>= top_k)",
    ("*", "clean_logits", "axis * +1"): "any B, T and E, when noise_logits and noise match",
    ("rank_experts", "scores", "[an][xd]*"): "(..., E): any shape",
    ("apply_capacity", "capacity", "None"): "capacity None: no limit",
    ("switch_routing", "capacity", "None"): "capacity None: no limit",
    ("moe_*", "capacity", "None"): "capacity None: no limit",
    ("load_balancing_loss", "logits", "axis 2 +1"): "any E above the chosen experts",
    ("load_balancing_loss", "expert_index", "axis 2 +1"): "any number of slots k",
    ("router_z_loss", "logits", "axis * +1"): "any B, T and E",
    ("expert_ffn", "x", "axis 0 +1"): "any number of rows n",
    ("dense_gates", "experts", "*"): "experts: any count above the routing's indices",
    ("routed_mask", "scores", "axis [01] +1"): "any B and T >= k",
    ("multi_head", "x_q", "axis 1 +1"): "any number of queries n",
    ("*attention", "v", "axis 3 +1"): "any Dv",
    ("*attention_in_dtype", "v", "axis 3 +1"): "any Dv",
    ("*attention_vjp", "lse_cotangent", "None"): "no lse cotangent: lse not used",
    ("block_mask_of", "mask", "axis [01] +1"): "any Tq and Tk",
    ("collate_indices", "masks", "[an][xd]*"): "(N, ...): any N >= 1 and any shape after it",
    ("longformer_mask", "global_tokens", "axis 0 +1"): "a repeated global token is still one",
    ("longformer_mask", "global_tokens", "ndim-1"): "global_tokens[0] as a scalar: refused, or a valid index",
    ("*multiply", "x", "axis 0 +1"): "any batch",
    ("monarch_vjp", "[xw]*", "complex"): "Monarch factors and inputs may be complex",
    ("monarch_vjp", "cotangent", "complex"): "complex outputs take complex cotangents",
    ("*multiply", "x", "ndim-1"): "x (..., n): any leading shape",
    ("*multiply", "[xw]*", "complex"): "Monarch factors and inputs may be complex (the DFT is Monarch)",
    ("monarch_*", "[wMD]*", "complex"): "Monarch factors may be complex (the DFT is Monarch)",
    ("*dft", "x", "[an][xd]*"): "x (..., n): any leading shape, any n",
    ("*dft", "x", "complex"): "the DFT of a complex signal",
    ("*multiply", "x", "ndim+1"): "x (..., n): any leading shape (n = 1 reads the new axis as n)",
    ("monarch_dense", "w1", "axis 2 +1"): "any input block size p",
    ("monarch_transpose", "w1", "axis 2 +1"): "any input block size p",
    ("*", "w2", "axis 1 +1"): "any block output size s",
    ("monarch_fft_conv", "[uK]", "axis [01] +1"): "any batch B; u: any length T; K: any kernel length L",
    ("jamba_*", "[xh]", "axis [01] +1"): "any batch B and length T (valid, when given, names the mismatch)",
    ("jamba_step", "x_t", "axis 0 +1"): "x_t's batch: the cache mismatch names x_t",
    ("jamba_step", "cache", "None"): "cache None: an empty cache",
    ("multi_head", "x_kv", "axis 1 +1"): "any number of keys m, when value_scale matches",
    ("colt5_*", "x", "axis 1 +1"): "x's T: the scores mismatch names x",
}


def is_allowed(fn_name: str, arg: str, label: str):
    return [reason for (f, a, m), reason in ALLOWED.items() if fnmatch(fn_name, f) and fnmatch(arg, a)
            and fnmatch(label, m)]


def names_argument(message: str, name: str) -> bool:
    """The message is about ``name``: it starts with it, or says "to match <name>", "like <name>",
    "u and <name>", "<name> or ..." (the argument an expected shape comes from)."""
    n = re.escape(name)
    return bool(re.match(rf"{n}(?![\w])", message) or re.search(rf"\b(?:match|like|and|or) {n}(?![\w])", message))


def walk(fn, args: dict, fn_name: str) -> tuple[list, int]:
    """Every one-argument mutation of a valid call: (the problems found, how many were run)."""
    parameters = inspect.signature(fn).parameters
    var_keyword = next((p for p in parameters.values() if p.kind == p.VAR_KEYWORD), None)
    problems, count = [], 0
    fn(**args)  # the valid call runs
    for arg, value in args.items():
        parameter = parameters.get(arg, var_keyword)
        for label, bad in mutations(value, parameter):
            count += 1
            try:
                with np.errstate(all="ignore"):
                    fn(**{**args, arg: bad})
            except (ValueError, TypeError) as e:
                if not names_argument(str(e), arg):
                    problems.append(f"{arg} <- {label}: {type(e).__name__} does not name {arg!r}: {e}")
            except Exception as e:  # noqa: BLE001 -- anything else is a failure to report
                problems.append(f"{arg} <- {label}: {type(e).__name__}: {e}")
            else:
                if not is_allowed(fn_name, arg, label):
                    problems.append(f"{arg} <- {label}: accepted silently")
    return problems, count


def test_every_public_function_has_a_case():
    names = set(public_callables())
    cased = {name.split("(")[0] for name in CASES}
    assert not names - cased, f"add a valid-argument builder to CASES for {sorted(names - cased)}"
    assert not cased - names, f"CASES names functions that are not public: {sorted(cased - names)}"


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_reference_refuses_bad_input_by_name(case_name):
    case = CASES[case_name]
    fn = case_function(case_name)
    problems, _ = walk(fn, case.build(case.sizes), fn.__qualname__)
    assert not problems, f"{case_name}:\n  " + "\n  ".join(problems)


def draw(key: str, n: int = 8) -> dict:
    """A deterministic valid example of form ``key``: of the first n drawn, the one with most arguments given."""
    seen = []

    @settings(database=None, max_examples=n, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(inputs_for(key))
    def collect(args):
        seen.append(args)

    collect()
    size = lambda a: sum(np.size(v) for v in a.values() if isinstance(v, np.ndarray))  # noqa: E731
    return max(seen, key=lambda a: (sum(v is not None for v in a.values()), -size(a)))


@pytest.mark.parametrize("key", equiv.forms())
def test_form_refuses_bad_input_by_name(key):
    fn = equiv.reference(key)
    problems, _ = walk(fn, draw(key), fn.__qualname__)
    assert not problems, f"{key}:\n  " + "\n  ".join(problems)


# ----------------------------------------------------------------------------- empty axes


def arrays_of(result) -> list:
    """The arrays in a result (tuples, named tuples and lists flattened; None and scalars skipped)."""
    if isinstance(result, np.ndarray):
        return [result]
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in arrays_of(r)]
    return []


EMPTY_CASES = [(name, size) for name, case in sorted(CASES.items()) for size in case.sizes]


@pytest.mark.parametrize("case_name,size", EMPTY_CASES)
def test_empty_axes(case_name, size):
    """Batch and time sizes may be 0: outputs have the predicted shape with that axis 0 and a returned
    state is the initial state. Any other size 0 is a ValueError naming an argument that carries it."""
    case = CASES[case_name]
    fn = case_function(case_name)
    args1, args2 = case.build(case.sizes), case.build({**case.sizes, size: 2 * case.sizes[size]})
    carriers = [n for n in args1 if not _same(args1[n], args2[n])]
    args0 = case.build({**case.sizes, size: 0})
    if size not in case.empty:
        with pytest.raises(ValueError) as info:
            fn(**args0)
        assert any(names_argument(str(info.value), n) for n in carriers), \
            f"{size}=0: the error should name one of {carriers}: {info.value}"
        return
    r1, r2 = fn(**args1), fn(**args2)
    with np.errstate(all="ignore"):
        r0 = fn(**args0)
    if isinstance(r1, list) and len(r1) != len(r2):  # one result per layer
        assert r0 == [], f"{size}=0: expected no results, got {len(r0)}"
        return
    out1, out2, out0 = arrays_of(r1), arrays_of(r2), arrays_of(r0)
    assert len(out0) == len(out1)
    initial = arrays_of(args0.get("initial_state", args0.get("state")))
    unchanged = [i for i, (a, b) in enumerate(zip(out1, out2)) if a.shape == b.shape]
    for i, (a, b, got) in enumerate(zip(out1, out2, out0)):
        want = tuple(0 if m != n else m for m, n in zip(a.shape, b.shape))
        assert got.shape == want, f"{size}=0: output {i} has shape {got.shape}, expected {want}"
    if initial and len(unchanged) == len(initial) and size in ("T",):
        for i, state in zip(unchanged, initial):
            np.testing.assert_array_equal(out0[i], state, err_msg="T=0: the returned state is the initial state")


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.shape(a) == np.shape(b)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b if not isinstance(a, Policy) else True


# ----------------------------------------------------------------------------- float64 whatever comes

LOW_PRECISION_BY_DESIGN = ("attention.attention_in_dtype", "attention.attention_vjp_in_dtype",
                           "delta.delta_rule_vjp_in_dtype", "gla.gla_vjp_in_dtype",
                           "mamba.selective_scan_vjp_in_dtype", "mamba.ssd_vjp_in_dtype", "positional.rope_in_dtype",
                           "rwkv.wkv6_vjp_in_dtype")  # return their dtype


@pytest.mark.parametrize("case_name", sorted(CASES))
def test_references_compute_in_float64(case_name):
    """Float16 arrays in, float64 (or complex128) out: a reference computes in float64 (DESIGN.md)."""
    if case_name.split("(")[0] in LOW_PRECISION_BY_DESIGN or case_name.endswith("_mp"):
        return
    args = {n: v.astype(np.complex64 if v.dtype.kind == "c" else np.float16)
            if isinstance(v, np.ndarray) and v.dtype.kind in "fc" else v
            for n, v in CASES[case_name].build(CASES[case_name].sizes).items()}
    with np.errstate(all="ignore"):
        outputs = arrays_of(case_function(case_name)(**args))
    for i, out in enumerate(outputs):
        if out.dtype.kind in "fc":
            assert out.dtype in (np.float64, np.complex128), f"output {i} is {out.dtype}"


# ----------------------------------------------------------------------------- the audit's findings, by name


def test_known_silent_acceptances_now_raise():
    from seqcheck.reference.attention import attention_in_dtype, combine_partials
    from seqcheck.reference.linear_attention import elu_feature_map
    from seqcheck.reference.mamba import segprod, segsum
    from seqcheck.reference.positional import rope_angles, rope_matrix, sinusoidal_encoding

    outs, lses = np.zeros((2, 1, 1, 1, 3)), np.zeros((2, 1, 1, 1))
    s4d_krylov = equiv.reference("ssm.s4d.krylov")
    q = np.ones((1, 2, 1, 2))
    cases = [
        (lambda: combine_partials(outs + 1j, lses), TypeError, "outputs must hold real numbers"),
        (lambda: combine_partials(outs, lses + 1j), TypeError, "lses must hold real numbers"),
        (lambda: combine_partials(outs.astype(bool), lses), TypeError, "outputs must hold real numbers"),
        (lambda: rope_angles(None, 4), TypeError, "positions must hold real numbers; got None"),
        (lambda: rope_matrix(None, 4), TypeError, "position must hold real numbers; got None"),
        (lambda: sinusoidal_encoding(None, 4), TypeError, "positions must hold real numbers; got None"),
        (lambda: elu_feature_map(None), TypeError, "x must hold real numbers; got None"),
        (lambda: segsum(np.ones(3, bool)), TypeError, "x must hold"),
        (lambda: segprod(np.ones(3, bool)), TypeError, "a must hold"),
        (lambda: s4d_krylov(np.zeros(2), -np.ones((2, 3)) + 1j, np.ones(3), np.ones((2, 3)), 4), ValueError,
         r"B must have shape \(H, n\)=\(2, 3\) to match A"),
        (lambda: s4d_krylov(np.zeros(2), np.ones((2, 3), bool), None, np.ones((2, 3)), 4), TypeError,
         "A must hold"),
        (lambda: attention_in_dtype(q, q, q, dtype=None), TypeError, "dtype must be a floating dtype"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
