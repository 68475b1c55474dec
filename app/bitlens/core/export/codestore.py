"""The simulated run's quantizer codes, kept per evaluation sample within the memory budget.

The fidelity check runs the export in its simulated form once and compares
every quantizer's codes with the deployed model's twice (whole model, then
segment by segment, see :mod:`bitlens.core.export.segments`). On a detector
at 800x608 those codes are 128 MiB per sample: kept as ONNX Runtime returned
them they also pinned that session's arena (its outputs are views into it),
and all samples together were most of the check's 4 GB. Here each sample's
codes are copied out of the run (the session can go) and kept in memory up
to one sample's worth (at least ``MIN_IN_MEMORY``, at most the activation
share of the memory budget, :func:`bitlens.core.limits.activation_budget`);
the rest is written to the engine's scratch-file store and read back one
sample at a time through a memory map.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bitlens.core.engine.store import ActivationStore, default_budget

MIN_IN_MEMORY = 16 << 20  # small models keep every sample's codes in memory


class SampleCodes(Sequence[dict[str, np.ndarray]]):
    """``codes[k]``: the code tensors of the k-th sample appended, by name."""

    def __init__(self, limit: int | None = None) -> None:
        """``limit``: the most bytes kept in memory (default: the memory budget's
        activation share)."""
        self._limit = default_budget() if limit is None else int(limit)
        self._store: ActivationStore | None = None
        self._names: list[list[str]] = []

    def append(self, values: Mapping[str, np.ndarray]) -> None:
        """Keep one sample's values (copied: an ONNX Runtime output would hold its arena)."""
        if self._store is None:
            first = sum(np.asarray(v).nbytes for v in values.values())
            self._store = ActivationStore(min(self._limit, max(MIN_IN_MEMORY, first)))
        k = len(self._names)
        for name, value in values.items():
            self._store.put(name, k, np.array(value))
        self._names.append(list(values))

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:  # type: ignore[override]
        assert self._store is not None
        store, k = self._store, k + len(self._names) if k < 0 else k
        return {name: store.get(name, k) for name in self._names[k]}

    def __len__(self) -> int:
        return len(self._names)

    @property
    def spilled_bytes(self) -> int:
        return 0 if self._store is None else self._store.spilled_bytes

    def close(self) -> None:
        """Drop the values and remove the scratch file."""
        if self._store is not None:
            self._store.close()
        self._names.clear()
