"""Checking, coercing, slicing and batching the arrays of one model input.

The rules every data source shares: a feed holds one array per model input with the
input's rank (a batch) or one more (a sample axis); fixed dimensions must match; equal
shapes batch together up to ``MAX_BATCH`` rows and nothing is padded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from bitlens.core.errors import DataError
from bitlens.core.model.types import TensorInfo

MAX_BATCH = 32
LABELS_KEY = "labels"


def check_names(
    inputs: Mapping[str, TensorInfo], arrays: Mapping[str, object], source: str
) -> None:
    missing = [n for n in inputs if n not in arrays]
    if missing:
        raise DataError(f"{source}: no data for model input(s) {', '.join(map(repr, missing))}")
    unknown = [k for k in arrays if k not in inputs and k != LABELS_KEY]
    if unknown:
        raise DataError(
            f"{source}: {', '.join(map(repr, unknown))} is not a model input "
            f"(inputs: {', '.join(inputs)})"
        )


def feed_array(t: TensorInfo, a: np.ndarray, source: str) -> np.ndarray:
    """One input of one feed: the input's rank (a batch), or one less with a batch axis of
    1 added; every fixed dimension must match."""
    a = coerce(t, a, source)
    if t.shape is None:
        return np.ascontiguousarray(a)
    rank = len(t.shape)
    if a.ndim == rank - 1 and rank and (not isinstance(t.shape[0], int) or t.shape[0] == 1):
        a = a[None]
    if a.ndim != rank:
        raise DataError(
            f"{source}: input {t.name!r} expects shape {fmt_shape(t)}, given {list(a.shape)} "
            f"(rank {a.ndim} instead of {rank})"
        )
    for got, want in zip(a.shape, t.shape, strict=True):
        if isinstance(want, int) and want != got:
            raise DataError(
                f"{source}: input {t.name!r} expects shape {fmt_shape(t)}, given {list(a.shape)}"
            )
    return np.ascontiguousarray(a)


def batches(units: Sequence[Mapping[str, np.ndarray]], batchable: bool) -> list[list[int]]:
    """Indices of units run together: equal shapes only, up to MAX_BATCH rows, in order of
    first appearance."""
    if not batchable:
        return [[i] for i in range(len(units))]
    groups: dict[tuple, list[list[int]]] = {}
    rows: dict[tuple, int] = {}
    for i, u in enumerate(units):
        sig = tuple((k, a.shape[1:], a.dtype.str) for k, a in u.items())
        n = batch_of(u)
        if sig not in groups or rows[sig] + n > MAX_BATCH:
            groups.setdefault(sig, []).append([])
            rows[sig] = 0
        groups[sig][-1].append(i)
        rows[sig] += n
    out = [b for batches in groups.values() for b in batches]
    return sorted(out, key=lambda b: b[0])


def join_rows(arrays: Sequence[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.concatenate(arrays, axis=0))


def coerce(t: TensorInfo, a: np.ndarray, source: str) -> np.ndarray:
    want = np.dtype(t.dtype)
    if a.dtype == want:
        return a
    if a.dtype.kind == want.kind or (a.dtype.kind in "iu" and want.kind in "iu"):
        return a.astype(want)
    raise DataError(f"{source}: input {t.name!r} expects {want.name}, given {a.dtype.name}")


def n_samples(t: TensorInfo, a: np.ndarray) -> int:
    rank = len(t.shape) if t.shape is not None else a.ndim
    if a.ndim not in (rank, rank + 1):
        raise DataError(
            f"input {t.name!r} expects shape {fmt_shape(t)}, given {list(a.shape)} "
            f"(rank {a.ndim} instead of {rank})"
        )
    if t.shape and any(d == 0 for d in t.shape if isinstance(d, int)):
        raise DataError(f"input {t.name!r} has shape {fmt_shape(t)}: an empty input cannot be fed")
    # With an extra sample axis each sample has the input's full shape.
    per_sample = a.shape[1:]
    expected = (t.shape or ())[1:] if a.ndim == rank else (t.shape or ())
    fixed_batch = a.ndim == rank and t.shape and isinstance(t.shape[0], int) and t.shape[0] != 1
    # a fixed batch larger than one: samples come in whole batches
    if fixed_batch and a.shape[0] % t.shape[0]:  # type: ignore[index,operator]
        raise DataError(
            f"input {t.name!r} has a fixed batch of {t.shape[0]}; given {a.shape[0]} rows"
        )
    for got, want in zip(per_sample, expected, strict=False):
        if isinstance(want, int) and want != got:
            raise DataError(
                f"input {t.name!r} expects shape {fmt_shape(t)}, given {list(a.shape)}"
            )
    if a.ndim == rank + 1:
        return a.shape[0]
    fixed = t.shape[0] if t.shape and isinstance(t.shape[0], int) else 1
    return a.shape[0] // fixed if fixed > 1 else a.shape[0]


def one_row_per_run(inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]) -> bool:
    """True when the model declares a dynamic batch but an output's axis 0 fixed at 1: the
    exporter traced one row and baked it into the graph (khmersm's transformer, a PyTorch
    dynamo export, reshapes to ``[seq, 1, 3, 192]`` and fails at batch 4), so rows run one
    at a time. Wrong only for an output that is 1 whatever the batch: that costs speed, not
    results (rows never mix)."""
    dynamic = any(t.shape and not isinstance(t.shape[0], int) for t in inputs)
    return dynamic and any(t.shape and t.shape[0] == 1 for t in outputs)


def batch_dynamic(t: TensorInfo, a: np.ndarray) -> bool:
    rank = len(t.shape) if t.shape is not None else a.ndim
    return a.ndim == rank and bool(t.shape) and not isinstance(t.shape[0], int)  # type: ignore[index]


def slice_rows(t: TensorInfo, a: np.ndarray, start: int, stop: int) -> np.ndarray:
    rank = len(t.shape) if t.shape is not None else a.ndim
    if a.ndim == rank + 1:  # an extra sample axis: feed one sample as is
        one = a[start]
        # np.ascontiguousarray makes a scalar 1-d: a rank-0 input (a sample rate) stays rank 0
        return np.ascontiguousarray(one) if one.ndim else np.array(one)
    fixed = t.shape[0] if t.shape and isinstance(t.shape[0], int) else 1
    return np.ascontiguousarray(a[start * fixed : stop * fixed])


def batch_of(feed: Mapping[str, np.ndarray]) -> int:
    first = next(iter(feed.values()))
    return int(first.shape[0]) if first.ndim else 1


def fmt_shape(t: TensorInfo) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in (t.shape or ())) + "]"
