"""Float reference activations under a memory budget.

The engine keeps, per tensor and per data feed, the float values it compares
against (layer outputs, model outputs) and the float inputs the local graphs
and calibration read. Up to ``budget`` bytes stay in memory; the rest is
appended to a scratch file in a private temporary folder and read back
through a read-only memory map when needed, so the process holds only the
pages it is reading. The folder is removed by :meth:`ActivationStore.close`
or, at the latest, when the store is garbage-collected or the interpreter
exits.
"""

from __future__ import annotations

import math
import mmap
import os
import shutil
import tempfile
import threading
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.errors import BitlensError, EngineError
from bitlens.core.limits import activation_budget

if TYPE_CHECKING:
    from bitlens.core.data import Dataset


def default_budget() -> int:
    """Bytes kept in memory by default: a share of the one memory budget
    (bitlens.core.limits.memory_budget, ``--memory-budget`` / ``$BITLENS_MEMORY_BUDGET``)."""
    try:
        return activation_budget()
    except BitlensError as exc:
        raise EngineError(str(exc)) from None


SMALL_READ = 64 << 10  # spilled values up to this size are read into memory (see get)


@dataclass(frozen=True)
class _Spilled:
    offset: int
    dtype: np.dtype
    shape: tuple[int, ...]


class ActivationStore:
    """Arrays keyed by (tensor, feed index): in memory up to ``budget`` bytes, then spilled."""

    def __init__(self, budget: int) -> None:
        if budget < 0:
            raise EngineError(f"memory budget must be >= 0 bytes, got {budget}")
        self.budget = int(budget)
        self.reserve = 0  # bytes of the budget that cold values leave to the others (put)
        self._ram: dict[tuple[str, int], np.ndarray] = {}
        self._disk: dict[tuple[str, int], _Spilled] = {}
        self.ram_bytes = 0
        self.spilled_bytes = 0
        self._dir: str | None = None
        self._file = None
        self._finalizer: weakref.finalize | None = None
        self._unflushed = False  # spilled bytes may sit in the file's buffer (see get)
        self._flush_lock = threading.Lock()

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._ram or key in self._disk

    def put(self, name: str, index: int, value: np.ndarray, *, cold: bool = False) -> None:
        """Keep ``value``; ``cold`` values (read rarely: calibration-only feeds) stay in
        memory only where they leave ``reserve`` bytes of the budget for the others."""
        key = (name, index)
        if key in self:
            raise EngineError(f"reference value of {name!r} for feed {index} stored twice")
        value = np.asarray(value)
        room = self.budget - (self.reserve if cold else 0)
        if self.ram_bytes + value.nbytes <= room or value.dtype.hasobject:
            value.setflags(write=False)
            self._ram[key] = value
            self.ram_bytes += value.nbytes
            return
        fh = self._scratch()
        offset = fh.tell()
        fh.write(np.ascontiguousarray(value).reshape(-1).view(np.uint8))  # no bytes copy
        self._disk[key] = _Spilled(offset, value.dtype, value.shape)
        self._unflushed = True
        self.spilled_bytes += value.nbytes

    def size(self, name: str, index: int) -> int:
        """The number of values stored for ``(name, index)``, without reading them."""
        key = (name, index)
        if key in self._ram:
            return int(self._ram[key].size)
        return math.prod(self._disk[key].shape)

    def shape(self, name: str, index: int) -> tuple[int, ...]:
        """The shape of the value stored for ``(name, index)``, without reading it."""
        key = (name, index)
        if key in self._ram:
            return tuple(self._ram[key].shape)
        return tuple(self._disk[key].shape)

    def get(self, name: str, index: int) -> np.ndarray:
        """The stored value (read-only; a memory map for spilled values)."""
        key = (name, index)
        if key in self._ram:
            return self._ram[key]
        where = self._disk.get(key)
        if where is None:
            raise KeyError(key)
        assert self._file is not None
        if self._unflushed:
            # flushed before the flag drops, under a lock: two threads read reference
            # values at once (engine/measure.py), and neither may map unwritten bytes
            with self._flush_lock:
                if self._unflushed:
                    self._file.flush()
                    self._unflushed = False
        if 0 in where.shape:
            return np.empty(where.shape, where.dtype)
        nbytes = math.prod(where.shape) * where.dtype.itemsize  # np.prod: 6 us a value
        if nbytes <= SMALL_READ and hasattr(os, "pread"):
            # one read (position-independent: the sweep reads from two threads) instead of
            # a file open and a map per value: 100 x 256-wide layers on 256 one-row feeds
            # spent half a float run per evaluation opening maps of 1 KiB values
            data = os.pread(self._file.fileno(), nbytes, where.offset)
            return np.frombuffer(data, where.dtype).reshape(where.shape)
        # A read-only map of just this value on the open scratch file, unmapped when the
        # array is dropped: np.memmap by file name opened the file and built a memmap
        # object per value (60 us a value, against 15 us; a re-evaluation from a CRNN's
        # first layer reads 46 of them).
        start = where.offset - where.offset % mmap.ALLOCATIONGRANULARITY
        view = mmap.mmap(
            self._file.fileno(), where.offset - start + nbytes, access=mmap.ACCESS_READ,
            offset=start,
        )  # fmt: skip
        out = np.frombuffer(view, where.dtype, math.prod(where.shape), where.offset - start)
        return out.reshape(where.shape)

    def _scratch(self):
        if self._file is None:
            self._dir = tempfile.mkdtemp(prefix="bitlens-activations-")
            self._file = open(os.path.join(self._dir, "spill.bin"), "w+b")  # noqa: SIM115
            self._finalizer = weakref.finalize(self, _cleanup, self._file, self._dir)
        return self._file

    @property
    def scratch_dir(self) -> str | None:
        return self._dir

    def close(self) -> None:
        """Drop every value and remove the scratch folder."""
        self._ram.clear()
        self._disk.clear()
        self.ram_bytes = self.spilled_bytes = 0
        if self._finalizer is not None:
            self._finalizer()
        self._file = None
        self._dir = None
        self._finalizer = None


def _cleanup(fh, folder: str) -> None:
    try:
        fh.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class TensorValues:
    """One tensor's reference values, indexed by feed."""

    __slots__ = ("_name", "_ref")

    def __init__(self, ref: RefView, name: str) -> None:
        self._ref, self._name = ref, name

    def __getitem__(self, i: int) -> np.ndarray:
        return self._ref.value(self._name, i)


class RefView(Mapping[str, TensorValues]):
    """The float reference, ``ref[tensor][feed]``: model inputs read from the data, the rest
    from the activation store. ``types`` gives each tensor's dtype and rank."""

    def __init__(
        self,
        store: ActivationStore,
        data: Dataset,
        inputs: set[str],
        types: Mapping[str, tuple[np.dtype, int]],
    ) -> None:
        self._store, self._data, self._inputs = store, data, inputs
        self.types = dict(types)

    def value(self, name: str, i: int) -> np.ndarray:
        if name in self._inputs:
            return self._data.samples[i][name]
        try:
            return self._store.get(name, i)
        except KeyError:
            raise EngineError(f"no float reference kept for {name!r} on feed {i}") from None

    def size(self, name: str, i: int) -> int:
        """The number of values of ``value(name, i)``, without reading them."""
        if name in self._inputs:
            return int(np.size(self._data.samples[i][name]))
        try:
            return self._store.size(name, i)
        except KeyError:
            raise EngineError(f"no float reference kept for {name!r} on feed {i}") from None

    def dims(self, name: str) -> tuple[int | None, ...] | None:
        """The dims ``value(name, i)`` has on every feed it is kept for, None where they
        differ; None when none is kept."""
        n = len(self._data.samples)
        if name in self._inputs:
            shapes = {tuple(np.shape(self._data.samples[i][name])) for i in range(n)}
        else:
            store = self._store
            shapes = {store.shape(name, i) for i in range(n) if (name, i) in store}
        if not shapes or len({len(s) for s in shapes}) != 1:
            return None
        return tuple(d[0] if len(set(d)) == 1 else None for d in zip(*shapes, strict=True))

    def __getitem__(self, name: str) -> TensorValues:
        if name not in self.types:
            raise KeyError(name)
        return TensorValues(self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.types)

    def __len__(self) -> int:
        return len(self.types)
