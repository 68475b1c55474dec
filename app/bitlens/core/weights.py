"""Applying a format to a layer's weights: axis binding and byte accounting."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from bitlens.core.formats import Format, Granularity, parse_format, storage_bytes
from bitlens.core.lstm_kernel import kernel_weight_bytes
from bitlens.core.model.types import Layer, ModelInfo, WeightInfo
from bitlens.core.shared_weights import stored_readers, weight_groups


def bind(fmt: Format, w: WeightInfo) -> Format:
    """Resolve a format's natural axis ("ch", "blk32") for one weight."""
    if fmt.axis is not None or fmt.granularity is Granularity.TENSOR:
        return fmt
    return fmt.with_axis(w.channel_axis if fmt.granularity is Granularity.CHANNEL else w.block_axis)


def weight_bytes_after(layer: Layer, fmt: Format | None, kernel: bool = False) -> int:
    """Bytes of the layer's quantizable weights stored in ``fmt`` (None: as they are);
    ``kernel``: in the layout of the LSTM kernel the export writes the layer as
    (:func:`bitlens.core.lstm_kernel.runs_kernel`)."""
    if fmt is None:
        return layer.nbytes
    return sum(_bytes(w, fmt, kernel) for w in layer.weights)


def _bytes(w: WeightInfo, fmt: Format, kernel: bool) -> int:
    if kernel:
        return kernel_weight_bytes(w, bind(fmt, w))
    return storage_bytes(bind(fmt, w), w.shape)


def stored_bytes(
    layers: Iterable[Layer],
    formats: Mapping[str, Format | None],
    kernels: Collection[str] = (),
) -> tuple[int, int]:
    """Bytes of the layers' weights (before, after) with each layer's weights in
    ``formats[layer.name]``, each weight once, in the format of the reader the file stores it
    for (:func:`bitlens.core.shared_weights.stored_readers`); the layers named in
    ``kernels`` in the LSTM kernel's layout (:func:`bitlens.core.lstm_kernel.kernel_layers`)."""
    before = after = 0
    for reader, w in stored_readers(layers, formats).values():
        fmt = formats[reader]
        before += w.nbytes
        after += w.nbytes if fmt is None else _bytes(w, fmt, reader in kernels)
    return before, after


def file_bytes(info: ModelInfo) -> int | None:
    """Bytes the model file itself stores for the layers' weights, each weight once, when
    some of them are decoded from int8 codes in the file (a hand-made weight-only
    quantization, tinyocr's PP-OCRv6): those at their grid's storage (codes and scales, as
    an export in that format stores them), the others at their size. Every other total
    counts decoded weights as the float32 they are in memory, and "3.84x smaller" on such
    a file promised a saving an export cannot make. None when no weight is decoded, or one
    lies on no grid Bitlens reproduces (:mod:`bitlens.core.model.stored_grid`), whose
    storage is then unknown."""
    grids = info.stored_grids
    if not grids or any(g is None for g in grids.values()):
        return None
    total = 0
    for key, (_reader, w) in stored_readers(info.layers).items():
        grid = grids.get(key)
        total += w.nbytes if grid is None else storage_bytes(bind(parse_format(grid), w), w.shape)
    return total


def saved_by(info: ModelInfo, name: str, fmt: Format) -> int:
    """Bytes a weight format on layer ``name`` saves in the file: a plan gives it to every
    layer sharing a weight with ``name`` (shared_weights.weight_groups), so every weight those
    layers read counts, each once, as :func:`stored_bytes` counts them."""
    names = weight_groups(info).get(name, (name,))
    before, after = stored_bytes([info.layer(n) for n in names], dict.fromkeys(names, fmt))
    return before - after
