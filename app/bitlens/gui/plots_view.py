"""Error and size per layer, side by side on one shared layer axis.

The top plot shows the chosen error metric per layer (bars coloured by the
layer's SQNR); the bottom one the weight bytes in float next to the bytes
under the plan. Both share the x axis (layer index in topological order),
so zooming one zooms the other. Clicking a bar selects its layer.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.units import byte_scale
from bitlens.gui import colors
from bitlens.gui.ab_compare import A_SERIES, signed_bytes, signed_db
from bitlens.gui.document import Document
from bitlens.gui.elided_label import ElidedLabel
from bitlens.gui.error_kind import ErrorKindBox
from bitlens.gui.series import METRICS, error_series, size_series
from bitlens.gui.text import fmt_bytes, fmt_db, fmt_float

METRIC_AXIS = {"sqnr": "dB", "mse": "MSE", "cosine": "1 − cos"}

BAR_W = 0.8


class LayerAxis(pg.AxisItem):
    """An x axis of layer indices: ticks on whole numbers only."""

    def tickSpacing(self, minVal: float, maxVal: float, size: float):
        levels = super().tickSpacing(minVal, maxVal, size)
        out = []
        for spacing, _offset in levels:
            spacing = max(1.0, float(round(spacing)))
            if all(spacing != s for s, _ in out):
                out.append((spacing, 0.0))
        return out


class PlotsView(QWidget):
    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self._names: tuple[str, ...] = ()
        self.metric_box = QComboBox(self)
        self.metric_box.setObjectName("plotMetric")
        for key, label in METRICS.items():
            self.metric_box.addItem(label, key)
        self.source = ErrorKindBox(document.error_kind, self)
        self.source.setObjectName("plotSource")
        self.metric_box.currentIndexChanged.connect(self._redraw)
        document.error_kind.changed.connect(self._redraw)
        # one line: what the chosen error kind measures; never widens the pane: a narrow
        # one cuts the line with "…" (the tooltip holds it whole)
        self.kind_help = ElidedLabel(parent=self)
        self.kind_help.setObjectName("errorKindHelp")
        self.kind_help.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.info = QLabel(self)
        self.info.setObjectName("plotInfo")
        self.info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.canvas = pg.GraphicsLayoutWidget(self)
        self.error_plot = self.canvas.addPlot(
            row=0, col=0, axisItems={"bottom": LayerAxis("bottom")}
        )
        self.size_plot = self.canvas.addPlot(
            row=1, col=0, axisItems={"bottom": LayerAxis("bottom")}
        )
        self.size_plot.setXLink(self.error_plot)
        for plot in (self.error_plot, self.size_plot):
            plot.showGrid(x=False, y=True, alpha=0.25)
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.vb.setMouseEnabled(x=True, y=False)
        # The x axis (layer index, topological order) is said in the tooltip and the info
        # line, and the error plot's ticks repeat the size plot's: both cost height that a
        # laptop screen does not have.
        self.error_plot.getAxis("bottom").setStyle(showValues=False)
        self.error_plot.getAxis("bottom").setHeight(4)
        self.size_plot.setLabel("left", "size")
        for plot in (self.error_plot, self.size_plot):
            plot.getAxis("left").setWidth(64)  # both y axes equally wide: bars line up
        # one large layer flattens the others: a log scale shows them all
        self.size_scale = QComboBox(self)
        self.size_scale.setObjectName("sizeScale")
        self.size_scale.addItem("linear sizes", False)
        self.size_scale.addItem("log sizes", True)
        self.size_scale.setToolTip(
            "Size axis: linear, or logarithmic so that small layers stay visible next to "
            "a large one"
        )
        self.size_scale.currentIndexChanged.connect(self._redraw)
        self.size_legend = QLabel(self)  # outside the plot, where it hides no bar
        self.size_legend.setObjectName("sizeLegend")
        self.error_bars = pg.BarGraphItem(x=[], height=[], width=BAR_W)
        self.before_bars = pg.BarGraphItem(x=[], height=[], width=BAR_W / 2, name="float")
        self.after_bars = pg.BarGraphItem(x=[], height=[], width=BAR_W / 2, name="plan")
        # the pinned plan A's bars, next to the current plan's (shown only while pinned)
        self.a_error_bars = pg.BarGraphItem(x=[], height=[], width=BAR_W / 2, name="A")
        self.a_size_bars = pg.BarGraphItem(x=[], height=[], width=BAR_W / 3, name="A")
        self.error_plot.addItem(self.error_bars)
        self.error_plot.addItem(self.a_error_bars)
        self.size_plot.addItem(self.before_bars)
        self.size_plot.addItem(self.after_bars)
        self.size_plot.addItem(self.a_size_bars)
        self.marks = [pg.InfiniteLine(angle=90, movable=False) for _ in range(2)]
        for plot, mark in zip((self.error_plot, self.size_plot), self.marks, strict=True):
            plot.addItem(mark, ignoreBounds=True)
            mark.setVisible(False)
        self.canvas.scene().sigMouseClicked.connect(self._on_click)
        self.canvas.scene().sigMouseMoved.connect(self._on_hover)

        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(QLabel("Error:", self))
        bar.addWidget(self.metric_box)
        bar.addWidget(self.source)
        bar.addWidget(self.kind_help, 1)
        bar.addWidget(self.size_scale)
        bar.addWidget(self.size_legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.info)

        document.modelChanged.connect(self._on_model_changed)
        document.evaluationChanged.connect(self._redraw)
        document.selection.changed.connect(self._on_selection_changed)
        document.ab.changed.connect(self._redraw)
        self._restyle()
        self._on_model_changed()

    # -- drawing --------------------------------------------------------------------------------
    def _on_model_changed(self) -> None:
        info = self._doc.info
        self._names = () if info is None else info.layer_names
        # drawn on a later pass, in one of its own (gui/view_passes.py): the window's repaint
        # of the new model's table and panes is the open's longest pass (issue 11)
        self._doc.view_passes.post(self._show_model)

    def _show_model(self) -> None:
        self._redraw()
        n = len(self._names)
        if n:
            self.error_plot.setXRange(-0.6, n - 0.4, padding=0)

    def _redraw(self) -> None:
        info = self._doc.info
        metric, source = self.metric_box.currentData(), self._doc.error_kind.kind
        explanation = self._doc.error_kind.explanation
        self.kind_help.setText(explanation)
        self.kind_help.setToolTip(explanation)
        names = self._names
        _set_label(self.error_plot, METRIC_AXIS[metric])
        ev = self._doc.evaluation
        ab = self._doc.ab
        ev_a = ab.evaluation_a if ab.pinned else None
        s = error_series(ev, names, metric, source)
        ok = np.isfinite(s.values)
        x = np.arange(len(names), dtype=np.float64)
        brushes = []
        scale = self._doc.error_kind.scale(ev)
        for sq, exact in zip(s.sqnr[ok], s.exact[ok], strict=True):
            c = colors.error_color(None if np.isnan(sq) else float(sq), scale) or QColor(
                150, 150, 150
            )
            brushes.append(pg.mkBrush(c.lighter(115) if exact else c))
        # With a plan A pinned, A's bar (orange) stands left of the current plan's (B).
        w_err = BAR_W / 2 if ev_a is not None else BAR_W
        shift = BAR_W / 4 if ev_a is not None else 0.0
        self.error_bars.setOpts(x=x[ok] + shift, height=s.values[ok], width=w_err, brushes=brushes)
        a = error_series(ev_a, names, metric, source)
        a_ok = np.isfinite(a.values)
        self.a_error_bars.setOpts(x=x[a_ok] - shift, height=a.values[a_ok], width=w_err)
        self.a_error_bars.setVisible(ev_a is not None)
        nbytes = [] if info is None else [layer.nbytes for layer in info.layers]
        before, after = size_series(ev, names, nbytes)
        _, a_after = size_series(ev_a, names, nbytes)
        before, after, a_after = self._scale_sizes(before, after, a_after)
        third = BAR_W / 3
        if ev_a is not None:  # float, A, B side by side
            self.before_bars.setOpts(x=x - third, height=before, width=third)
            has_a = np.isfinite(a_after)
            self.a_size_bars.setOpts(x=x[has_a], height=a_after[has_a], width=third)
            after_x, after_w = x + third, third
        else:
            self.before_bars.setOpts(x=x - BAR_W / 4, height=before, width=BAR_W / 2)
            after_x, after_w = x + BAR_W / 4, BAR_W / 2
        self.a_size_bars.setVisible(ev_a is not None)
        has_after = np.isfinite(after)
        self.after_bars.setOpts(x=after_x[has_after], height=after[has_after], width=after_w)
        self._legend(ev_a is not None)
        self._on_selection_changed(None)

    def _scale_sizes(self, *sizes: np.ndarray) -> tuple[np.ndarray, ...]:
        """Bar heights on the chosen size axis (the float sizes first): bytes in the largest
        binary unit that keeps them readable, or log10 of the bytes (the axis then reads
        10^n B)."""
        axis = self.size_plot.getAxis("left")
        if self.size_scale.currentData():
            axis.setLogMode(False, True)
            _set_label(self.size_plot, "B (log)")
            # a bar starts at 1 B (log 0); a layer of no bytes draws no bar
            return tuple(np.log10(np.maximum(v, 1.0)) for v in sizes)
        axis.setLogMode(False, False)
        before = sizes[0]
        largest = float(np.nanmax(before)) if before.size else 0.0
        divisor, unit = byte_scale(largest)
        _set_label(self.size_plot, unit)
        return tuple(v / divisor for v in sizes)

    def _restyle(self) -> None:
        pal = self.palette()
        bg = pal.color(QPalette.ColorRole.Base)
        fg = pal.color(QPalette.ColorRole.Text)
        self.canvas.setBackground(bg)
        for plot in (self.error_plot, self.size_plot):
            for axis in ("left", "bottom"):
                ax = plot.getAxis(axis)
                ax.setPen(pg.mkPen(fg))
                ax.setTextPen(pg.mkPen(fg))
        line = pg.mkPen(pal.color(QPalette.ColorRole.Mid), width=0.5)
        self.before_bars.setOpts(brush=pg.mkBrush(colors.BEFORE), pen=line)
        self.after_bars.setOpts(brush=pg.mkBrush(colors.AFTER), pen=line)
        self.error_bars.setOpts(pen=line)
        for mark in self.marks:
            mark.setPen(pg.mkPen(colors.HIGHLIGHT, width=2))
        self.a_error_bars.setOpts(brush=pg.mkBrush(A_SERIES), pen=line)
        self.a_size_bars.setOpts(brush=pg.mkBrush(A_SERIES), pen=line)
        self._legend(self._doc.ab.pinned)

    def _legend(self, with_a: bool) -> None:
        a = f"<span style='color:{A_SERIES.name()}'>■</span> A " if with_a else ""
        plan = "B" if with_a else "plan"
        self.size_legend.setText(
            f"<span style='color:{colors.BEFORE.name()}'>■</span> float {a}"
            f"<span style='color:{colors.AFTER.name()}'>■</span> {plan}"
        )

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()

    # -- selection ----------------------------------------------------------------------------------
    def _on_selection_changed(self, _origin: object) -> None:
        cur = self._doc.selection.current
        if cur is None or cur not in self._names:
            for mark in self.marks:
                mark.setVisible(False)
            self.info.setText("Layers in topological order; click a bar to select its layer.")
            return
        i = self._names.index(cur)
        for mark in self.marks:
            mark.setValue(i)
            mark.setVisible(True)
        self.info.setText(self._describe(i))

    def _describe(self, i: int) -> str:
        name = self._names[i]
        info = self._doc.info
        assert info is not None
        layer = info.layer(name)
        ev = self._doc.evaluation
        r = None if ev is None else ev.layers.get(name)
        parts = [f"<b>layer {i}: {name}</b> ({layer.op_type})"]
        if r is not None:
            src = {"local": r.local, "accumulated": r.accumulated, "weight": r.weight}[
                self._doc.error_kind.kind
            ]
            if src is not None:
                parts.append(
                    f"SQNR {fmt_db(src.sqnr_db)}, MSE {fmt_float(src.mse, 3)}, "
                    f"cos {src.cosine:.5f}"
                )
            parts.append(f"{fmt_bytes(r.bytes_before)} → {fmt_bytes(r.bytes_after)}")
        c = self._doc.ab.comparison
        d = None if c is None or not self._doc.ab.pinned else c.layer(name)
        if d is not None:  # against the pinned plan A
            delta = signed_db(d.delta_db(self._doc.error_kind.kind)) or "—"
            parts.append(f"vs A ({d.choice_a}): {delta}, {signed_bytes(d.delta_bytes) or '—'}")
        return " · ".join(parts)

    def layer_at_scene(self, pos: QPointF) -> str | None:
        """The layer whose bar column is under a scene position, if any."""
        for plot in (self.error_plot, self.size_plot):
            if plot.sceneBoundingRect().contains(pos):
                x = plot.vb.mapSceneToView(pos).x()
                i = round(x)
                if 0 <= i < len(self._names) and abs(x - i) <= BAR_W / 2 + 0.1:
                    return self._names[i]
        return None

    def _on_click(self, event) -> None:  # pyqtgraph MouseClickEvent
        if event.button() != Qt.MouseButton.LeftButton:
            return
        name = self.layer_at_scene(event.scenePos())
        if name is None:
            return
        sel = self._doc.selection
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            sel.toggle(name, origin=self)
        else:
            sel.set([name], name, origin=self)
        event.accept()

    def _on_hover(self, pos: QPointF) -> None:
        name = self.layer_at_scene(pos)
        if name is not None:
            self.canvas.setToolTip(self._describe(self._names.index(name)))
        else:
            self.canvas.setToolTip("")


def _set_label(plot: pg.PlotItem, text: str) -> None:
    """The y axis's title, centred on the axis. pyqtgraph (0.14) places the title only when
    the axis is resized (AxisItem.resizeEvent): a title set afterwards kept the centre of
    the one before ("dB" above the error plot's middle after a change of model or metric)."""
    axis = plot.getAxis("left")
    if axis.labelText == text and axis.label.isVisible():
        return  # unchanged: no new layout of the axis, no repaint
    plot.setLabel("left", text)
    axis.resizeEvent()

