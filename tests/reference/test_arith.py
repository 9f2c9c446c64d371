"""The shared arithmetic of seqcheck.reference.arith: exact differences never round a nonzero
difference to 0, and rounding to a dtype is what a kernel computing in it does."""

import doctest
from fractions import Fraction

import ml_dtypes
import numpy as np
from hypothesis import given, strategies as st

from seqcheck.reference import arith
from seqcheck.reference.arith import U64, accumulator, exact_difference, fractions, round_to, rounding

rationals = st.fractions(max_denominator=2**1200)


def float_difference(actual, expected):
    """The helper's old semantics in one family (float(a - b)): the mutant the property rejects."""
    return np.vectorize(lambda a, b: 0.0 if a == b else float(a - b), otypes=[float])(
        np.asarray(actual, dtype=object), np.asarray(expected, dtype=object))


def sign_is_kept(difference_of):
    return all(np.sign(difference_of([a], [b])[0]) == np.sign(a - b)
               for a, b in [(Fraction(1, 3) + Fraction(1, 2**1100), Fraction(1, 3)),
                            (Fraction(1, 3), Fraction(1, 3) + Fraction(1, 2**1100))])


@given(rationals, rationals)
def test_exact_difference_is_zero_exactly_when_equal_and_keeps_the_sign(a, b):
    difference = exact_difference([a], [b])[0]
    assert np.sign(difference) == np.sign(a - b)


def test_the_float_difference_mutant_rounds_a_tiny_difference_to_zero():
    assert sign_is_kept(exact_difference)
    assert not sign_is_kept(float_difference)


def test_exact_difference_of_a_nan_or_inf_fails_and_equal_infinities_agree():
    assert np.isnan(exact_difference([np.nan], [Fraction(1)])[0])
    assert np.isinf(exact_difference([np.inf], [Fraction(1)])[0])
    assert np.isnan(exact_difference([np.nan], [np.nan])[0])
    assert exact_difference([-np.inf], [-np.inf])[0] == 0


def test_fractions_divide_exactly():
    assert fractions([1.0, -2.0], 3).tolist() == [Fraction(1, 3), Fraction(-2, 3)]


@given(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4))
def test_round_to_rounds_each_part(re, im):
    for dtype in (np.float16, np.float32, ml_dtypes.bfloat16):
        assert round_to(re, dtype) == np.float64(np.asarray(re).astype(dtype))
        z = round_to(complex(re, im), dtype)
        assert z.real == round_to(re, dtype) and z.imag == round_to(im, dtype)


def test_rounding_accumulates_in_float32_and_rounds_the_sum_once():
    r, total = rounding(ml_dtypes.bfloat16)
    terms = np.array([1.0] + [2.0**-9] * 4)  # each lost against 1 in bfloat16, their sum is not
    assert total(terms, 0) == 1.0 + 2.0**-7
    assert r(1.0 + 2.0**-9) == 1.0
    assert accumulator(np.float16) == np.float32 and accumulator(np.float64) == np.float64


def test_unit_roundoff_is_half_the_float64_epsilon():
    assert U64 == np.finfo(np.float64).eps / 2


def test_module_examples_run():
    assert doctest.testmod(arith).failed == 0


def test_exact_difference_beyond_the_float_range_is_infinite_with_its_sign():
    huge = Fraction(2) ** 1100
    assert exact_difference([0], [huge])[0] == -np.inf
    assert exact_difference([huge], [0])[0] == np.inf
