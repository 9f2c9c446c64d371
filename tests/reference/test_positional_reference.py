"""Unit tests of the positional-encoding references against literal values and direct formulas."""

import math

import numpy as np
import pytest

from seqcheck.reference.positional import (
    alibi_bias,
    alibi_slopes,
    apply_rope,
    rope_angles,
    rope_matrix,
    rope_permutation,
    sinusoidal_encoding,
)

# get_slopes(n) of ofirpress/attention_with_linear_biases, written out by hand
KNOWN_SLOPES = {
    1: [2**-8],
    2: [2**-4, 2**-8],
    3: [2**-4, 2**-8, 2**-2],
    4: [2**-2, 2**-4, 2**-6, 2**-8],
    6: [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3],
    8: [2.0**-i for i in range(1, 9)],
    12: [2.0**-i for i in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5],
}


@pytest.mark.parametrize("n", sorted(KNOWN_SLOPES))
def test_alibi_slopes_literal_values(n):
    slopes = alibi_slopes(n)
    assert slopes.dtype == np.float64 and slopes.shape == (n,)
    np.testing.assert_allclose(slopes, KNOWN_SLOPES[n], rtol=1e-15)


def test_alibi_slopes_power_of_two_is_geometric():
    np.testing.assert_allclose(alibi_slopes(16), [2 ** (-8 * (i + 1) / 16) for i in range(16)], rtol=1e-15)


@pytest.mark.parametrize("tq,tk", [(4, 4), (2, 5), (5, 2)])
def test_alibi_bias_matches_loop(tq, tk):
    slopes = alibi_slopes(3)
    bias = alibi_bias(slopes, tq, tk)
    assert bias.shape == (3, tq, tk)
    for h in range(3):
        for i in range(tq):
            for j in range(tk):
                assert bias[h, i, j] == -slopes[h] * abs(i + tk - tq - j)


def test_alibi_bad_inputs():
    with pytest.raises(ValueError, match="num_heads"):
        alibi_slopes(0)
    with pytest.raises(TypeError, match="num_heads"):
        alibi_slopes(2.0)
    with pytest.raises(ValueError, match="slopes must have shape"):
        alibi_bias(np.ones((2, 2)), 3, 3)


def test_rope_angles_formula_and_interpolation():
    pos = np.array([[0, 3], [7, 100]])
    angles = rope_angles(pos, 8, base=500.0, interpolation_factor=4.0)
    assert angles.shape == (2, 2, 4)
    for idx in np.ndindex(pos.shape):
        for i in range(4):
            assert angles[idx + (i,)] == pytest.approx(pos[idx] / 4.0 * 500.0 ** (-2 * i / 8), rel=1e-15)


def naive_rope(x, positions, base, factor, pairing):
    batch, seqlen, heads, d = x.shape
    out = np.zeros_like(x)
    for b in range(batch):
        for t in range(seqlen):
            pos = positions[t] if positions.ndim == 1 else positions[b, t]
            for i in range(d // 2):
                theta = pos / factor * base ** (-2 * i / d)
                a, c = (i, i + d // 2) if pairing == "half" else (2 * i, 2 * i + 1)
                for h in range(heads):
                    out[b, t, h, a] = x[b, t, h, a] * math.cos(theta) - x[b, t, h, c] * math.sin(theta)
                    out[b, t, h, c] = x[b, t, h, a] * math.sin(theta) + x[b, t, h, c] * math.cos(theta)
    return out


@pytest.mark.parametrize("pairing", ["half", "interleaved"])
@pytest.mark.parametrize("positions", [None, "1d", "2d"])
def test_apply_rope_matches_loop(pairing, positions):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 3, 6))
    pos = {None: None, "1d": np.array([3, 1, 4, 1, 5]), "2d": rng.integers(0, 50, (2, 5))}[positions]
    out = apply_rope(x, pos, base=100.0, interpolation_factor=2.0, pairing=pairing)
    expected = naive_rope(x, np.arange(5) if pos is None else pos, 100.0, 2.0, pairing)
    np.testing.assert_allclose(out, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("pairing", ["half", "interleaved"])
def test_rope_matrix_reproduces_apply_rope_and_is_a_rotation(pairing):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 4, 2, 8))
    pos = np.array([0, 2, 9, 31])
    out = apply_rope(x, pos, pairing=pairing)
    for t in range(4):
        r = rope_matrix(pos[t], 8, pairing=pairing)
        np.testing.assert_allclose(out[0, t], x[0, t] @ r.T, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(r @ r.T, np.eye(8), atol=1e-14)
    # relative position: R(m)^T R(n) = R(n - m)
    np.testing.assert_allclose(rope_matrix(3, 8, pairing=pairing).T @ rope_matrix(10, 8, pairing=pairing),
                               rope_matrix(7, 8, pairing=pairing), atol=1e-13)


def test_rope_permutation_relates_the_two_pairings():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 5, 3, 10))
    perm = rope_permutation(10)
    np.testing.assert_array_equal(perm, [0, 2, 4, 6, 8, 1, 3, 5, 7, 9])
    np.testing.assert_allclose(apply_rope(x[..., perm], pairing="half"),
                               apply_rope(x, pairing="interleaved")[..., perm], rtol=1e-14, atol=1e-15)


def test_rope_bad_inputs():
    x = np.zeros((1, 2, 1, 4))
    with pytest.raises(ValueError, match="D must be even"):
        apply_rope(np.zeros((1, 2, 1, 5)))
    with pytest.raises(ValueError, match="x must have shape"):
        apply_rope(np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match="positions must have shape"):
        apply_rope(x, np.arange(3))
    with pytest.raises(ValueError, match="pairing"):
        apply_rope(x, pairing="neox")
    with pytest.raises(ValueError, match="interpolation_factor"):
        apply_rope(x, interpolation_factor=0.0)
    with pytest.raises(ValueError, match="dim"):
        rope_angles(np.arange(3), 7)
    with pytest.raises(ValueError, match="position must be a scalar"):
        rope_matrix(np.arange(2), 4)


def test_sinusoidal_interleaved_is_the_paper_equation():
    pe = sinusoidal_encoding(np.arange(6), 8)
    for pos in range(6):
        for i in range(4):
            assert pe[pos, 2 * i] == pytest.approx(math.sin(pos / 10000 ** (2 * i / 8)), abs=1e-15)
            assert pe[pos, 2 * i + 1] == pytest.approx(math.cos(pos / 10000 ** (2 * i / 8)), abs=1e-15)


@pytest.mark.parametrize("dim", [2, 8, 9])
def test_sinusoidal_concatenated_is_tensor2tensor_timing_signal(dim):
    # tensor2tensor get_timing_signal_1d, transcribed step by step
    positions = np.array([[0.0, 1.0, 5.0], [2.5, 40.0, 999.0]])
    pe = sinusoidal_encoding(positions, dim, layout="concatenated")
    num_timescales = dim // 2
    log_timescale_increment = math.log(10000.0 / 1.0) / max(num_timescales - 1, 1)
    for idx in np.ndindex(positions.shape):
        for i in range(num_timescales):
            scaled_time = positions[idx] * math.exp(i * -log_timescale_increment)
            assert pe[idx + (i,)] == pytest.approx(math.sin(scaled_time), abs=1e-12)
            assert pe[idx + (num_timescales + i,)] == pytest.approx(math.cos(scaled_time), abs=1e-12)
    assert pe.shape == positions.shape + (dim,)
    if dim % 2:
        assert (pe[..., -1] == 0).all()


def test_sinusoidal_bad_inputs():
    with pytest.raises(ValueError, match="dim must be an even"):
        sinusoidal_encoding(np.arange(3), 7)
    with pytest.raises(ValueError, match="layout"):
        sinusoidal_encoding(np.arange(3), 8, layout="halves")
    with pytest.raises(TypeError, match="positions"):
        sinusoidal_encoding(np.array(["a"]), 8)
    with pytest.raises(ValueError, match="base"):
        sinusoidal_encoding(np.arange(3), 8, base=-1.0)
