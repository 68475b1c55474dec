"""Applying a format to a layer's weights: axis binding and byte accounting."""

from __future__ import annotations

from bitlens.core.formats import Format, Granularity, storage_bytes
from bitlens.core.model.types import Layer, WeightInfo


def bind(fmt: Format, w: WeightInfo) -> Format:
    """Resolve a format's natural axis ("ch", "blk32") for one weight."""
    if fmt.axis is not None or fmt.granularity is Granularity.TENSOR:
        return fmt
    return fmt.with_axis(w.channel_axis if fmt.granularity is Granularity.CHANNEL else w.block_axis)


def weight_bytes_after(layer: Layer, fmt: Format | None) -> int:
    """Bytes of the layer's quantizable weights stored in ``fmt`` (None: as they are)."""
    if fmt is None:
        return layer.nbytes
    return sum(storage_bytes(bind(fmt, w), w.shape) for w in layer.weights)
