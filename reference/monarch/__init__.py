"""Float64 references for Monarch matrices (Dao et al. 2022): the factored product, the dense
matrix it equals, the projection of a dense matrix onto the Monarch set, the transpose rule, the
DFT as a Monarch product (and in mpmath), and the causal FFT convolution through it (M2)."""

from .monarch import (default_sizes, dense_multiply, dft, dft_factors, dft_mp, monarch_compose, monarch_dense,
                      monarch_dft, monarch_fft_conv, monarch_multiply, monarch_project, monarch_transpose, monarch_vjp)

__all__ = ["default_sizes", "dense_multiply", "dft", "dft_factors", "dft_mp", "monarch_compose", "monarch_dense", "monarch_dft", "monarch_fft_conv",
           "monarch_multiply", "monarch_project", "monarch_transpose", "monarch_vjp"]
