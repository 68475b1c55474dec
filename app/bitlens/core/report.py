"""Weight error and size of every layer at a ladder of formats (``bitlens inspect``).

:func:`inspect_model` is a pure function of a loaded model and format names:
for each layer it fake-quantizes the weights in each format and reports the
weight SQNR (over all the layer's weights together) and the exact storage
bytes. Formats written without an axis ("int8 sym ch", "int4 sym blk32")
are bound to each weight's natural axis: output channels for per-channel
formats, the reduction axis for blocks.

Totals count each stored tensor once, so a weight shared by two layers
(tied embeddings) is not counted twice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats import INSPECT_LADDER, Format, fake_quantize, parse_format
from bitlens.core.formats import storage_bytes as format_bytes
from bitlens.core.jsonsafe import jsonable
from bitlens.core.metrics import sqnr_db
from bitlens.core.model.loader import LoadedModel
from bitlens.core.model.types import Layer, WeightInfo
from bitlens.core.weights import bind


@dataclass(frozen=True)
class FormatCost:
    """One layer's weights stored in one format."""

    format: str
    sqnr_db: float  # +inf when the format represents the weights exactly
    nbytes: int


@dataclass(frozen=True)
class LayerReport:
    name: str
    op_type: str
    graph_path: str
    weights: tuple[WeightInfo, ...]
    params: int
    nbytes: int  # at the weights' stored precision
    costs: tuple[FormatCost, ...]  # in the order of ModelReport.formats


@dataclass(frozen=True)
class FormatTotal:
    format: str
    nbytes: int
    compression: float | None  # stored bytes / bytes in this format; None without weights


@dataclass(frozen=True)
class ModelReport:
    path: str | None
    opset: int
    ir_version: int
    producer: str
    formats: tuple[str, ...]
    layers: tuple[LayerReport, ...]
    params: int  # unique quantizable weights
    nbytes: int
    totals: tuple[FormatTotal, ...]
    notes: tuple[str, ...] = ()  # the loader's (ModelInfo.notes)


def inspect_model(
    model: LoadedModel, formats: Sequence[str | Format] = INSPECT_LADDER
) -> ModelReport:
    """Per-layer weight SQNR and bytes at each format, with model totals."""
    fmts = tuple(parse_format(f) for f in formats)
    names = tuple(f.name for f in fmts)
    # (graph_path, name, format index) -> (dequantized values, bytes), shared by tied layers.
    memo: dict[tuple[str, str, int], tuple[np.ndarray, int]] = {}
    layers = tuple(_layer_report(model, layer, fmts, names, memo) for layer in model.info.layers)

    unique = [(w.graph_path, w.name) for w in model.info.unique_weights]
    nbytes = model.info.nbytes  # a weight several layers read, once
    totals = []
    for i, name in enumerate(names):
        fbytes = sum(memo[(*key, i)][1] for key in unique)
        totals.append(FormatTotal(name, fbytes, nbytes / fbytes if fbytes else None))
    info = model.info
    return ModelReport(
        path=str(model.path) if model.path is not None else None,
        opset=info.opset,
        ir_version=info.ir_version,
        producer=info.producer,
        formats=names,
        layers=layers,
        params=model.info.params,
        nbytes=nbytes,
        totals=tuple(totals),
        notes=info.notes,
    )


def _layer_report(
    model: LoadedModel,
    layer: Layer,
    fmts: tuple[Format, ...],
    names: tuple[str, ...],
    memo: dict[tuple[str, str, int], tuple[np.ndarray, int]],
) -> LayerReport:
    refs = [model.weight(w) for w in layer.weights]
    costs = []
    for i, (fmt, name) in enumerate(zip(fmts, names, strict=True)):
        approx, total = [], 0
        for w, ref in zip(layer.weights, refs, strict=True):
            key = (w.graph_path, w.name, i)
            if key not in memo:
                memo[key] = _quantize(ref, fmt, w, layer)
            values, nbytes = memo[key]
            approx.append(values)
            total += nbytes
        sqnr = sqnr_db(_flat(refs), _flat(approx))
        costs.append(FormatCost(name, sqnr, total))
    return LayerReport(
        name=layer.name,
        op_type=layer.op_type,
        graph_path=layer.graph_path,
        weights=layer.weights,
        params=layer.params,
        nbytes=layer.nbytes,
        costs=tuple(costs),
    )


def _quantize(ref: np.ndarray, fmt: Format, w: WeightInfo, layer: Layer) -> tuple[np.ndarray, int]:
    bound = bind(fmt, w)
    try:
        return fake_quantize(ref, bound, what=f"weight {w.name!r}"), format_bytes(bound, w.shape)
    except FormatError as exc:
        raise FormatError(f"layer {layer.name}: {exc}") from None


def _flat(arrays: list[np.ndarray]) -> np.ndarray:
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])


def sqnr_json(value: float) -> float | str:
    """SQNR for JSON: finite numbers as they are, infinities as "inf" / "-inf"."""
    if not math.isfinite(value):
        return jsonable(value)
    return round(value, 4)
