"""Strategies for Monarch arguments (reference.monarch).

Every keyword takes a strategy, a ``range`` or a fixed value (``fixed_or``). ``form``:
"multiply" (x (B, n) and factors w1 (k, q, p), w2 (l, s, r) with l r = k q, square or not),
"square" (factors of the projection's shapes: w1 (A, B, n/A), w2 (B, n/B, A), and M, sizes),
"dft" (x (B, n) for the DFT of any length n), "conv" (u (B, T, Dch), K (Dch, L), D).
"""

from __future__ import annotations

from hypothesis import strategies as st

from seqcheck.properties.arrays import STYLES, Sized, fixed_or, generators, lengths, sized, tiers, values

FORMS = ("multiply", "square", "dft", "conv")


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def monarch_inputs(
    draw,
    *,
    form="multiply",
    size="default",
    batch=st.integers(1, 3),
    blocks=Sized(range(1, 6), (8, 16), "1..5 (large: 8, 16)"),
    block_size=Sized(range(1, 6), (16, 32, 64), "1..5 (large: 16, 32, 64)"),
    length=lengths(12),
    channels=st.integers(1, 3),
    kernel_length=None,
    style=st.sampled_from(STYLES),
    complex_factors=st.booleans(),
):
    """Keyword arguments of a Monarch form, values of ``style``.

    Options:
        size: size tier of the block counts and sizes, the DFT and convolution lengths: "small",
            "default" or "large".
        batch: batch size B.
        blocks: block counts (k, l; A, B of the square forms).
        block_size: block sides (q, p, s; n/A, n/B).
        length: the DFT's n, the convolution's T.
        channels: the convolution's channels Dch.
        kernel_length: the convolution kernel's L (None: 1..T + 2).
        style: the value style (properties.arrays.STYLES).
        complex_factors: (multiply) complex w1, w2 (the DFT's are).
    """
    if form not in FORMS:
        raise ValueError(f"form: expected one of {FORMS}, got {form!r}")
    tier = draw(tiers(size))
    rng = draw(generators())
    kind = draw(fixed_or(style))
    B = draw(fixed_or(batch))

    def array(*shape, complex_=False):
        a = values(rng, kind, shape)
        return a + 1j * values(rng, kind, shape) if complex_ else a

    if form == "multiply":
        k, q, p = (draw(sized(v, tier)) for v in (blocks, block_size, block_size))
        # r from the largest divisor down (shrinking walks to few, small w2 blocks), l = k q / r <= 64
        r = draw(st.sampled_from([d for d in _divisors(k * q)[::-1] if k * q // d <= 64]))
        l, s = k * q // r, draw(sized(block_size, tier))
        c = draw(fixed_or(complex_factors))
        return {"x": array(B, k * p), "w1": array(k, q, p, complex_=c), "w2": array(l, s, r, complex_=c)}
    if form == "square":
        A, Bk = draw(sized(blocks, tier)), draw(sized(blocks, tier))
        n = A * Bk
        return {"M": array(n, n), "sizes": (A, Bk), "w1": array(A, Bk, Bk), "w2": array(Bk, A, A)}
    if form == "dft":
        return {"x": array(B, draw(sized(length, tier)))}
    T = draw(sized(length, tier))
    Dch = draw(fixed_or(channels))
    L = draw(fixed_or(st.integers(1, T + 2) if kernel_length is None else kernel_length))
    return {"u": array(B, T, Dch), "K": array(Dch, L), "D": array(Dch)}
