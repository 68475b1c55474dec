"""The fidelity check's figures accumulated one sample at a time.

The check used to gather every evaluation sample's values of a tensor (each
quantizer's codes, each segment's output, deployed and as written) and
reduce their concatenation; on a detector at 800x608 that held 4 GB at once.
Each figure it reports is a maximum or a share, which a pass over the
samples computes exactly, keeping one sample's values at a time:

* a maximum of the concatenation is the maximum of the per-sample maxima
  (``np.maximum`` keeps a NaN as ``np.max`` does, in either order);
* the share of nonzero distances is ``count / size``, the same float64
  division ``np.mean`` of a boolean array makes;
* a float format's LSB is its spacing at the tensor's largest magnitude over
  all samples (:func:`bitlens.core.export.probes.float_step`), and dividing
  by a positive constant keeps the order of values, so the largest distance
  is the largest difference divided by that step.

Tests compare each with the concatenated form (tests/core/test_export_reductions.py).
"""

from __future__ import annotations

import math

import numpy as np

from bitlens.core.export import probes
from bitlens.core.export.activations import QuantizerRecord


def _fold(acc: np.generic | None, value: np.generic) -> np.generic:
    return value if acc is None else np.maximum(acc, value)


class MaxAbsDiff:
    """``deployed.max_abs`` of two tensors' values over every sample: the largest
    ``|a - b|`` in float64, 0.0 with no values, inf when a sample's sizes differ."""

    def __init__(self) -> None:
        self._max: np.generic | None = None
        self._mismatch = False

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.asarray(a), np.asarray(b)
        if a.size != b.size:
            self._mismatch = True
        elif a.size:
            d = np.abs(a.astype(np.float64).ravel() - b.astype(np.float64).ravel())
            self._max = _fold(self._max, np.max(d))

    @property
    def value(self) -> float:
        if self._mismatch:
            return math.inf
        return 0.0 if self._max is None else float(self._max)


class LsbMax:
    """The largest ``probes.lsb_distance(rec, a, b)`` over every sample's ``a`` (as written)
    and ``b`` (deployed), 0.0 with no values."""

    def __init__(self, rec: QuantizerRecord) -> None:
        self.rec = rec
        self._integer = probes.integer_codes(rec)
        self._max: np.generic | None = None  # of the distance (integer) or |a - b| (float)
        self._top: np.generic | None = None  # float formats: the largest |a|

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
        if not a.size:
            return
        if self._integer:
            self._max = _fold(self._max, np.max(probes.lsb_distance(self.rec, a, b)))
            return
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        self._max = _fold(self._max, np.max(np.abs(a64 - b64)))
        self._top = _fold(self._top, np.max(np.abs(a64)))

    @property
    def value(self) -> float:
        if self._max is None:
            return 0.0
        if self._integer:
            return float(self._max)
        return float(self._max / probes.float_step(self.rec, float(self._top)))


class CodeAgreement:
    """Deployed codes against the simulation's over every sample: the largest LSB distance
    (inf when a sample could not be matched or there were no codes) and the share of codes
    that differ (1.0 then)."""

    def __init__(self) -> None:
        self._max: np.generic | None = None
        self._differ = 0
        self._size = 0
        self._unmatched = False

    def add(self, distance: np.ndarray | None) -> None:
        """One sample's per-element distances; None: its shapes could not be matched."""
        if distance is None:
            self._unmatched = True
            return
        if distance.size:
            self._max = _fold(self._max, np.max(distance))
            self._differ += int(np.count_nonzero(distance > 0))
            self._size += distance.size

    @property
    def worst(self) -> float:
        if self._unmatched or not self._size:
            return math.inf
        return float(self._max)  # type: ignore[arg-type]

    @property
    def share(self) -> float:
        if self._unmatched or not self._size:
            return 1.0
        return self._differ / self._size
