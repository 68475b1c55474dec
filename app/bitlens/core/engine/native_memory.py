"""Keep freed native buffers from piling up in the C heap (glibc only).

ONNX Runtime and numpy allocate each run's activations with ``malloc``. glibc
serves large blocks with ``mmap`` and returns them to the system on ``free``,
but after the first such free it raises its mmap threshold dynamically (up
to 32 MiB), so later blocks of a few MiB come from the heap, where freed
memory stays counted in the process's RSS (measured: +80 MiB after the local
runs of a 46-layer model, all of it released by ``malloc_trim``). Fixing the
threshold turns the dynamic adjustment off (mallopt(3), M_MMAP_THRESHOLD:
https://man7.org/linux/man-pages/man3/mallopt.3.html).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

M_MMAP_THRESHOLD = -3
THRESHOLD = 128 << 10  # glibc's initial value: blocks this large are mapped, unmapped on free


@cache
def limit_heap_growth() -> bool:
    """Set glibc's mmap threshold once; False where there is no glibc (nothing to do)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # musl and others have no mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, THRESHOLD))


@cache
def _malloc_trim():
    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # musl and others have no malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim(0)``,
    https://man7.org/linux/man-pages/man3/malloc_trim.3.html); False where there is none."""
    trim = _malloc_trim()
    return trim is not None and bool(trim(0))
