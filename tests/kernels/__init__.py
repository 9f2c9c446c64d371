"""NumPy kernels written the way production kernels are (fixed tiles), for tests and benchmarks."""
