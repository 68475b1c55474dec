"""The selected layer up close: value histograms with the format's grid, and the sandbox.

The weight and input-activation histograms show the chosen format's
levels (thin vertical ticks) and its clip range (dashed lines); the
sandbox table lists the error and size of every weight format for this
layer. Double-clicking a sandbox row applies that format (an undoable edit).
All numbers come from a :class:`~bitlens.gui.jobs.LayerDetail` computed in
a worker.
"""

from __future__ import annotations

import html

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QFont, QPalette, QResizeEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.errors import FormatError
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice
from bitlens.core.viewdata import Distribution
from bitlens.gui import colors
from bitlens.gui.activation_sandbox import ActivationSandbox
from bitlens.gui.codes_view import CodesView
from bitlens.gui.compact_axis import CompactAxis
from bitlens.gui.format_help import format_tooltip
from bitlens.gui.histogram_plot import HistogramItems
from bitlens.gui.jobs import LayerDetail
from bitlens.gui.plot_title import FittedTitle
from bitlens.gui.recovery_table import RecoveryTable
from bitlens.gui.table_fill import sized_once
from bitlens.gui.text import (
    DYNAMIC_SUFFIX,
    fmt_bytes,
    fmt_db,
    fmt_float,
    fmt_format,
    fmt_ratio,
    split_dynamic,
)
from bitlens.gui.view_passes import ViewPasses

SANDBOX_COLUMNS = ("Format", "SQNR", "MSE", "Bytes", "Ratio")


CODES_ROWS = 8  # rows the Codes tab's table shows at least, where the pane has the height
NBSP = "\u00a0"  # a space no line breaks at


class LayerDetailView(QWidget):
    formatPicked = Signal(str, str)  # layer, weight format name

    def __init__(self, parent: QWidget | None = None, passes: ViewPasses | None = None):
        super().__init__(parent)
        self.detail: LayerDetail | None = None
        # What each part shows now: a detail arrives in stages (each a new object sharing
        # the parts already computed), and redrawing unchanged plots and tables on every
        # stage kept the window's thread busy while the worker computes the next one.
        self._drawn: dict[str, tuple[object, ...]] = {}
        # show_later's detail, drawn on a later event-loop pass than the handler that
        # delivered it, in a pass of its own (the window's: shared with the graph's build,
        # gui/view_passes.py), and only the newest of the stages that arrived meanwhile.
        self._queued: LayerDetail | None = None
        self._passes = passes if passes is not None else ViewPasses(self)
        self.header = QLabel(self)
        self.header.setObjectName("detailHeader")
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.weight_plot, self.act_plot = (
            pg.PlotWidget(self, axisItems={"bottom": CompactAxis("bottom"),
                                           "left": CompactAxis("left")})
            for _ in range(2)
        )  # fmt: skip
        for plot in (self.weight_plot, self.act_plot):
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMinimumHeight(70)  # short screens: the splitter gives them more
            plot.getPlotItem().setLabel("left", "count")
        self.titles = {p: FittedTitle(p) for p in (self.weight_plot, self.act_plot)}
        self.histograms = {
            p: HistogramItems(p.getPlotItem()) for p in (self.weight_plot, self.act_plot)
        }
        self.sandbox = QTableWidget(0, len(SANDBOX_COLUMNS), self)
        self.sandbox.setObjectName("sandbox")
        self.sandbox.setHorizontalHeaderLabels(list(SANDBOX_COLUMNS))
        self.sandbox.verticalHeader().setVisible(False)
        self.sandbox.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.sandbox.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.sandbox.setToolTip("Every weight format on this layer; double-click to apply one")
        # The numbers keep their width; the format name takes what is left and is elided
        # when the pane is narrow (its tooltip names it), so the pane never scrolls
        # sideways to show the Ratio column (it did at 1280x720).
        header = self.sandbox.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.sandbox.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.sandbox.cellDoubleClicked.connect(self._on_pick)
        self.act_sandbox = ActivationSandbox(self)
        self.sandboxes = QTabWidget(self)
        self.sandboxes.setObjectName("sandboxes")
        self.sandboxes.addTab(self.sandbox, "Weights")
        self.sandboxes.addTab(self.act_sandbox, "Activations")
        self.recovery = RecoveryTable(self)
        self.sandboxes.addTab(self.recovery, "Recovery")
        self.sandboxes.setTabToolTip(
            2, "Each recovery method's output error on this layer next to plain rounding"
        )
        self.sandboxes.setTabToolTip(0, "Every weight format on this layer")
        self.sandboxes.setTabToolTip(
            1, "Every activation format on this layer's input: static (calibrated range) and "
            "dynamic (range of each input at run time), side by side"
        )
        # the codes of the chosen weight format, next to the sandboxes
        self.codes = CodesView(self)
        self.sandboxes.addTab(self.codes, "Codes")
        self.sandboxes.setTabToolTip(3, "The weights' integer codes, scales and rebuilt values")
        self.sandboxes.setUsesScrollButtons(True)  # the tab bar never sets the pane's width
        self.sandboxes.setElideMode(Qt.TextElideMode.ElideRight)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.weight_plot)
        splitter.addWidget(self.act_plot)
        splitter.addWidget(self.sandboxes)
        splitter.setChildrenCollapsible(False)
        for i, stretch in enumerate((2, 2, 3)):  # the histograms keep their share of height
            splitter.setStretchFactor(i, stretch)
        splitter.setSizes([200, 200, 300])
        self.splitter = splitter
        self._codes_timer = QTimer(self)
        self._codes_timer.setSingleShot(True)
        self._codes_timer.setInterval(0)
        self._codes_timer.timeout.connect(self._room_for_codes)
        self.sandboxes.currentChanged.connect(lambda _i: self._codes_timer.start())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.header)
        layout.addWidget(splitter, 1)
        self._restyle()
        self.show_detail(None)

    # -- content ------------------------------------------------------------------------------
    def show_later(self, detail: LayerDetail | None) -> None:
        """Show ``detail`` on a later event-loop turn (the controller's results: at open they
        come in the same turn as the table's fill and the window's first paint, issue 11)."""
        self._queued = detail
        self._passes.post(self._show_queued)

    def _show_queued(self) -> None:
        self.show_detail(self._queued)

    @property
    def is_pending(self) -> bool:
        """A detail handed to show_later is still to be drawn (on a later pass)."""
        return self._passes.is_queued(self._show_queued)

    def show_pending(self, layer: str, waiting_for: str | None) -> None:
        """Another layer was selected and its detail is not computed yet: say so rather
        than keep showing the previous layer's plots."""
        self._passes.cancel(self._show_queued)  # a queued detail is the previous layer's
        after = f" after “{waiting_for}”" if waiting_for else ""
        self._clear(f"<b>{layer}</b> · computing{after}…")

    def _clear(self, header: str) -> None:
        """No layer's detail shown: empty plots and tables under ``header``."""
        self.detail = None
        self._drawn.clear()
        self.header.setText(header)
        self._draw(self.weight_plot, None, "weights")
        self._draw(self.act_plot, None, "input activation")
        self.sandbox.setRowCount(0)
        self.act_sandbox.setRowCount(0)
        self.codes.set_target(None, None)
        self.recovery.setRowCount(0)

    def show_detail(self, detail: LayerDetail | None) -> None:
        self._passes.cancel(self._show_queued)
        self._queued = None
        if detail is None:
            self._clear("Select a layer (in the table, graph or plots) to inspect it.")
            return
        self.detail = detail
        self.codes.set_target(detail.layer, detail.choice)
        c = detail.choice
        w = fmt_format(None if c.weight is None else c.weight.name)
        a = fmt_format(None if c.activation is None else c.activation.name)
        a += DYNAMIC_SUFFIX if c.dynamic and c.activation is not None else ""
        # the header wraps between its parts, never inside one: at 1280x720 it broke
        # "20.2 | KiB in float" and "keep | float" across lines (ddddocr, nudenet)
        parts = (f"weights: {w}", f"activations: {a}", f"{fmt_bytes(detail.bytes_before)} in float")
        self.header.setText(
            f"<b>{html.escape(detail.layer, quote=False)}</b> · "
            + " · ".join(html.escape(t, quote=False).replace(" ", NBSP) for t in parts)
            + (f"<br>{html.escape(detail.grid_note, quote=False)}" if detail.grid_note else "")
        )
        tip = f"weight tensor {detail.weight_name}"
        if self._fresh("weights", detail.weights, tip):
            self._draw(self.weight_plot, detail.weights, "weights", tip, w)
        act_title = (
            "input activation" if detail.activation is not None
            else detail.activation_note or "input activation"
        )  # fmt: skip
        tip = f"activation {detail.activation_name}"
        if self._fresh("activation", detail.activation, act_title, tip, a):
            self._draw(self.act_plot, detail.activation, act_title, tip, a)
        if self._fresh("schemes", detail.schemes, detail.choice):
            self._fill_sandbox(detail)
        if self._fresh("activations", detail.layer, detail.activations, detail.choice):
            self.act_sandbox.show_rows(detail.layer, detail.activations, detail.choice)
        if self._fresh("recovery", detail.layer, detail.recovery, detail.choice):
            current = None if detail.choice.recovery is None else detail.choice.recovery.value
            self.recovery.show_rows(detail.recovery, detail.recovery_format, current)

    def _fresh(self, part: str, *shown: object) -> bool:
        """Whether ``part`` must be drawn to show ``shown`` (and remember that it is);
        values are the same when they are the same object, or equal texts and choices."""
        old = self._drawn.get(part)
        if old is not None and len(old) == len(shown) and all(
            a is b or (isinstance(a, str | LayerChoice) and a == b)
            for a, b in zip(old, shown, strict=True)
        ):
            return False
        self._drawn[part] = shown
        return True

    def _draw(
        self,
        plot: pg.PlotWidget,
        dist: Distribution | None,
        title: str,
        tip: str = "",
        chosen: str = "",
    ) -> None:
        """``chosen``: the format as the table names it (the histogram's own name has its
        axis bound: "int8 sym ch1" for the table's "int8 sym ch"; the grid line says which
        group is drawn)."""
        item = plot.getPlotItem()
        hist = self.histograms[plot]
        fg = self.palette().color(QPalette.ColorRole.Text)
        # No distribution (a Gather has no activation input): its title says why; axes of
        # an empty 0..1 count plot would read as a measured nothing.
        for axis in ("left", "bottom"):
            item.showAxis(axis, dist is not None)
        if dist is None:
            hist.clear()
            self.titles[plot].set([(title, 9)], fg, tip)
            return
        if dist.fmt is None:
            self.titles[plot].set([(f"{title} (float)", 9)], fg, tip)
        else:
            # Second line: which group's grid is drawn (per-channel formats have one each).
            name = chosen if _same_format(chosen, dist.fmt) else dist.fmt
            lines = [(f"{title} — {name}", 9), (f"grid shown: {dist.group}", 8)]
            self.titles[plot].set(lines, fg, tip)
        hist.show(dist)

    def _fill_sandbox(self, detail: LayerDetail) -> None:
        """One row per format in display order; a format still being computed shows "…"."""
        computed = {row.format: row for row in detail.schemes}
        order = detail.formats or tuple(computed)
        current = None if detail.choice.weight is None else detail.choice.weight.name
        self.sandbox.setRowCount(len(order))
        bold = QFont(self.font())
        bold.setBold(True)
        waiting = self.palette().color(QPalette.ColorRole.PlaceholderText)
        with sized_once(self.sandbox):
            for i, name in enumerate(order):
                row = computed.get(name)
                if row is None:
                    cells: tuple[str, ...] = (name, "…", "…", "…", "…")
                    tip = f"{name}: computing…\n\n" + format_tooltip(name)
                else:
                    cells = (
                        row.format,
                        fmt_db(row.error.sqnr_db),
                        fmt_float(row.error.mse, 3),
                        fmt_bytes(row.bytes_after),
                        fmt_ratio(row.ratio),
                    )
                    tip = (
                        f"{row.format}: SQNR {fmt_db(row.error.sqnr_db)}, MSE {row.error.mse:.3g}, "
                        f"cosine {row.error.cosine:.6f}, max |error| {row.error.max_abs:.3g}\n"
                        "double-click to use it for this layer's weights\n\n"
                        + format_tooltip(row.format)
                    )
                for j, text in enumerate(cells):
                    it = QTableWidgetItem(text)
                    it.setToolTip(tip)
                    if j:
                        it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    if row is None:
                        it.setForeground(waiting)
                    elif j == 1:
                        colors.paint_error(it, row.error.sqnr_db)
                    if name == current:
                        it.setFont(bold)
                    self.sandbox.setItem(i, j, it)

    def _on_pick(self, row: int, _col: int) -> None:
        item = self.sandbox.item(row, 0)
        if self.detail is None or item is None:
            return
        if any(s.format == item.text() for s in self.detail.schemes):  # not while "…"
            self.formatPicked.emit(self.detail.layer, item.text())

    # -- palette ----------------------------------------------------------------------------------
    def _restyle(self) -> None:
        pal = self.palette()
        fg = pal.color(QPalette.ColorRole.Text)
        for plot in (self.weight_plot, self.act_plot):
            plot.setBackground(pal.color(QPalette.ColorRole.Base))
            for axis in ("left", "bottom"):
                ax = plot.getPlotItem().getAxis(axis)
                ax.setPen(pg.mkPen(fg))
                ax.setTextPen(pg.mkPen(fg))

    def _room_for_codes(self) -> None:
        """With the Codes tab shown, its table gets CODES_ROWS rows of height from the
        histograms, down to their minimum, then from the input activation's (hidden while
        the tab shows weight codes): at 1280x720 the plots' share left it 2-3 rows. Run by
        a zero timer, once the tab's page is laid out at its new height."""
        codes = self.sandboxes.currentWidget() is self.codes
        if not codes:
            self.act_plot.setVisible(True)
        if not codes or not self.isVisible():
            return
        table = self.codes.table
        need = CODES_ROWS * table.verticalHeader().defaultSectionSize() - table.viewport().height()
        sizes = self.splitter.sizes()
        if len(sizes) != 3:
            return
        handle = self.splitter.handleWidth()
        if not self.act_plot.isVisible():
            lent = 2 * self.act_plot.minimumHeight()
            if -need > lent + handle:  # the pane grew: room for it again
                self.act_plot.setVisible(True)
                self.splitter.setSizes([sizes[0], lent, sizes[2] - lent - handle])
            sizes[1] = 0
        if need <= 0:
            return
        plots = (self.weight_plot, self.act_plot)
        spare = [max(0, h - p.minimumHeight()) for h, p in zip(sizes, plots, strict=False)]
        if sum(spare) < need and self.act_plot.isVisible():
            self.act_plot.setVisible(False)  # its height goes to the tab area
            self.splitter.setSizes([sizes[0], 0, sizes[2] + sizes[1] + handle])
            self._codes_timer.start()  # and the rest from the weights' plot, once laid out
            return
        take = min(need, sum(spare))
        first = take * spare[0] // max(1, sum(spare))
        self.splitter.setSizes([sizes[0] - first, sizes[1] - (take - first), sizes[2] + take])

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._codes_timer.start()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()
            self._drawn.clear()
            self.show_detail(self.detail)


def _same_format(chosen: str, drawn: str) -> bool:
    """Whether the table's ``chosen`` name ("int8 sym ch", "uint8 asym (dynamic)") is the
    format drawn as ``drawn`` ("int8 sym ch0"): equal but for the axis bound to the layer."""
    name, _dynamic = split_dynamic(chosen)
    try:
        a, b = parse_format(name), parse_format(drawn)
    except FormatError:
        return False
    return a == b or (a.axis is None and b.axis is not None and a.with_axis(b.axis) == b)
