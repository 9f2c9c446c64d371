"""KV-cache eviction: one decoding form per policy, derived float64 bounds, claims, quality sweeps.

Forms. ``eviction.<policy>.decode`` (window, streaming_llm, tova, tova_kvpress, h2o, scissorhands,
snapkv) takes ``simulate_decoding``'s arguments, with the policy's parameters as keywords
(``sinks``, ``heavy``, ...), and returns two outputs along time: ``out`` (B, T, H, Dv), the
attention over the bounded cache, and ``kept`` (B, T, G, T) as float (1 = token j is in group
g's cache after step t). A batched GPU selection (CuPy, torch) is checked with
``equiv.check(candidate, "eviction.tova.decode")`` like any other form (docs/eviction.md).

The family by role: ``forms`` (the decoding forms and their GPU implementations), ``measures``
(the derived float64 bounds, near-tie ambiguity, evicted mass), ``claims``, ``quality`` (the
report's quality sweeps). The decoding functions and the policies the claims use are references
(``seqcheck.reference.eviction``).
"""

from seqcheck.equiv.families.eviction import claims, forms, quality  # noqa: F401  (each registers what it declares)
from seqcheck.equiv.families.eviction.measures import ambiguous_steps, attended, onset, weight_error  # noqa: F401
from seqcheck.equiv.families.eviction.quality import quality_series  # noqa: F401
