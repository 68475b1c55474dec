"""How many threads numpy's OpenBLAS runs, set for a block of numpy-heavy work.

The search's per-layer statistics (input Hessians, GPTQ, weight errors) are many small and
medium matrix products. OpenBLAS spreads each over all cores and busy-waits between them,
so on a machine already busy (the app's own ONNX Runtime threads, a GUI, other jobs) most
of that CPU time buys nothing: on a 2-core machine under load, the 50-layer search took
half the CPU with one BLAS thread, with the same plan. OpenBLAS computes each element of a
matrix product within one thread, so the values do not depend on the thread count.

numpy's wheels bundle OpenBLAS as ``scipy-openblas`` (``numpy.libs`` on Linux and Windows,
``numpy/.dylibs`` on macOS; https://github.com/MacPython/openblas-libs), whose C API has
``openblas_set_num_threads`` under a prefixed name; threadpoolctl
(https://github.com/joblib/threadpoolctl) finds it the same way. Where no OpenBLAS is
found (numpy built on another BLAS), nothing is changed.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import TypeVar

import numpy as np

Y = TypeVar("Y")
R = TypeVar("R")

# (set, get) symbol pairs: scipy-openblas 64-bit and 32-bit integer builds, plain OpenBLAS
_SYMBOLS = (
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
)


@functools.cache
def _controls() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:  # type: ignore[name-defined]
    root = os.path.dirname(np.__file__)
    paths = glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*"))
    paths += glob.glob(os.path.join(root, ".dylibs", "*openblas*"))
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)  # the library numpy loaded: the same handle
        except OSError:
            continue
        for set_name, get_name in _SYMBOLS:
            setter, getter = getattr(lib, set_name, None), getattr(lib, get_name, None)
            if setter is not None and getter is not None:
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                return setter, getter
    return None


def blas_thread_count() -> int | None:
    """numpy's OpenBLAS thread count now (None: no OpenBLAS found)."""
    controls = _controls()
    return None if controls is None else int(controls[1]())


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """numpy's OpenBLAS runs ``n`` threads inside the block, as many as before after it."""
    controls = _controls()
    if controls is None:
        yield
        return
    setter, getter = controls
    before = int(getter())
    setter(n)
    try:
        yield
    finally:
        setter(before)


def each_step(gen: Generator[Y, None, R], n: int) -> Generator[Y, None, R]:
    """``gen`` run with ``n`` OpenBLAS threads while it works, the count restored whenever
    it yields (its consumer, e.g. the window's thread, keeps its own) and when closed."""
    try:
        while True:
            with blas_threads(n):
                try:
                    item = next(gen)
                except StopIteration as stop:
                    return stop.value
            yield item
    finally:
        gen.close()
