"""Applying a format to a layer's weights: axis binding and byte accounting."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

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


def stored_bytes(layers: Iterable[Layer], formats: Mapping[str, Format | None]) -> tuple[int, int]:
    """Bytes of the layers' weights (before, after) with each layer's weights in
    ``formats[layer.name]``, counting a weight several layers read once per stored form, as the
    file stores it: the exporter refuses formats that disagree on a shared weight."""
    before: dict[tuple[str, str], int] = {}
    after: dict[tuple[str, str, str | None], int] = {}
    for layer in layers:
        fmt = formats[layer.name]
        for w in layer.weights:
            before[(w.graph_path, w.name)] = w.nbytes
            if fmt is None:
                after[(w.graph_path, w.name, None)] = w.nbytes
            else:
                bound = bind(fmt, w)
                after[(w.graph_path, w.name, bound.name)] = storage_bytes(bound, w.shape)
    return sum(before.values()), sum(after.values())
