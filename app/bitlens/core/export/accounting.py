"""What an export will weigh, before it is written.

Two views:

* :func:`predict` builds the export in memory (no file) and returns each
  layer's net bytes: its codes, scales, zero points, codebooks, the nodes
  that rebuild or quantize, their names, minus the float weights removed,
  and the file's size: the serialized size of the built model, which the
  written file has to the byte.
* :func:`cannot_save` needs no calibration: a format whose codes and
  parameters alone take as many bytes as the float weight (a block of 32
  along an axis of size 1 stores one float32 scale per weight) can never
  make the layer smaller, whatever the graph around it.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bitlens.core.engine import bind
from bitlens.core.export.exporter import Built, ExportOptions, Prepared, build
from bitlens.core.formats import Format, storage_bytes
from bitlens.core.model.types import Layer
from bitlens.core.plan import Plan
from bitlens.core.results import Progress

if TYPE_CHECKING:
    from bitlens.core.engine import Engine


@dataclass(frozen=True)
class LayerBytes:
    name: str
    float_bytes: int  # the float weights the export replaces
    file_bytes: int  # net bytes the layer adds to the file (negative: it saves)

    @property
    def saves(self) -> bool:
        return self.file_bytes < 0 or self.float_bytes == 0


@dataclass(frozen=True)
class ExportSize:
    source_bytes: int
    file_bytes: int  # the file's size, everything included (the serialized model)
    opset: int
    layers: tuple[LayerBytes, ...]


def predict(
    engine: Engine,
    plan: Plan,
    options: ExportOptions | None = None,
    prepared: Prepared | None = None,
) -> Generator[Progress, None, ExportSize]:
    """The export's size, from building it in memory exactly as :func:`export` would
    (``prepared``: from :func:`preflight` for this plan, which runs otherwise)."""
    built = yield from build(engine, plan, options, prepared)
    return size_of(built)


def size_of(built: Built) -> ExportSize:
    """The size of an export built in memory."""
    return ExportSize(
        source_bytes=built.source_bytes,
        # the serialized size itself (the build serialized the model once): the per-layer
        # sums can miss a byte where a subgraph's length prefix grows by one
        file_bytes=len(built.serialized),
        opset=built.opset,
        layers=tuple(
            LayerBytes(r.name, r.bytes_float, r.bytes_file) for r in built.layers.values()
        ),
    )


def cannot_save(layer: Layer, fmt: Format | None) -> bool:
    """True when ``fmt``'s codes and parameters alone are no smaller than the layer's float
    weights (e.g. ``blk32`` along an axis of size 1: one scale per weight)."""
    if fmt is None or not layer.weights:
        return False
    stored = sum(storage_bytes(bind(fmt, w), w.shape) for w in layer.weights)
    return stored >= sum(w.nbytes for w in layer.weights)
