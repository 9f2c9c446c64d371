"""seqcheck: float64 references, property tests and exact checks for fast sequence mechanisms."""

__version__ = "0.1.0"
