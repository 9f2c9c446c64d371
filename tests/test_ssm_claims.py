"""State space model forms beyond the claims: check() rejects a wrong kernel of every form, accepts
the references and an honest float32 kernel at float32, and the report's sweeps stay in budget."""

import numpy as np
import pytest

from mutants import ssm as wrong_ssm
from seqcheck import equiv
from seqcheck.equiv.families import ssm as family
from seqcheck.equiv.registry import get_claim
from seqcheck.reference.ssm import lti_kernel

SSM_FORMS = [key for key in equiv.forms() if key.startswith("ssm.")]


@pytest.mark.parametrize("mutant, key", [
    (wrong_ssm.recurrence_abar_transposed, "ssm.lti.recurrent"),
    (wrong_ssm.convolution_kernel_off_by_one_power, "ssm.lti.convolution"),
    (wrong_ssm.kernel_abar_transposed, "ssm.lti.convolution"),
    (wrong_ssm.fft_circular, "ssm.lti.fft"),
    (wrong_ssm.krylov_forward_euler, "ssm.s4.krylov_kernel"),
    (wrong_ssm.dplr_without_woodbury, "ssm.s4.dplr_kernel"),
    (wrong_ssm.s4d_without_conjugate_doubling, "ssm.s4d.krylov"),
    (wrong_ssm.s4d_zoh_euler_input, "ssm.s4d.kernel"),
])
def test_check_rejects_a_wrong_form(mutant, key):
    result = equiv.check(mutant, key, seed=0, max_examples=200)
    assert not result.passed, str(result)
    assert result.counterexample is not None


@pytest.mark.parametrize("key", SSM_FORMS)
def test_every_form_passes_check_against_itself(key):
    result = equiv.check(equiv.reference(key), key, seed=0, max_examples=20)
    assert result.passed, str(result)


@pytest.mark.parametrize("key", ["ssm.lti.recurrent", "ssm.lti.convolution", "ssm.lti.fft"])
def test_the_references_pass_check_in_float32(key):
    """A float64 reference handed float32-rounded inputs is well within the float32 budget."""
    result = equiv.check(equiv.reference(key), key, dtype="float32", seed=0, max_examples=30)
    assert result.passed, str(result)


def _recurrence_in(dtype):
    def recurrence(u, Abar, Bbar, C, D=None, *, initial_state=None):
        """The LTI recurrence computed entirely in ``dtype`` (a kernel's arithmetic)."""
        cast = [np.asarray(x).astype(dtype) for x in (u, Abar, Bbar, C)]
        u, Abar, Bbar, C = cast
        Abar = np.broadcast_to(Abar, (C.shape[0],) + C.shape[1:] * 2)
        x = np.zeros((u.shape[0],) + C.shape, dtype) if initial_state is None else initial_state.astype(dtype)
        y = np.empty(u.shape, dtype)
        for t in range(u.shape[1]):
            x = np.einsum("dmn,bdn->bdm", Abar, x) + Bbar * u[:, t, :, None]
            y[:, t] = np.einsum("dn,bdn->bd", C, x) + (0 if D is None else np.asarray(D).astype(dtype) * u[:, t])
        return y
    recurrence.__name__ = recurrence.__qualname__ = f"recurrence_{np.dtype(dtype).name}"
    return recurrence


def test_a_float32_kernel_meets_the_float32_budget_and_a_float16_one_does_not():
    assert equiv.check(_recurrence_in(np.float32), "ssm.lti.recurrent", dtype="float32", seed=0,
                       max_examples=50).passed
    assert not equiv.check(_recurrence_in(np.float16), "ssm.lti.recurrent", dtype="float32", seed=0,
                           max_examples=50).passed


def test_plain_in_float64_is_the_reference_and_in_float32_is_not():
    rng = np.random.default_rng(0)
    args = {**family._sweep_system(rng, 12, N=4), "initial_state": rng.standard_normal((1, 4, 4))}
    reference = equiv.reference("ssm.lti.recurrent")(**args)
    (bound,) = family.lti_bound(args, (reference,))
    assert (np.abs(family.lti_plain(args, np.float64)[0] - reference).max(axis=(0, 2)) <= bound).all()
    low = family.lti_plain(args, np.float32)[0]
    assert np.array_equal(low, low.astype(np.float32)) and not np.array_equal(low, reference)


def test_fft_error_counts_every_prime_factor():
    u = np.finfo(np.float64).eps / 2
    assert family.fft_error(1) == 0
    assert family.fft_error(8) == pytest.approx(3 * (np.sqrt(2) * 4 + 8) * u)
    assert family.fft_error(23) == pytest.approx((np.sqrt(23) * 25 + 8) * u)
    assert family.fft_error(12) == pytest.approx((2 * (np.sqrt(2) * 4 + 8) + np.sqrt(3) * 5 + 8) * u)


def test_the_exact_claim_rejects_a_float64_kernel():
    """Rounding the rational system to float64 breaks exact equality: the claim is exact."""
    def in_float64(Abar, Bbar, C, length):
        return lti_kernel(*(np.asarray(a, dtype=np.float64) for a in (Abar, Bbar, C)), length)
    result = equiv.run_claim("ssm.lti.krylov_exact", impl=in_float64, seed=0, max_examples=50)
    assert not result.passed


@pytest.mark.parametrize("key", [claim.key for claim in equiv.claims() if claim.key.startswith("ssm") and claim.sweeps])
def test_the_report_sweeps_stay_within_their_budgets(key):
    claim = get_claim(key)
    for sweep in claim.sweeps:
        for value in sweep.values:
            args = sweep.make_args(value, np.random.default_rng(0))
            verdict = equiv.replay_claim(key, args)
            assert verdict.passed and np.isfinite(verdict.budget), f"{key} at {sweep.param}={value}: {verdict}"
