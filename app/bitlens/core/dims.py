"""Sizes of a model's dynamic input dimensions, for generated (random) inputs.

A dimension is named by its ``dim_param`` (``"image_width"``), so inputs that
share a name share one size; an unnamed dynamic dimension is keyed
``"INPUT:AXIS"``. Axis 0 is the batch and defaults to 1, so only the other
dynamic axes need a size. Real data never need one: their shapes are the
sizes. :func:`suggest_dims` pre-fills the sizes a user is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from bitlens.core.errors import DataError
from bitlens.core.model.types import ModelInfo, TensorInfo

DEFAULT_IMAGE_SIDE = 224  # an image input with no fixed side: the common ImageNet size
DEFAULT_SIZE = 32  # any other dynamic axis (sequence length, frames...)
_CHANNELS = (1, 3, 4)


class MissingDimension(DataError):
    """A dynamic input dimension has no size; ``key`` is how ``--dim`` names it."""

    def __init__(self, tensor: TensorInfo, axis: int, key: str):
        self.key = key
        self.input = tensor.name
        self.axis = axis
        shown = key if key != f"{tensor.name}:{axis}" else "?"
        super().__init__(
            f"input {tensor.name!r} has dynamic dimension {shown!r} at axis {axis} "
            "and no size was given for it"
        )


@dataclass(frozen=True)
class DimSpec:
    """One dynamic dimension to size, and every (input, axis) it appears at."""

    key: str
    uses: tuple[tuple[str, int], ...]

    @property
    def label(self) -> str:
        where = ", ".join(f"{name}[{axis}]" for name, axis in self.uses)
        return f"{self.key} ({where})" if ":" not in self.key else self.key


def dim_key(t: TensorInfo, axis: int) -> str:
    d = (t.shape or ())[axis]
    return d if isinstance(d, str) and d else f"{t.name}:{axis}"


def needed_dims(info: ModelInfo) -> list[DimSpec]:
    """The dynamic dimensions past the batch axis, in input order, shared names merged."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for t in info.inputs:
        for axis, d in enumerate(t.shape or ()):
            if axis > 0 and not isinstance(d, int):
                uses.setdefault(dim_key(t, axis), []).append((t.name, axis))
    return [DimSpec(k, tuple(v)) for k, v in uses.items()]


def concrete_shape(t: TensorInfo, dims: Mapping[str, int]) -> tuple[int, ...]:
    """The input's shape with every dynamic dimension sized (batch: 1 unless given)."""
    if t.shape is None:
        raise DataError(f"input {t.name!r} has unknown rank; provide data from a file")
    out = []
    for axis, d in enumerate(t.shape):
        key = dim_key(t, axis) if not isinstance(d, int) else ""
        if isinstance(d, int):
            out.append(d)
        elif key in dims:
            out.append(int(dims[key]))
        elif axis == 0:
            out.append(1)  # the batch dimension
        else:
            raise MissingDimension(t, axis, key)
    return tuple(out)


def suggest_dims(
    info: ModelInfo,
    feed: Mapping[str, np.ndarray] | None = None,
    remembered: Mapping[str, int] | None = None,
) -> dict[str, int]:
    """A size for every needed dimension: read from a data feed (the data in use), else
    remembered, else a default from the input's layout (an image's missing side copies
    the fixed one, 224 when both are missing; any other axis 32)."""
    inputs = {t.name: t for t in info.inputs}
    out: dict[str, int] = {}
    for spec in needed_dims(info):
        from_data = [
            int(feed[name].shape[axis])
            for name, axis in spec.uses
            if feed is not None and name in feed and np.ndim(feed[name]) > axis
        ]
        if from_data:
            out[spec.key] = from_data[0]
            continue
        if remembered and isinstance(remembered.get(spec.key), int) and remembered[spec.key] > 0:
            out[spec.key] = int(remembered[spec.key])
            continue
        name, axis = spec.uses[0]
        out[spec.key] = _default_size(inputs[name], axis)
    return out


def _default_size(t: TensorInfo, axis: int) -> int:
    shape = t.shape or ()
    if len(shape) == 4 and np.dtype(t.dtype).kind == "f":
        nhwc = shape[3] in _CHANNELS and shape[1] not in _CHANNELS
        spatial = (1, 2) if nhwc else (2, 3)
        if axis in spatial:
            other = shape[spatial[0] if axis == spatial[1] else spatial[1]]
            return other if isinstance(other, int) and other > 1 else DEFAULT_IMAGE_SIDE
    return DEFAULT_SIZE
