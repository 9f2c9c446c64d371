"""Backend detection that imports nothing heavy: probe the CUDA driver library with ctypes."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


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
