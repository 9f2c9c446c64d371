"""Backend detection that imports nothing heavy: probe the CUDA driver library with ctypes."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os


@functools.cache
def gpu_unavailable_reason() -> str | None:
    """None when a CUDA device can be used; otherwise why not, in words."""
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        driver = ctypes.CDLL(name)
    except OSError:
        return "no CUDA driver (libcuda) on this machine"
    if driver.cuInit(0) != 0:
        return "the CUDA driver failed to initialise (cuInit)"
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return "the CUDA driver sees no device"
    return None


def has_gpu() -> bool:
    return gpu_unavailable_reason() is None


def gpu_name() -> str:
    """The first CUDA device's name, from the driver (``"gpu"`` where it cannot be read)."""
    if not has_gpu():
        return "no gpu"
    driver = ctypes.CDLL(ctypes.util.find_library("cuda") or "libcuda.so.1")
    device, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
    if driver.cuDeviceGet(ctypes.byref(device), 0) != 0 or driver.cuDeviceGetName(name, 256, device) != 0:
        return "gpu"
    return name.value.decode(errors="replace")


def where(runtime: str) -> str:
    """Where an implementation of ``runtime`` ("numba-cuda" or "cupy") runs here: "gpu",
    "simulator" (Numba's CUDA simulator, no GPU) or "numpy" (CuPy code on its NumPy array
    module, no GPU)."""
    if has_gpu():
        return "gpu"
    return "simulator" if runtime == "numba-cuda" else "numpy"


def use_simulator_without_gpu() -> None:
    """Turn Numba's CUDA simulator on where no GPU exists; must run before numba.cuda is imported."""
    if not has_gpu():
        os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
