"""Checking a candidate's backward (equiv.check(grad=True), equiv.check_vjp, seqcheck check --grad):
correct torch autograd attention passes for every seed; a backward that ignores the causal mask
(triton #4541), a dQ without the softmax scale and a backward that drops the lse cotangent are
caught, named by gradient and place; GLA's and the selective scan's torch autograd pass, and a
dropped initial-state gradient, a gate gradient computed and dropped (mamba #342) and padded steps
leaking into dA (mamba #368) are caught; usage errors are errors, not failures."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqcheck import equiv
from seqcheck.properties import inputs_for
from seqcheck.reference.attention import flash_attention_backward
from seqcheck.reference import rwkv as rwkv_ref
from seqcheck.reference.mamba import selective_scan_vjp, ssd_vjp

torch = pytest.importorskip("torch")

from kernels.torch_attention import causal_blind_backward, torch_attention  # noqa: E402

KEY = "attention.softmax.parallel"
CAUSAL_ONLY = dict(window=None, key_padding_mask=False, alibi_slopes=None, softcap=None, scale=None,
                   return_lse=False, causal=True)


@pytest.mark.parametrize("seed", range(4))
def test_torch_autograd_attention_passes(seed):
    result = equiv.check(torch_attention, KEY, grad=True, backend="torch", seed=seed, max_examples=40,
                         progress=False)
    assert result.passed, result


def test_a_backward_that_ignores_the_causal_mask_is_caught_by_its_gradients_only():
    inputs = inputs_for(KEY, **CAUSAL_ONLY)
    forward = equiv.check(causal_blind_backward, KEY, backend="torch", inputs=inputs, seed=0, max_examples=40,
                          progress=False)
    assert forward.passed  # its forward is right
    result = equiv.check(causal_blind_backward, KEY, grad=True, backend="torch", inputs=inputs, seed=0,
                         max_examples=40, progress=False)
    assert result.status == "failed"
    message = result.counterexample.message
    assert re.search(r"'d[qkv]'.* at \(batch \d+, time \d+, head \d+, channel \d+\)", message), message


def _flash_vjp(**args):
    """FlashAttention-2's backward behind check_vjp's interface (the forward's out and lse recomputed)."""
    from seqcheck.reference.attention import flash_attention

    options = {n: a for n, a in args.items() if n not in ("cotangent", "lse_cotangent", "return_lse")}
    out, lse = flash_attention(**options, return_lse=True, block_q=3, block_k=2)
    return flash_attention_backward(**options, out=out, lse=lse, cotangent=args["cotangent"],
                                    lse_cotangent=args["lse_cotangent"], block_q=3, block_k=2)


def test_check_vjp_accepts_flash_attentions_backward():
    assert equiv.check_vjp(_flash_vjp, KEY, seed=0, max_examples=60, progress=False).passed


@pytest.mark.parametrize("bug", ["dq without the scale", "lse cotangent dropped"])
def test_check_vjp_catches(bug):
    def vjp(**args):
        if bug == "lse cotangent dropped":
            return _flash_vjp(**{**args, "lse_cotangent": None})
        grads = _flash_vjp(**args)
        scale = args.get("scale") or args["q"].shape[-1] ** -0.5
        return {**grads, "q": grads["q"] / scale}

    inputs = inputs_for(KEY, return_lse=True) if bug == "lse cotangent dropped" else None
    result = equiv.check_vjp(vjp, KEY, seed=0, max_examples=60, progress=False, inputs=inputs)
    assert result.status == "failed"
    assert ("'dq'" in result.counterexample.message) or bug != "dq without the scale"


def test_replay_reproduces_a_counterexample():
    inputs = inputs_for(KEY, **CAUSAL_ONLY)
    result = equiv.check(causal_blind_backward, KEY, grad=True, backend="torch", inputs=inputs, seed=0,
                         max_examples=40, progress=False)
    assert not equiv.replay_grad(causal_blind_backward, KEY, result.counterexample.args).passed
    assert equiv.replay_grad(torch_attention, KEY, result.counterexample.args).passed


def test_usage_errors():
    with pytest.raises(ValueError, match="^backend"):
        equiv.check(torch_attention, KEY, grad=True, backend="numpy")
    with pytest.raises(ValueError, match="^dtype: the gradients of 'rwkv.wkv7.recurrent' have no low-precision"):
        equiv.check(torch_attention, "rwkv.wkv7.recurrent", grad=True, backend="torch", dtype="float32")
    with pytest.raises(ValueError, match="no gradient oracle yet"):
        equiv.check(torch_attention, "mamba.ssd.chunked", grad=True, backend="torch")
    with pytest.raises(TypeError, match="^grad"):
        equiv.check(torch_attention, KEY, grad="yes")
    detached = equiv.check(lambda q, k, v, **o: torch_attention(q.detach(), k.detach(), v.detach(), **o), KEY,
                           grad=True, backend="torch", seed=0, max_examples=5, progress=False)
    assert detached.status == "error" and "autograd" in detached.reason


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("seed", range(3))
def test_torch_autograd_attention_passes_in_low_precision(dtype, seed):
    """The baseline: the definition's backward in the dtype (attention_vjp_in_dtype), 4 times its
    error plus 4 ulps at the sizes of the terms each gradient sums."""
    result = equiv.check(torch_attention, KEY, grad=True, backend="torch", dtype=dtype, seed=seed, max_examples=40,
                         progress=False)
    assert result.passed, result


def test_low_precision_gradient_budgets_still_catch_bugs():
    """A backward ignoring the causal mask fails in float32; a bfloat16 kernel declared float32
    exceeds the float32 budget."""
    causal = inputs_for(KEY, **CAUSAL_ONLY)
    result = equiv.check(causal_blind_backward, KEY, grad=True, backend="torch", dtype="float32", seed=0,
                         max_examples=40, progress=False, inputs=causal)
    assert result.status == "failed" and result.dtype == "float32"

    def in_bfloat16(q, k, v, **options):
        out = torch_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), **options)
        return tuple(x.float() for x in out) if isinstance(out, tuple) else out.float()

    result = equiv.check(in_bfloat16, KEY, grad=True, backend="torch", dtype="float32", seed=0, max_examples=40,
                         progress=False)
    assert result.status == "failed"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_linear_recurrences_pass_in_low_precision(dtype):
    """GLA's baseline: gla_vjp_in_dtype (retention's with g = log gamma, SSD's, RWKV-6's and
    linear attention's through their maps to GLA), the delta rule's delta_rule_vjp_in_dtype; the
    floor at the terms' sizes times 1 + the decays' running exponent."""
    from kernels.torch_delta import torch_delta
    from kernels.torch_gla import torch_gla, torch_retention
    from kernels.torch_linear import torch_linear_attention
    from kernels.torch_ssd import torch_ssd
    from kernels.torch_wkv6 import torch_wkv6

    for candidate, key in ((torch_gla, "gla.gla.recurrent"), (torch_retention, "retnet.retention.recurrent"),
                           (torch_ssd, "mamba.ssd.recurrent"), (torch_delta, "delta.delta_rule.recurrent"),
                           (torch_wkv6, "rwkv.wkv6.recurrent"), (torch_linear_attention, LINEAR)):
        for seed in range(2):
            result = equiv.check(candidate, key, grad=True, backend="torch", dtype=dtype, seed=seed, max_examples=30,
                                 progress=False)
            assert result.passed, result


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_selective_scan_passes_in_low_precision(dtype):
    """The baseline: selective_scan_vjp_in_dtype; complex A only in float32 (torch has no
    bfloat16 complex)."""
    from kernels.torch_scan import torch_scan

    key = "mamba.selective_scan.recurrent"
    inputs = inputs_for(key) if dtype == "float32" else inputs_for(key, complex_A=False)

    def in_the_declared_dtype(u, delta, A, B, C, *args, **options):
        assert u.dtype == getattr(torch, dtype) and A.dtype in (getattr(torch, dtype), torch.complex64)
        return torch_scan(u, delta, A, B, C, *args, **options)

    for seed in range(2):
        result = equiv.check(in_the_declared_dtype, key, grad=True, backend="torch", dtype=dtype, seed=seed,
                             max_examples=30, progress=False, inputs=inputs)
        assert result.passed, result


def test_low_precision_recurrence_backwards_still_catch_bugs():
    """A retention whose state is detached between steps, an SSD whose dt is detached where it
    scales x, a selective scan whose gate's gradient is dropped (mamba #342), a delta rule whose
    erase passes no gradient and a linear attention whose normaliser is held constant fail in
    float32, and so does an RWKV-6 backward ignoring the state's cotangent (transformers PR
    #23774)."""
    from kernels.torch_delta import delta_with_the_prediction_detached
    from kernels.torch_gla import retention_truncated_backward
    from kernels.torch_linear import linear_attention_with_the_denominator_detached
    from kernels.torch_scan import scan_with_z_gradient_dropped
    from kernels.torch_ssd import ssd_with_dt_detached_in_the_input
    from kernels.torch_wkv6 import wkv6_ignoring_the_state_cotangent

    for wrong, key in ((retention_truncated_backward, "retnet.retention.recurrent"),
                       (ssd_with_dt_detached_in_the_input, "mamba.ssd.recurrent"),
                       (scan_with_z_gradient_dropped, "mamba.selective_scan.recurrent"),
                       (delta_with_the_prediction_detached, "delta.delta_rule.recurrent"),
                       (linear_attention_with_the_denominator_detached, LINEAR)):
        result = equiv.check(wrong, key, grad=True, backend="torch", dtype="float32", seed=0, max_examples=40,
                             progress=False)
        assert result.status == "failed"
    result = equiv.check(wkv6_ignoring_the_state_cotangent, "rwkv.wkv6.recurrent", grad=True, backend="torch",
                         dtype="float32", seed=0, max_examples=40, progress=False,
                         inputs=inputs_for("rwkv.wkv6.recurrent", return_state=True))
    assert result.status == "failed"


def test_check_vjp_in_float32_passes_the_arguments_in_float32():
    """An explicit backward declared float32 receives float32 arrays; the definition's backward
    in float32 is within its own baseline budget, and one that drops the lse cotangent is not."""
    from seqcheck.reference.attention import attention_vjp_in_dtype

    def vjp(*, return_lse=False, **args):
        assert all(args[n].dtype == np.float32 for n in ("q", "k", "v", "cotangent"))
        return attention_vjp_in_dtype(**args, dtype=np.float32)

    def without_dlse(*, lse_cotangent=None, **args):
        return vjp(**args)

    assert equiv.check_vjp(vjp, KEY, dtype="float32", seed=0, max_examples=40, progress=False).passed
    with_lse = inputs_for(KEY, return_lse=True)
    result = equiv.check_vjp(without_dlse, KEY, dtype="float32", seed=0, max_examples=40, progress=False,
                             inputs=with_lse)
    assert result.status == "failed"


def test_the_cli_takes_grad(tmp_path):
    kernels = Path(__file__).parent / "kernels" / "torch_attention.py"
    (tmp_path / "attn.py").write_text(kernels.read_text())
    run = subprocess.run([sys.executable, "-m", "seqcheck.equiv.cli", "check", "attn.py:causal_blind_backward", KEY,
                          "--grad", "--backend", "torch", "--seed", "0", "--max-examples", "30",
                          *[f"--fix={n}={v!r}" for n, v in CAUSAL_ONLY.items()]],
                         capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert "the gradients of" in run.stderr and "FAILED" in run.stdout


GLA = "gla.gla.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_autograd_gla_passes(seed):
    from kernels.torch_gla import torch_gla

    result = equiv.check(torch_gla, GLA, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_a_gate_without_gradient_is_caught():
    from kernels.torch_gla import gla_with_the_gate_detached

    assert equiv.check(gla_with_the_gate_detached, GLA, backend="torch", seed=0, max_examples=30,
                       progress=False).passed
    result = equiv.check(gla_with_the_gate_detached, GLA, grad=True, backend="torch", seed=0, max_examples=40,
                         progress=False)
    assert result.status == "failed" and "'dg'" in result.counterexample.message


def test_a_state_gradient_carried_with_the_wrong_decay_is_caught():
    """The reverse pass decays the state's cotangent by a_t before adding step t's output term
    (one step early), the chunk-boundary bug class of the issue."""
    def vjp(q, k, v, g, *, cotangent, state_cotangent=None, scale=None, initial_state=None, return_state=False):
        B, T, H, K = q.shape
        scale = K ** -0.5 if scale is None else scale
        a = np.exp(np.broadcast_to(g[..., None], q.shape) if g.ndim == 3 else g)
        S0 = np.zeros((B, H, K, v.shape[3])) if initial_state is None else initial_state
        states = [S0]
        for t in range(T):
            states.append(a[:, t, :, :, None] * states[-1] + k[:, t, :, :, None] * v[:, t, :, None, :])
        G = np.zeros_like(S0) if state_cotangent is None else state_cotangent
        grads = {n: np.zeros(np.shape(x)) for n, x in (("q", q), ("k", k), ("v", v))}
        dg = np.zeros(q.shape)
        for t in reversed(range(T)):
            G = a[:, t, :, :, None] * G + scale * q[:, t, :, :, None] * cotangent[:, t, :, None, :]  # decayed too early
            grads["q"][:, t] = scale * np.einsum("bhkv,bhv->bhk", states[t + 1], cotangent[:, t])
            grads["k"][:, t] = np.einsum("bhkv,bhv->bhk", G, v[:, t])
            grads["v"][:, t] = np.einsum("bhkv,bhk->bhv", G, k[:, t])
            dg[:, t] = a[:, t] * (G * states[t]).sum(-1)
        grads["g"] = dg.sum(-1) if g.ndim == 3 else dg
        return grads

    result = equiv.check_vjp(vjp, GLA, seed=0, max_examples=40, progress=False)
    assert result.status == "failed"


@pytest.mark.parametrize("seed", range(2))
def test_torch_autograd_retention_passes(seed):
    from kernels.torch_gla import torch_retention

    result = equiv.check(torch_retention, "retnet.retention.recurrent", grad=True, backend="torch", seed=seed,
                         max_examples=40, progress=False)
    assert result.passed, result


def test_a_truncated_backward_through_the_state_is_caught():
    from kernels.torch_gla import retention_truncated_backward

    key = "retnet.retention.recurrent"
    assert equiv.check(retention_truncated_backward, key, backend="torch", seed=0, max_examples=30,
                       progress=False).passed
    result = equiv.check(retention_truncated_backward, key, grad=True, backend="torch", seed=0, max_examples=40,
                         progress=False)
    assert result.status == "failed" and re.search(r"'d[kv]'", result.counterexample.message)


MSR = "retnet.msr.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_msr_passes(seed):
    from kernels.torch_msr import torch_msr

    result = equiv.check(torch_msr, MSR, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_an_msr_whose_norm_passes_no_gradient_is_caught():
    """The RMSNorm's normaliser held constant in the backward (dz = r dy): the projection
    -r y (dy . y)/V lost, so dq, dk and dv are all wrong; the forward is right."""
    from kernels.torch_msr import msr_with_the_norm_detached

    assert equiv.check(msr_with_the_norm_detached, MSR, backend="torch", seed=0, max_examples=20,
                       progress=False).passed
    result = equiv.check(msr_with_the_norm_detached, MSR, grad=True, backend="torch", seed=0, max_examples=40,
                         progress=False)
    assert result.status == "failed" and re.search(r"'d[qkv]'", result.counterexample.message)


def test_an_msr_computed_in_float32_fails_the_float64_gradient_budget():
    """A kernel that silently computes in float32 and casts back: the derived float64 budget,
    loose as it is (the forward's cancellation times the backward's), is far below float32's
    rounding."""
    from kernels.torch_msr import torch_msr

    def in_float32(q, k, v, *, eps=1e-6):
        return torch_msr(q.float(), k.float(), v.float(), eps=eps).double()

    result = equiv.check(in_float32, MSR, grad=True, backend="torch", seed=0, max_examples=40, progress=False)
    assert result.status == "failed"


WKV7 = "rwkv.wkv7.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_wkv7_passes(seed):
    from kernels.torch_wkv7 import torch_wkv7

    result = equiv.check(torch_wkv7, WKV7, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_a_wkv7_backward_reading_its_states_one_step_late_is_caught():
    """da and db from S_t where the rank-one term read S_{t-1} (hanbt/learn_dl #29); the
    reference's own VJP passes the same check."""
    from kernels.torch_wkv7 import vjp_reading_the_state_after_the_step
    from seqcheck.reference.rwkv7 import wkv7_vjp

    def right(return_state=False, **args):
        return wkv7_vjp(**args)

    assert equiv.check_vjp(right, WKV7, seed=0, max_examples=20, progress=False).passed
    result = equiv.check_vjp(vjp_reading_the_state_after_the_step, WKV7, seed=0, max_examples=40, progress=False)
    assert result.status == "failed" and re.search(r"'d[ab]'", result.counterexample.message)


LTI = "ssm.lti.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_lti_passes_as_a_recurrence_and_as_s4s_fftconv(seed):
    from kernels.torch_ssm import torch_lti, torch_lti_fft

    assert equiv.check(torch_lti, LTI, grad=True, backend="torch", seed=seed, max_examples=40, progress=False).passed
    without_state = inputs_for(LTI, initial_state=None)
    result = equiv.check(torch_lti_fft, LTI, grad=True, backend="torch", seed=seed, max_examples=40, progress=False,
                         inputs=without_state)
    assert result.passed, result


def test_an_fftconv_backward_without_padding_is_caught():
    """The correlations of the backward by FFTs of length T: they wrap around (the forward pads to
    2T and is right)."""
    from kernels.torch_ssm import lti_fft_with_an_unpadded_backward

    wrong, without_state = lti_fft_with_an_unpadded_backward, inputs_for(LTI, initial_state=None)
    assert equiv.check(wrong, LTI, backend="torch", seed=0, max_examples=20, progress=False,
                       inputs=without_state).passed
    result = equiv.check(wrong, LTI, grad=True, backend="torch", seed=0, max_examples=40, progress=False,
                         inputs=without_state)
    assert result.status == "failed"


S4D = "ssm.s4d.krylov"


@pytest.mark.parametrize("seed", range(3))
def test_torch_s4d_passes(seed):
    from kernels.torch_ssm import torch_s4d

    result = equiv.check(torch_s4d, S4D, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_conjugated_complex_gradients_are_caught():
    """dA, dB, dC conjugated (JAX's d/dz read as torch's dL/dRe + i dL/dIm); log_dt, real, is right."""
    from kernels.torch_ssm import s4d_with_conjugated_gradients

    wrong = s4d_with_conjugated_gradients
    assert equiv.check(wrong, S4D, backend="torch", seed=0, max_examples=20, progress=False).passed
    result = equiv.check(wrong, S4D, grad=True, backend="torch", seed=0, max_examples=40, progress=False)
    assert result.status == "failed" and re.search(r"'d[ABC]'", result.counterexample.message)


S4 = "ssm.s4.krylov_kernel"


@pytest.mark.parametrize("seed", range(3))
def test_torch_s4_passes_through_the_dense_system_and_the_dplr_path(seed):
    from kernels.torch_ssm import torch_s4_dplr, torch_s4_krylov

    for candidate in (torch_s4_krylov, torch_s4_dplr):
        result = equiv.check(candidate, S4, grad=True, backend="torch", seed=seed, max_examples=30, progress=False)
        assert result.passed, result


def test_a_conjugated_input_taken_holomorphically_is_caught():
    from kernels.torch_ssm import s4_dplr_with_q_taken_holomorphically

    wrong = s4_dplr_with_q_taken_holomorphically
    assert equiv.check(wrong, S4, backend="torch", seed=0, max_examples=20, progress=False).passed
    result = equiv.check(wrong, S4, grad=True, backend="torch", seed=0, max_examples=40, progress=False)
    assert result.status == "failed" and "'dQ'" in result.counterexample.message


DELTA = "delta.delta_rule.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_autograd_delta_rule_passes(seed):
    from kernels.torch_delta import torch_delta

    result = equiv.check(torch_delta, DELTA, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_a_delta_rule_whose_erase_passes_no_gradient_is_caught():
    from kernels.torch_delta import delta_with_the_prediction_detached

    assert equiv.check(delta_with_the_prediction_detached, DELTA, backend="torch", seed=0, max_examples=30,
                       progress=False).passed
    result = equiv.check(delta_with_the_prediction_detached, DELTA, grad=True, backend="torch", seed=0,
                         max_examples=40, progress=False)
    assert result.status == "failed"


def test_a_dropped_initial_state_gradient_is_caught():
    """The initial state detached (its gradient silently zero: fla PR #48 and #102)."""
    from kernels.torch_gla import torch_gla

    def detached_state(q, k, v, g, *, initial_state=None, **options):
        return torch_gla(q, k, v, g, initial_state=None if initial_state is None else initial_state.detach(), **options)

    result = equiv.check(detached_state, GLA, grad=True, backend="torch", seed=0, max_examples=40, progress=False,
                         inputs=inputs_for(GLA, initial_state=True))
    assert result.status == "failed" and "'dinitial_state'" in result.counterexample.message


SCAN = "mamba.selective_scan.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_autograd_selective_scan_passes(seed):
    from kernels.torch_scan import torch_scan

    result = equiv.check(torch_scan, SCAN, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_a_gate_gradient_computed_and_dropped_is_caught():
    """dz computed and never used (state-spaces/mamba #342): the forward passes, dz is 0."""
    from kernels.torch_scan import scan_with_z_gradient_dropped

    gated = inputs_for(SCAN, z=True)
    assert equiv.check(scan_with_z_gradient_dropped, SCAN, backend="torch", seed=0, max_examples=20, progress=False,
                       inputs=gated).passed
    result = equiv.check(scan_with_z_gradient_dropped, SCAN, grad=True, backend="torch", seed=0, max_examples=40,
                         progress=False, inputs=gated)
    assert result.status == "failed" and "'dz'" in result.counterexample.message


def test_padded_steps_leaking_into_the_gradients_are_caught():
    """A backward over time padded with zeros: softplus(0) = log 2 decays the state on the padded
    steps (state-spaces/mamba #368), so dA and the initial state's gradient are wrong."""
    from kernels.padded_scan import scan_vjp_over_padded_steps

    def oracle(*, return_state=False, **args):
        return selective_scan_vjp(**args)

    assert equiv.check_vjp(oracle, SCAN, seed=0, max_examples=40, progress=False).passed
    result = equiv.check_vjp(scan_vjp_over_padded_steps, SCAN, seed=0, max_examples=40, progress=False)
    assert result.status == "failed" and re.search(r"'d(A|initial_state|delta_bias)'", result.counterexample.message)


SSD = "mamba.ssd.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_autograd_ssd_passes(seed):
    from kernels.torch_ssd import torch_ssd

    result = equiv.check(torch_ssd, SSD, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_the_ssd_oracle_passes_its_own_check():
    assert equiv.check_vjp(lambda *, return_state=False, **args: ssd_vjp(**args), SSD, seed=0, max_examples=30,
                           progress=False).passed


def test_dt_detached_where_it_scales_x_is_caught():
    """dt detached in dt x (its gradient through the input lost, only the decay's part left): the
    forward is right, ddt is not."""
    from kernels.torch_ssd import ssd_with_dt_detached_in_the_input

    assert equiv.check(ssd_with_dt_detached_in_the_input, SSD, backend="torch", seed=0, max_examples=20,
                       progress=False).passed
    result = equiv.check(ssd_with_dt_detached_in_the_input, SSD, grad=True, backend="torch", seed=0, max_examples=40,
                         progress=False)
    assert result.status == "failed" and "'ddt'" in result.counterexample.message


@pytest.mark.parametrize("pairing", ["half", "interleaved"])
def test_torch_rope_passes_and_a_backward_rotating_the_wrong_way_is_caught(pairing):
    """A fused rotary backward that rotates the cotangent by +theta (the forward again) instead of
    its transpose: the forward is right, dx is not."""
    from kernels.torch_rope import rope_with_the_backward_unconjugated, torch_rope

    key = f"positional.rope.{pairing}"
    for seed in range(3):
        assert equiv.check(torch_rope[pairing], key, grad=True, backend="torch", seed=seed, max_examples=30,
                           progress=False).passed
    wrong = rope_with_the_backward_unconjugated[pairing]
    assert equiv.check(wrong, key, backend="torch", seed=0, max_examples=20, progress=False).passed
    result = equiv.check(wrong, key, grad=True, backend="torch", seed=0, max_examples=30, progress=False)
    assert result.status == "failed" and "'dx'" in result.counterexample.message
    for dtype in ("float32", "bfloat16"):  # the baseline: the cotangent rotated by -theta in the dtype
        assert equiv.check(torch_rope[pairing], key, grad=True, backend="torch", dtype=dtype, seed=0,
                           max_examples=30, progress=False).passed
        assert equiv.check(wrong, key, grad=True, backend="torch", dtype=dtype, seed=0, max_examples=30,
                           progress=False).status == "failed"


LINEAR = "linear.attention.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_linear_attention_passes(seed):
    from kernels.torch_linear import torch_linear_attention

    result = equiv.check(torch_linear_attention, LINEAR, grad=True, backend="torch", seed=seed, max_examples=40,
                         progress=False)
    assert result.passed, result


def test_a_detached_denominator_is_caught():
    """The normaliser phi(q) . z + eps held constant in the backward: dq and dk lose -(dO . out) / den."""
    from kernels.torch_linear import linear_attention_with_the_denominator_detached

    wrong = linear_attention_with_the_denominator_detached
    assert equiv.check(wrong, LINEAR, backend="torch", seed=0, max_examples=20, progress=False).passed
    result = equiv.check(wrong, LINEAR, grad=True, backend="torch", seed=0, max_examples=40, progress=False)
    assert result.status == "failed" and re.search(r"'d(q|k)'", result.counterexample.message)


WKV6 = "rwkv.wkv6.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_wkv6_passes(seed):
    from kernels.torch_wkv6 import torch_wkv6

    result = equiv.check(torch_wkv6, WKV6, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_a_backward_ignoring_the_state_cotangent_is_caught():
    """The final state's cotangent never reaches the backward (transformers PR #23774: the RWKV
    Function's backward takes g_state and drops it); the forward and the output's gradients
    alone are right."""
    from kernels.torch_wkv6 import wkv6_ignoring_the_state_cotangent

    stateful = inputs_for(WKV6, return_state=True)
    wrong = wkv6_ignoring_the_state_cotangent
    assert equiv.check(wrong, WKV6, backend="torch", seed=0, max_examples=20, progress=False, inputs=stateful).passed
    result = equiv.check(wrong, WKV6, grad=True, backend="torch", seed=0, max_examples=40, progress=False,
                         inputs=stateful)
    assert result.status == "failed"


WKV4 = "rwkv.wkv4.recurrent"


@pytest.mark.parametrize("seed", range(3))
def test_torch_wkv4_passes(seed):
    from kernels.torch_wkv4 import torch_wkv4

    result = equiv.check(torch_wkv4, WKV4, grad=True, backend="torch", seed=seed, max_examples=40, progress=False)
    assert result.passed, result


def test_w_and_u_gradients_not_summed_over_the_batch_are_caught():
    """dw and du kept from the first sequence instead of summed over the batch (the reduction of
    transformers' RWKV Function, ``torch.sum(g_time_decay, dim=0)``, left out)."""
    from kernels.torch_wkv4 import vjp_with_w_and_u_from_the_first_sequence

    result = equiv.check_vjp(vjp_with_w_and_u_from_the_first_sequence, WKV4, seed=0, max_examples=40, progress=False)
    assert result.status == "failed" and re.search(r"'d(w|u)'", result.counterexample.message)
    assert equiv.check_vjp(lambda **args: rwkv_ref.wkv4_vjp(**args), WKV4, seed=0, max_examples=40,
                           progress=False).passed


@pytest.mark.parametrize("key, name", [("aft.full.parallel", "torch_aft_full"), ("aft.local.parallel", "torch_aft_local"),
                                       ("aft.simple.parallel", "torch_aft_simple"), ("aft.conv.parallel", "torch_aft_conv")])
def test_torch_aft_passes(key, name):
    import kernels.torch_aft

    for seed in range(3):
        result = equiv.check(getattr(kernels.torch_aft, name), key, grad=True, backend="torch", seed=seed,
                             max_examples=15 if key == "aft.conv.parallel" else 30, progress=False)
        assert result.passed, result


def test_an_aft_backward_forgetting_the_rows_mean_is_caught():
    """dS = P dm V instead of P dm (V - m): the D_i term of attention's backward lost."""
    from kernels.torch_aft import aft_full_forgetting_the_mean

    key = "aft.full.parallel"
    assert equiv.check(aft_full_forgetting_the_mean, key, backend="torch", seed=0, max_examples=20,
                       progress=False).passed
    result = equiv.check(aft_full_forgetting_the_mean, key, grad=True, backend="torch", seed=0, max_examples=40,
                         progress=False)
    assert result.status == "failed" and re.search(r"'d(k|w)'", result.counterexample.message)
