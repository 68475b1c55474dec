"""The model inventory with each layer's weight error and size at a ladder of formats.

What ``bitlens inspect`` prints: a pure function of the loaded model, no
data or runtime needed (weight error only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bitlens.core import metrics
from bitlens.core.formats import INSPECT_LADDER, fake_quantize, parse_format
from bitlens.core.model.loader import LoadedModel
from bitlens.core.weights import bind, weight_bytes_after


@dataclass(frozen=True)
class FormatCell:
    format: str
    sqnr_db: float  # weight SQNR; inf when exact
    bytes: int


@dataclass(frozen=True)
class LayerRow:
    name: str
    op_type: str
    shapes: tuple[tuple[int, ...], ...]
    dtype: str
    params: int
    bytes: int
    graph_path: str
    cells: tuple[FormatCell, ...]


@dataclass(frozen=True)
class InspectReport:
    model: str
    opset: int
    producer: str
    formats: tuple[str, ...]
    rows: tuple[LayerRow, ...]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def bytes(self) -> int:
        return sum(r.bytes for r in self.rows)

    def format_bytes(self, i: int) -> int:
        return sum(r.cells[i].bytes for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["totals"] = {
            "params": self.params,
            "bytes": self.bytes,
            "formats": {
                f: {
                    "bytes": self.format_bytes(i),
                    "compression": self.bytes / max(1, self.format_bytes(i)),
                }
                for i, f in enumerate(self.formats)
            },
        }
        return d


def inspect_model(model: LoadedModel, formats: Sequence[str] = INSPECT_LADDER) -> InspectReport:
    fmts = [parse_format(f) for f in formats]
    rows = []
    for layer in model.info.layers:
        refs = [np.asarray(model.weight(w.name)) for w in layer.weights]
        flat_ref = np.concatenate([r.ravel() for r in refs])
        cells = []
        for fmt in fmts:
            q = [
                fake_quantize(r, bind(fmt, w), what=f"weight {w.name!r}").ravel()
                for r, w in zip(refs, layer.weights, strict=True)
            ]
            err = metrics.sqnr_db(flat_ref, np.concatenate(q))
            cells.append(FormatCell(fmt.name, err, weight_bytes_after(layer, fmt)))
        rows.append(
            LayerRow(
                name=layer.name,
                op_type=layer.op_type,
                shapes=tuple(w.shape for w in layer.weights),
                dtype=layer.weights[0].dtype,
                params=layer.params,
                bytes=layer.nbytes,
                graph_path=layer.graph_path,
                cells=tuple(cells),
            )
        )
    info = model.info
    name = info.path.name if info.path else "model"
    return InspectReport(name, info.opset, info.producer, tuple(f.name for f in fmts), tuple(rows))
