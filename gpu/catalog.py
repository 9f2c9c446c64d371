"""Every GPU implementation of the project, one ``register`` call each (see registry.py)."""

from __future__ import annotations

from seqcheck.gpu.registry import Implementation, register  # noqa: F401


# ----------------------------------------------------------------------------- Numba CUDA kernels

def _flash_numba_inputs(simulated: bool):
    """No ALiBi, no softcap. Simulated: B=1, T <= 6, H <= 4, D <= 4, tiles of 2 or 4 (so rows and
    keys span several ragged tiles); on a GPU: T <= 200, D <= 64, tiles of 16 or 32."""
    from hypothesis import strategies as st

    from seqcheck.properties import inputs_for
    from seqcheck.properties.attention import windows

    tiny = dict(batch=1, q_len=st.integers(1, 6), k_len=st.integers(1, 6), kv_heads=st.integers(1, 2),
                group=st.integers(1, 2), head_dim=st.integers(1, 4),
                block_q=st.sampled_from([2, 4]), block_k=st.sampled_from([2, 4]))
    moderate = dict(batch=st.integers(1, 2), q_len=st.integers(1, 200), k_len=st.integers(1, 200),
                    kv_heads=st.integers(1, 2), group=st.integers(1, 4), head_dim=st.integers(1, 64),
                    window=windows(64), block_q=st.sampled_from([16, 32]), block_k=st.sampled_from([16, 32]))
    return inputs_for("attention.flash.tiled", alibi_slopes=None, softcap=None, **(tiny if simulated else moderate))


def _scan_numba_inputs(simulated: bool):
    """Real A only. Simulated: B=1, T <= 10 (chunks of 4), D <= 4, N <= 4; on a GPU: T <= 200,
    D <= 64, N <= 16 (chunks of 32, 64 channels per block)."""
    from hypothesis import strategies as st

    from seqcheck.properties import inputs_for

    tiny = dict(batch=1, seq_len=st.integers(1, 10), channels=st.integers(1, 4), state_dim=st.integers(1, 4))
    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 200), channels=st.integers(1, 64),
                    state_dim=st.integers(1, 16))
    return inputs_for("mamba.selective_scan.recurrent", complex_A=False, **(tiny if simulated else moderate))


register(Implementation(
    name="numba_cuda.flash_attention",
    form="attention.flash.tiled",
    target="flash_numba:flash_attention",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_flash_numba_inputs,
))

register(Implementation(
    name="numba_cuda.selective_scan",
    form="mamba.selective_scan.recurrent",
    target="scan_numba:selective_scan",
    runtime="numba-cuda",
    dtypes=("float32", "float16"),
    inputs=_scan_numba_inputs,
))


# ----------------------------------------------------------------------------- CuPy (array module)

def _on_gpu() -> bool:
    from seqcheck.gpu.registry import where

    return where("cupy") == "gpu"


def _cupy_ssd_inputs(simulated: bool):
    """A given (no ``decay=``: the form's strategy never draws it). On NumPy the form's tiny
    sizes (T <= 10, every chunk size 1..T+1); on a GPU T <= 96, P <= 16, N <= 16, H <= 4."""
    from hypothesis import strategies as st

    from seqcheck.properties import inputs_for

    moderate = dict(batch=st.integers(1, 2), seq_len=st.integers(1, 96), heads=st.integers(1, 4),
                    head_dim=st.integers(1, 16), state_dim=st.integers(1, 16))
    return inputs_for("mamba.ssd.chunked", **(moderate if _on_gpu() else {}))


def _cupy_fft_inputs(simulated: bool):
    """Every system kind, shared or per-channel Abar, with or without D. On NumPy the form's
    tiny sizes (T <= 12, N <= 6); on a GPU T <= 256, N <= 16."""
    from hypothesis import strategies as st

    from seqcheck.properties import inputs_for

    moderate = dict(seq_len=st.integers(1, 256), channels=st.integers(1, 4), state_size=st.integers(1, 16))
    return inputs_for("ssm.lti.fft", **(moderate if _on_gpu() else {}))


register(Implementation(
    name="cupy.ssd_chunked",
    form="mamba.ssd.chunked",
    target="ssd_cupy:ssd_chunked",
    runtime="cupy",
    dtypes=("float32", "float16"),
    inputs=_cupy_ssd_inputs,
))

register(Implementation(
    name="cupy.lti_fft",
    form="ssm.lti.fft",
    target="conv_cupy:lti_fft",
    runtime="cupy",
    dtypes=("float32", "float16"),
    inputs=_cupy_fft_inputs,
))


def _eviction_inputs(form: str):
    def inputs(simulated: bool):
        from seqcheck.properties import inputs_for

        return inputs_for(form)
    return inputs


for _policy in ("tova", "h2o", "window"):
    register(Implementation(
        name=f"cupy.{_policy}_select",
        form=f"eviction.{_policy}.decode",
        target=f"eviction_cupy:{_policy}_decode",
        runtime="cupy",
        dtypes=("float64",),  # selection is compared exactly; the attention stays float64
        inputs=_eviction_inputs(f"eviction.{_policy}.decode"),
    ))
