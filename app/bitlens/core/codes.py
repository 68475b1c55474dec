"""Quantize and dequantize made visible: a slice of a tensor's stored codes, element by element.

For a weight and a (bound) format, :func:`code_slice` quantizes the tensor
once and returns, for ``count`` consecutive elements (C order from
``start``), the float value ``x``, the stored code ``q``, the parameters of
its group (scale, zero point, lookup level), the value a runtime rebuilds
from them, ``x̂``, and the error ``x̂ - x``. The codes and parameters are the
ones the export writes (:func:`bitlens.core.formats.quantize`), so for
integer formats they equal ONNX ``QuantizeLinear`` with the same scale and
zero point: ``q = clip(round(x / scale) + zero_point)``,
``x̂ = scale · (q - zero_point)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bitlens.core.errors import FormatError
from bitlens.core.formats import Family, Format, Granularity, QTensor, dequantize, quantize
from bitlens.core.model.loader import LoadedModel
from bitlens.core.model.types import Layer
from bitlens.core.weights import bind

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.plan import Plan

DEFAULT_COUNT = 64
MAX_COUNT = 4096  # a slice is for reading: more rows than this is a request for the file


@dataclass(frozen=True)
class CodeRow:
    index: tuple[int, ...]  # position in the tensor
    value: float  # the float weight x
    code: float  # the stored code q (an integer; for fp8 and float casts the cast value)
    scale: float | None  # the group's scale (alpha for binary/ternary); None for casts
    zero_point: float | None  # integer formats only
    level: float | None  # lookup formats: the codebook entry q selects
    dequantized: float  # x̂
    group: str  # which scale group the element belongs to ("tensor", "channel 3", ...)

    @property
    def error(self) -> float:
        return self.dequantized - self.value


@dataclass(frozen=True)
class CodeSlice:
    tensor: str
    format: str
    shape: tuple[int, ...]
    start: int  # flat (C order) index of the first row
    total: int  # elements in the tensor
    rows: tuple[CodeRow, ...]
    formula: str  # how x̂ is rebuilt from q, in words

    @property
    def stop(self) -> int:
        return self.start + len(self.rows)


def formula(fmt: Format) -> str:
    """How the codes are made and read back, in one line (OCP MX v1.0 section 6.3 for MX;
    NVIDIA's NVFP4: an E4M3 scale per 16 values times a float32 tensor scale)."""
    family = str(fmt.family)
    if family == "mxint8":
        return "q = round(x / (X · 2⁻⁶)) in −127…127; x̂ = X · 2⁻⁶ · q (X: the block's power of two)"
    if family.startswith("mx"):
        return "q = (x / X) cast to the element type; x̂ = X · q (X: the block's power of two)"
    if family == "nvfp4":
        return "q = (x / scale) cast to FP4 E2M1; x̂ = scale · q (scale: block × tensor scale)"
    if fmt.is_float and not fmt.has_scale:
        return f"q = x cast to {fmt.name}; x̂ = q"
    if fmt.family is Family.INT:
        return "q = clip(round(x / scale) + zero point); x̂ = scale · (q − zero point)"
    if fmt.is_float:
        return f"q = (x / scale) cast to {fmt.name}; x̂ = scale · q"
    if fmt.family is Family.BINARY:
        return "q = sign(x) ∈ {−1, 1}; x̂ = α · q (α = the scale column)"
    if fmt.family is Family.TERNARY:
        return "q ∈ {−1, 0, 1} (|x| against a threshold); x̂ = α · q (α = the scale column)"
    if fmt.family is Family.KMEANS:
        return "q = index of the nearest codebook level; x̂ = level[q]"
    return "q = index of the nearest level of x / scale; x̂ = scale · level[q]"


def code_slice(
    values: np.ndarray,
    fmt: Format,
    *,
    start: int = 0,
    count: int = DEFAULT_COUNT,
    name: str = "tensor",
    stored: tuple[QTensor, np.ndarray] | None = None,
    note: str = "",
) -> CodeSlice:
    """``count`` elements of ``values`` from flat index ``start``, with their codes.

    ``fmt`` must be bound to the tensor (per-channel and block formats need
    their axis, as :func:`bitlens.core.weights.bind` gives a layer's weight).
    ``stored``: the codes and the values they stand for when they are not plain
    rounding of ``values`` (a recovery method chose them); ``note`` says how, after the
    formula.
    """
    x = np.asarray(values)
    total = int(x.size)
    if total == 0:
        raise FormatError(f"{name} is empty: no codes to show")
    if not 0 <= start < total:
        raise FormatError(f"{name}: start {start} is outside its {total} elements")
    if count < 1:
        raise FormatError(f"{name}: count must be at least 1, got {count}")
    count = min(count, MAX_COUNT, total - start)
    q, xhat = (quantize(x, fmt, what=name), None) if stored is None else stored
    xhat = dequantize(q) if xhat is None else np.asarray(xhat)
    flat = np.arange(start, start + count)
    idx = np.unravel_index(flat, x.shape)
    g = q.grouping

    def at(params: np.ndarray | None) -> np.ndarray | None:
        if params is None:
            return None
        return np.broadcast_to(g.expand(params), x.shape)[idx]

    scale = q.scale
    second = getattr(q, "tensor_scale", None)  # NVFP4: block scales times one tensor scale
    if scale is not None and second is not None:
        scale = (np.asarray(scale, np.float32) * np.float32(second)).astype(np.float32)
    scales = at(scale)
    zps = at(q.zero_point) if fmt.family is Family.INT else None
    levels = _levels(q, fmt, idx)
    xs = x[idx].astype(np.float64)
    codes = q.codes[idx]
    deq = xhat[idx].astype(np.float64)
    rows = tuple(
        CodeRow(
            index=tuple(int(i[k]) for i in idx),
            value=float(xs[k]),
            code=float(codes[k]),
            scale=None if scales is None else float(scales[k]),
            zero_point=None if zps is None else float(zps[k]),
            level=None if levels is None else float(levels[k]),
            dequantized=float(deq[k]),
            group=_group(fmt, tuple(int(i[k]) for i in idx), g.block_size),
        )
        for k in range(count)
    )
    text = formula(fmt) + (f"; {note}" if note else "")
    return CodeSlice(name, fmt.name, tuple(x.shape), start, total, rows, text)


def _levels(q, fmt: Format, idx: tuple[np.ndarray, ...]) -> np.ndarray | None:
    book = q.codebook
    if book is None:
        return None
    codes = q.codes[idx].astype(np.int64)
    if book.ndim == 1:
        return book[codes]
    channel = idx[fmt.axis if fmt.axis is not None else 0]  # per-channel k-means: (C, L)
    return book[channel, codes]


def _group(fmt: Format, index: tuple[int, ...], block: int) -> str:
    if fmt.granularity is Granularity.TENSOR or fmt.axis is None:
        return "tensor"
    axis = fmt.axis
    if fmt.granularity is Granularity.BLOCK:
        return f"block {index[axis] // block} along axis {axis}"
    return f"channel {index[axis]}"


def summary(s: CodeSlice) -> str:
    """One line on the slice's error, for a header."""
    errs = [abs(r.error) for r in s.rows]
    worst = max(errs) if errs else 0.0
    rms = math.sqrt(sum(e * e for e in errs) / len(errs)) if errs else 0.0
    return (
        f"{s.tensor} {list(s.shape)} in {s.format}: elements {s.start}–{s.stop - 1} of "
        f"{s.total}; |x̂ − x| max {worst:.3g}, rms {rms:.3g}"
    )


def layer_code_slice(
    model: LoadedModel,
    layer: Layer,
    fmt: Format | None,
    start: int = 0,
    count: int = DEFAULT_COUNT,
) -> CodeSlice:
    """The codes of ``layer``'s first weight in ``fmt`` (bound to the weight's axes, as the
    engine and the export bind it)."""
    if not layer.weights:
        raise FormatError(f"layer {layer.name} has no weights to quantize")
    if fmt is None:
        raise FormatError(f"layer {layer.name} keeps its weights in float: no codes")
    w = layer.weights[0]
    return code_slice(model.weight(w), bind(fmt, w), start=start, count=count, name=w.name)


def planned_code_slice(
    engine: Engine, plan: Plan, layer: Layer, start: int = 0, count: int = DEFAULT_COUNT
) -> CodeSlice:
    """The codes of ``layer``'s first weight as ``plan`` stores them: plain rounding, or the
    codes its recovery method chose (the ones the engine feeds and the export writes,
    :meth:`RecoveryCache.quantized`), with the scale of each channel whose int32 bias did not
    fit on an integer kernel raised as the export raises it (core/engine/bias_fit.py: those
    channels' codes are the weight requantized at that scale). For AWQ and SmoothQuant the
    codes stand for ``x · s`` (``s`` per input channel); x̂ is then the weight as the layer's
    input sees it, ``scale · (q − zero point) / s``."""
    choice = plan[layer.name]
    if choice.weight is None or not layer.weights:
        return layer_code_slice(engine.model, layer, choice.weight, start, count)
    w = layer.weights[0]
    notes: list[str] = []
    stored: tuple[QTensor, np.ndarray] | None = None
    fmt = bind(choice.weight, w)
    if choice.recovery is not None:
        qw = engine.recovery.quantized(layer, w, choice)
        rec = engine.recovery.of(layer, choice)
        scaled = rec.input_scale is not None or rec.act_scale is not None
        notes.append(
            f"{rec.method.value}: q encodes x · s (s per input channel), x̂ = that / s"
            if scaled else f"codes chosen by {rec.method.value}"
        )  # fmt: skip
        stored, fmt = (qw.q, rec.seen_weight), qw.fmt
    fitted = engine.bias_fitted_weights(plan, engine.placement(plan)).get(w.name)
    if fitted is not None:
        before = np.asarray(
            (stored[0] if stored is not None else quantize(engine.model.weight(w), fmt)).scale
        )
        raised = np.flatnonzero(np.asarray(fitted.q.scale) != before)
        where = "" if before.ndim == 0 else f" of channel(s) {_some(raised)}"
        notes.append(
            f"the scale{where} raised so the int32 bias fits (ONNX Runtime's rule), its codes "
            "requantized at it"
        )
        stored, fmt = (fitted.q, fitted.values), fitted.fmt
    return code_slice(
        engine.model.weight(w), fmt, start=start, count=count, name=w.name, stored=stored,
        note="; ".join(notes),
    )  # fmt: skip


def _some(indices: np.ndarray, shown: int = 8) -> str:
    """``1, 4, 9`` or ``1, 4, 9, … (20 in all)``."""
    head = ", ".join(str(int(i)) for i in indices[:shown])
    return head if len(indices) <= shown else f"{head}, … ({len(indices)} in all)"
