"""The decoding forms ``eviction.<policy>.decode`` (each a reference of
``seqcheck.reference.eviction.decoding``) and the GPU implementations of three of them."""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from seqcheck.equiv.families.eviction.measures import TRAJECTORY_RULE, trajectory_bound
from seqcheck.equiv.registry import Form, Implementation, register_form, register_implementation
from seqcheck.properties.eviction import POLICY_NAMES, form_inputs
from seqcheck.reference.eviction import DECODERS

NO_ROPE_SHIFT = st.sampled_from([None, "post"])

FORM_STATEMENTS = {
    "window": "sliding-window cache: the newest budget tokens",
    "streaming_llm": "StreamingLLM: attention sinks plus the recent window",
    "tova": "TOVA: keep the top budget by the head-averaged last attention row",
    "tova_kvpress": "kvpress's TOVA: TOVA with the newest token always kept",
    "h2o": "H2O: heavy hitters by accumulated attention plus the recent window, per kv head",
    "scissorhands": "Scissorhands: evict the tokens most often below the threshold in the history window",
    "snapkv": "SnapKV: compress the prompt once by its observation window's pooled attention",
}

for _name in POLICY_NAMES:
    register_form(Form(
        key=f"eviction.{_name}.decode",
        fn=DECODERS[_name],
        inputs=form_inputs(_name),
        bound=functools.partial(lambda name, args, expected: trajectory_bound(name, args), _name),
        rule=TRAJECTORY_RULE,
        statement=f"{FORM_STATEMENTS[_name]}; outputs over the bounded cache and the kept sets, step by step",
        data_args=("q", "k", "v"),
        outputs=("out", "kept"),
    ))


# ----------------------------------------------------------------------------- GPU implementations

for _name in ("tova", "h2o", "window"):
    register_implementation(Implementation(
        name=f"cupy.{_name}_select",
        form=f"eviction.{_name}.decode",
        target=f"eviction_cupy:{_name}_decode",
        runtime="cupy",
        dtypes=("float64",),  # selection is compared exactly; the attention stays float64
        inputs=functools.partial(lambda form, simulated: form(), form_inputs(_name)),
    ))
