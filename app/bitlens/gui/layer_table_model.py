"""The layers of the open model as a table: what each layer is, its formats, its errors.

Rows are the model's quantizable layers in topological order. The two
format columns are editable; an edit becomes an undoable plan change on
the document, never a change stored here. Error and size columns read the
latest evaluation; while a newer one is computed they are shown in italics.
"""

from __future__ import annotations

import dataclasses
import math
from enum import IntEnum
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont

from bitlens.core.compare import LayerDelta, verdict
from bitlens.core.compute import compute_of
from bitlens.core.errors import BitlensError
from bitlens.core.export.accounting import cannot_save
from bitlens.core.formats import parse_format
from bitlens.core.model.half_activations import quantizable_activations
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, activation_choices, weight_choices
from bitlens.core.recovery import RECOVERY_CHOICES, parse_recovery
from bitlens.core.recovery.support import kept_recovery
from bitlens.core.results import LayerResult, TensorError
from bitlens.core.shared_weights import group_note, weight_groups
from bitlens.gui import colors
from bitlens.gui.ab_compare import signed_bytes, signed_db, verdict_color
from bitlens.gui.document import Document
from bitlens.gui.error_kind import ERROR_KINDS
from bitlens.gui.format_help import format_tooltip
from bitlens.gui.text import (
    DYNAMIC_SUFFIX,
    FLOAT_LABEL,
    NONE,
    fmt_bytes,
    fmt_count,
    fmt_db,
    fmt_format,
    fmt_shape,
    split_dynamic,
    with_dynamic,
)

SORT_ROLE = Qt.ItemDataRole.UserRole
CHOICES_ROLE = Qt.ItemDataRole.UserRole + 1  # the format names a combo offers (float first)
NAME_ROLE = Qt.ItemDataRole.UserRole + 2  # the layer name of any cell's row
# What the filter box matches: the cell's text, but the full name in the Layer column (which
# shows only the part of the name that tells layers apart, ModelInfo.short_names).
FILTER_ROLE = Qt.ItemDataRole.UserRole + 3

_Index = QModelIndex | QPersistentModelIndex


class Column(IntEnum):
    NAME = 0
    OP = 1
    SHAPE = 2
    PARAMS = 3
    WEIGHT = 4
    ACTIVATION = 5
    SIZE = 6
    WEIGHT_SQNR = 7
    LOCAL = 8
    ACCUMULATED = 9
    RAN_AS = 10
    DELTA_ERROR = 11  # B - A of the coloured error kind, while a plan A is pinned
    DELTA_BYTES = 12
    RECOVERY = 13
    BOPS = 14


# Titles of two words take two lines: one line each, the three error columns alone were
# 330 px wide at 1920x1080 and pushed the size column under the vertical scroll bar.
HEADERS = {
    Column.NAME: ("Layer", "Node name"),
    Column.OP: ("Op", "ONNX operator"),
    Column.SHAPE: ("Weight shape", "Shape of the (first) quantizable weight"),
    Column.PARAMS: ("Params", "Quantizable weight parameters"),
    Column.WEIGHT: ("Weights", "Weight format (double-click to change)"),
    Column.ACTIVATION: ("Activations", "Input activation format (double-click to change)"),
    Column.SIZE: ("Size", "Weight bytes in float → under the plan"),
    Column.WEIGHT_SQNR: ("Weight\nSQNR", ERROR_KINDS["weight"][1]),
    Column.LOCAL: ("Local\nSQNR", ERROR_KINDS["local"][1]),
    Column.ACCUMULATED: ("Accum.\nSQNR", ERROR_KINDS["accumulated"][1]),
    Column.RAN_AS: ("Ran as", "The kernel ONNX Runtime ran for the layer in the last export "
                    "of this plan (QLinearConv, Conv (NCHWc) float, MatMulNBits ...)"),
    Column.DELTA_ERROR: ("Δ SQNR\nvs A", "This plan's SQNR minus the pinned plan A's, of the "
                         "error kind chosen in the plots (▲ blue better, ▼ orange worse)"),
    Column.DELTA_BYTES: ("Δ size\nvs A", "This plan's weight bytes minus plan A's (▲ blue "
                         "smaller, ▼ orange larger)"),
    Column.RECOVERY: ("Recovery", "Accuracy recovery for the weights, from calibration data: "
                      "GPTQ, bias correction, AWQ, clipping search by output error or "
                      "SmoothQuant (activation outliers moved into the weights) "
                      "(double-click to change)"),
    Column.BOPS: ("BOPs", "Bit-operations: MACs x weight bits x activation bits, per sample "
                  "at the data's input sizes (hover for the MACs)"),
}
AB_COLUMNS = (Column.DELTA_ERROR, Column.DELTA_BYTES)  # shown only while a plan A is pinned
ERROR_COLUMNS = (Column.WEIGHT_SQNR, Column.LOCAL, Column.ACCUMULATED)
KIND_COLUMN = {
    "weight": Column.WEIGHT_SQNR,
    "local": Column.LOCAL,
    "accumulated": Column.ACCUMULATED,
}  # the error column coloured for each error kind
RECOVERY_OFF = "off"
_MISSING = -1e300  # sorts "no value" below every number
# Qt asks data(), flags() and columnCount() for every cell it paints or measures, thousands
# of times as a model opens: Column(i), len(Column) and or-ing Qt flags each cost micro-
# seconds in Python's enum module (a third of the table's share of the window's thread at
# open, profiled on the CRNN of benchmarks/bench_ui_stall.py). Looked up once here.
_COLUMNS = tuple(Column)
_N_COLUMNS = len(_COLUMNS)
_ENABLED = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
_RIGHT = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
_NUMBERS = frozenset((Column.PARAMS, Column.SIZE, Column.BOPS, *ERROR_COLUMNS, *AB_COLUMNS))
_STALE_ITALIC = frozenset((Column.SIZE, *ERROR_COLUMNS, *AB_COLUMNS))
_ROLES = frozenset((  # the roles data() answers; Qt asks a painted cell for others too
    NAME_ROLE, FILTER_ROLE, SORT_ROLE, CHOICES_ROLE, Qt.ItemDataRole.DisplayRole,
    Qt.ItemDataRole.EditRole, Qt.ItemDataRole.ToolTipRole, Qt.ItemDataRole.BackgroundRole,
    Qt.ItemDataRole.ForegroundRole, Qt.ItemDataRole.FontRole, Qt.ItemDataRole.TextAlignmentRole,
))  # fmt: skip


class LayerTableModel(QAbstractTableModel):
    editFailed = Signal(str, object)  # what was attempted, the exception

    def __init__(self, document: Document, parent: QObject | None = None):
        super().__init__(parent)
        self._doc = document
        self._layers: tuple[Layer, ...] = ()
        self._rows: dict[str, int] = {}
        self._groups: dict[str, tuple[str, ...]] = {}
        # every layer's BOPs under one plan by one count: each cell painted used to count all
        # layers again; (count, plan, BOPs by layer)
        self._bops_of: tuple[object, object, dict[str, int | None]] | None = None
        document.modelChanged.connect(self._on_model_changed)
        document.planChanged.connect(self._on_plan_changed)
        document.evaluationChanged.connect(self._on_evaluation_changed)
        document.ranAsChanged.connect(self._on_plan_changed)
        document.error_kind.changed.connect(self._on_kind_changed)
        document.ab.changed.connect(lambda: self._changed(Column.DELTA_ERROR, Column.DELTA_BYTES))
        self._on_model_changed()

    # -- lookups --------------------------------------------------------------------------
    def layer_at(self, row: int) -> Layer:
        return self._layers[row]

    def row_of(self, name: str) -> int:
        return self._rows[name]

    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self._layers)

    def text(self, row: int, col: int) -> str:
        """The text a cell shows, straight from Python (sizing columns without Qt's
        round trips through :meth:`data`)."""
        return self._display(self._layers[row], _COLUMNS[col])

    # -- Qt model interface -----------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._layers)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else _N_COLUMNS

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation != Qt.Orientation.Horizontal or section >= _N_COLUMNS:
            return None
        title, tip = HEADERS[_COLUMNS[section]]
        coloured = section == KIND_COLUMN[self._doc.error_kind.kind]
        if role == Qt.ItemDataRole.DisplayRole:
            return title
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{tip}\n(coloured: the error kind chosen in the plots and graph)" if coloured else tip
        if role == Qt.ItemDataRole.FontRole and coloured:
            font = QFont()
            font.setBold(True)
            return font
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        f = _ENABLED
        layer = self._layers[index.row()]
        col = index.column()
        if (col in (Column.WEIGHT, Column.RECOVERY) and weight_choices(layer)) or (
            col == Column.ACTIVATION
            and self._doc.info is not None
            and activation_choices(layer)
            and quantizable_activations(self._doc.info, layer)  # not in If bodies, not fp16
        ):
            f |= Qt.ItemFlag.ItemIsEditable
        return f

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role not in _ROLES or not index.isValid():
            return None
        layer = self._layers[index.row()]
        col = _COLUMNS[index.column()]
        if role == NAME_ROLE:
            return layer.name
        if role == FILTER_ROLE:
            return layer.name if col == Column.NAME else self._display(layer, col)
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(layer, col)
        if role == Qt.ItemDataRole.EditRole:
            return self._edit_value(layer, col)
        if role == SORT_ROLE:
            return self._sort_key(layer, col)
        if role == CHOICES_ROLE:
            if col == Column.WEIGHT:
                return [FLOAT_LABEL, *weight_choices(layer)]
            if col == Column.ACTIVATION:  # static first, then dynamic, side by side
                return [FLOAT_LABEL, *with_dynamic(activation_choices(layer))]
            if col == Column.RECOVERY:
                return [RECOVERY_OFF, *RECOVERY_CHOICES]
            return None
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(layer, col)
        if col in AB_COLUMNS and role in (Qt.ItemDataRole.BackgroundRole,
                                          Qt.ItemDataRole.ForegroundRole):
            v = self._ab_verdict(layer, col)
            if role == Qt.ItemDataRole.BackgroundRole:
                return verdict_color(v)
            return colors.INK if verdict_color(v) is not None else None
        coloured = col == KIND_COLUMN[self._doc.error_kind.kind]
        if role == Qt.ItemDataRole.BackgroundRole and coloured:
            scale = self._doc.error_kind.scale(self._doc.evaluation)
            return colors.error_color(_sqnr(self._error(layer, col)), scale)
        if role == Qt.ItemDataRole.ForegroundRole and coloured:
            return colors.INK if self._error(layer, col) is not None else None
        if (
            role == Qt.ItemDataRole.FontRole
            and col in _STALE_ITALIC
            and not self._doc.evaluation_current
        ):
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and col in _NUMBERS:
            return _RIGHT
        return None

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        col = index.column()
        if col not in (Column.WEIGHT, Column.ACTIVATION, Column.RECOVERY):
            return False
        layer = self._layers[index.row()]
        text = str(value).strip()
        kind = {Column.WEIGHT: "weights", Column.ACTIVATION: "activations"}.get(col, "recovery")
        try:
            if col == Column.RECOVERY:
                old = self._choice(layer)
                method = None if text == RECOVERY_OFF else text
                new = dataclasses.replace(old, recovery=parse_recovery(method))
                if new != old:
                    self._doc.edit({layer.name: new}, f"{layer.name}: recovery → {text}")
                return True
            name, dynamic = split_dynamic(text)
            fmt = None if name in ("", FLOAT_LABEL) else parse_format(name)
            old = self._choice(layer)
            if col == Column.WEIGHT:
                keep = kept_recovery(layer, fmt, old.recovery)
                new = LayerChoice(fmt, old.activation, old.dynamic, keep)
            else:
                new = LayerChoice(old.weight, fmt, dynamic and fmt is not None, old.recovery)
            if new == old:
                return True
            also = len(self._groups.get(layer.name, ())) - 1 if col == Column.WEIGHT else 0
            with_group = f" (and {also} layers reading the same weight)" if also > 0 else ""
            self._doc.edit(
                {layer.name: new}, f"{layer.name}{with_group}: {kind} → {fmt_format(text or None)}"
            )
        except BitlensError as exc:
            self.editFailed.emit(f"Setting {layer.name} {kind} to {text}", exc)
            return False
        return True

    # -- cells ------------------------------------------------------------------------------
    def _choice(self, layer: Layer) -> LayerChoice:
        plan = self._doc.plan
        return LayerChoice() if plan is None else plan[layer.name]

    def _result(self, layer: Layer) -> LayerResult | None:
        ev = self._doc.evaluation
        return None if ev is None else ev.layers.get(layer.name)

    def _error(self, layer: Layer, col: Column) -> TensorError | None:
        r = self._result(layer)
        if r is None:
            return None
        return {Column.WEIGHT_SQNR: r.weight, Column.LOCAL: r.local, Column.ACCUMULATED: r.accumulated}[
            col
        ]

    def _display(self, layer: Layer, col: Column) -> str:
        choice = self._choice(layer)
        if col == Column.NAME:
            info = self._doc.info
            return layer.name if info is None else info.short_names.get(layer.name, layer.name)
        if col == Column.OP:
            return layer.op_type
        if col == Column.SHAPE:
            return fmt_shape(layer.weights[0].shape) if layer.weights else NONE
        if col == Column.PARAMS:
            return fmt_count(layer.params)
        if col == Column.WEIGHT:
            if not layer.weights:
                return NONE
            return fmt_format(None if choice.weight is None else choice.weight.name)
        if col == Column.ACTIVATION:
            if not activation_choices(layer):
                return NONE
            name = fmt_format(None if choice.activation is None else choice.activation.name)
            return name + DYNAMIC_SUFFIX if choice.dynamic else name
        if col == Column.SIZE:
            r = self._result(layer)
            after = "…" if r is None else fmt_bytes(r.bytes_after)
            flag = " ⚠" if cannot_save(layer, choice.weight) else ""
            return f"{fmt_bytes(layer.nbytes)} → {after}{flag}"
        if col == Column.RAN_AS:
            return self._ran_as(layer) or ""
        if col == Column.DELTA_ERROR:
            d = self._delta(layer)
            return "" if d is None else signed_db(d.delta_db(self._doc.error_kind.kind))
        if col == Column.DELTA_BYTES:
            d = self._delta(layer)
            return "" if d is None else signed_bytes(d.delta_bytes)
        if col == Column.RECOVERY:
            return RECOVERY_OFF if choice.recovery is None else choice.recovery.value
        if col == Column.BOPS:
            bops = self._bops(layer)
            if bops is None:  # not 0: a layer whose sizes shape inference cannot tell
                return "unknown" if self._doc.is_open and self._doc.plan is not None else NONE
            return fmt_count(bops)
        return fmt_db(_sqnr(self._error(layer, col)))

    def _delta(self, layer: Layer) -> LayerDelta | None:
        c = self._doc.ab.comparison
        return None if c is None or not self._doc.ab.pinned else c.layer(layer.name)

    def _ab_verdict(self, layer: Layer, col: Column) -> str:
        d = self._delta(layer)
        if d is None:
            return ""
        if col == Column.DELTA_ERROR:
            return verdict(d.delta_db(self._doc.error_kind.kind))
        db = d.delta_bytes
        return "" if db is None else verdict(float(db), higher_is_better=False, tol=0.0)

    def _bops(self, layer: Layer) -> int | None:
        session = self._doc.session if self._doc.is_open else None
        if session is None or self._doc.plan is None:
            return None
        count, plan = compute_of(session.engine), self._doc.plan
        cached = self._bops_of
        if cached is None or cached[0] is not count or cached[1] is not plan:
            cached = self._bops_of = (count, plan, count.bops(session.info, plan))
        return cached[2].get(layer.name)

    def _ran_as(self, layer: Layer) -> str | None:
        """The last export's kernel for the layer, if that export was of the current plan."""
        if self._doc.ran_as_plan is None or self._doc.ran_as_plan != self._doc.plan:
            return None
        return self._doc.ran_as.get(layer.name)

    def _edit_value(self, layer: Layer, col: Column) -> str | None:
        choice = self._choice(layer)
        if col == Column.WEIGHT:
            return fmt_format(None if choice.weight is None else choice.weight.name)
        if col == Column.ACTIVATION:
            name = fmt_format(None if choice.activation is None else choice.activation.name)
            return name + DYNAMIC_SUFFIX if choice.dynamic else name
        return self._display(layer, col)

    def _sort_key(self, layer: Layer, col: Column) -> Any:
        if col == Column.NAME:
            return layer.index  # topological order, the natural order of a model
        if col == Column.PARAMS:
            return layer.params
        if col == Column.BOPS:
            return float(self._bops(layer) or -1)
        if col == Column.SIZE:
            r = self._result(layer)
            return float(layer.nbytes if r is None else r.bytes_after)
        if col in AB_COLUMNS:
            d = self._delta(layer)
            v = None if d is None else (
                d.delta_db(self._doc.error_kind.kind) if col == Column.DELTA_ERROR
                else d.delta_bytes
            )  # fmt: skip
            return _MISSING if v is None or math.isnan(v) else max(min(float(v), 1e300), -1e300)
        if col in ERROR_COLUMNS:
            s = _sqnr(self._error(layer, col))
            if s is None or math.isnan(s):
                return _MISSING
            return 1e300 if math.isinf(s) and s > 0 else s
        return self._display(layer, col)

    def _tooltip(self, layer: Layer, col: Column) -> str | None:
        group = self._groups.get(layer.name) if col in (Column.WEIGHT, Column.RECOVERY) else None
        if group is not None:  # why editing this cell changes other rows too
            tip = format_tooltip(self._display(layer, col)) if col == Column.WEIGHT else ""
            return "\n".join(t for t in (tip, group_note(layer.name, group)) if t)
        if col in (Column.WEIGHT, Column.ACTIVATION):
            return format_tooltip(self._display(layer, col)) or None
        if col == Column.SIZE and cannot_save(layer, self._choice(layer).weight):
            return (
                "this format cannot save bytes on this layer: its codes and scales alone take "
                "as much as the float weights (e.g. blocks along an axis of size 1)"
            )
        if col == Column.BOPS and self._doc.session is not None:
            macs = compute_of(self._doc.session.engine).macs.get(layer.name)
            unknown = "MACs unknown: its sizes cannot be inferred, so the totals leave it out"
            return unknown if macs is None else f"{fmt_count(macs)} MACs"
        if col == Column.NAME:
            lines = [f"{layer.name} ({layer.op_type})"]
            lines += [f"weight {w.name}: {fmt_shape(w.shape)} {w.dtype}" for w in layer.weights]
            lines += [f"activation input: {a}" for a in layer.activations]
            if layer.graph_path:
                lines.append(f"inside {layer.graph_path}")
            return "\n".join(lines)
        if col in AB_COLUMNS:
            d = self._delta(layer)
            if d is None:
                return None
            kind = self._doc.error_kind.kind
            sa, sb = d.sqnr(kind)
            return (f"A: {d.choice_a}\nB: {d.choice_b}\n{kind} SQNR A {fmt_db(sa)}, "
                    f"B {fmt_db(sb)}\nweights A {fmt_bytes(d.bytes_a)}, B {fmt_bytes(d.bytes_b)}")
        if col in ERROR_COLUMNS:
            err = self._error(layer, col)
            if err is None:
                return "not quantized" if col != Column.ACCUMULATED else "not evaluated yet"
            return (
                f"SQNR {fmt_db(err.sqnr_db)}\nMSE {err.mse:.3g}\ncosine {err.cosine:.6f}\n"
                f"max |error| {err.max_abs:.3g}\nrelative L2 {err.rel_l2:.3g}"
            )
        return None

    # -- document events ----------------------------------------------------------------------
    def _on_model_changed(self) -> None:
        info = self._doc.info
        if info is not None and info.layers is self._layers:
            # the same model with other data: rows stay, and so does the selection
            self._changed(Column.WEIGHT, Column.ACCUMULATED)
            return
        self.beginResetModel()
        self._layers = () if info is None else info.layers
        self._rows = {layer.name: i for i, layer in enumerate(self._layers)}
        self._groups = {} if info is None else weight_groups(info)  # readers of one weight
        self.endResetModel()

    def _on_plan_changed(self) -> None:
        self._changed(Column.WEIGHT, Column.BOPS)

    def _on_evaluation_changed(self) -> None:
        self._changed(Column.SIZE, Column.ACCUMULATED)

    def _on_kind_changed(self) -> None:
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, Column.WEIGHT_SQNR, Column.ACCUMULATED)
        self._changed(Column.WEIGHT_SQNR, Column.DELTA_ERROR)

    def _changed(self, first: Column, last: Column) -> None:
        if self._layers:
            self.dataChanged.emit(self.index(0, first), self.index(len(self._layers) - 1, last))


def _sqnr(err: TensorError | None) -> float | None:
    return None if err is None else err.sqnr_db
