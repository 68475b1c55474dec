"""Model outputs under the plan against the float model.

A table of every output's error (SQNR, cosine, top-1 agreement and KL for
classifier-like outputs, accuracy when the data has labels), a scatter of
float against quantized values for the chosen output (points on the
diagonal are exact), and where evaluation samples first diverge.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.model.selected_outputs import picked_text
from bitlens.gui import colors
from bitlens.gui.document import Document
from bitlens.gui.series import divergence_counts
from bitlens.gui.text import NONE, fmt_db, fmt_float, fmt_percent

COLUMNS = ("Output", "SQNR", "cos", "top-1", "KL")
TIPS = (
    "Model output",
    "Signal-to-quantization-noise ratio against the float model",
    "Cosine similarity with the float model",
    "Fraction of samples whose top class matches the float model",
    "Mean KL divergence of the softmax from the float model's",
)


class OutputsView(QWidget):
    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setObjectName("outputsTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for i, tip in enumerate(TIPS):
            self.table.horizontalHeaderItem(i).setToolTip(tip)
        self.table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the output's name
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        self.summary = QLabel(self)
        self.summary.setObjectName("outputsSummary")
        self.summary.setWordWrap(True)
        self.choice = QComboBox(self)
        self.choice.setObjectName("outputChoice")
        self.choice.currentIndexChanged.connect(self._draw_scatter)
        self._picked = False  # the user chose the scattered output (else: the first changed)
        self.choice.activated.connect(self._on_picked)
        self.plot = pg.PlotWidget(self)
        self.plot.setMenuEnabled(False)
        self.plot.setAspectLocked(False)
        # one scale on both axes: pyqtgraph's SI prefix read open_nsfw's scores 0.05..0.95 as
        # "float model (x0.001)" 50..950 against a plain 0..1 on the quantized side
        for side, label in (("bottom", "float model"), ("left", "quantized plan")):
            self.plot.getAxis(side).enableAutoSIPrefix(False)
            self.plot.setLabel(side, label)
        self.scatter = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(colors.AFTER))
        self.diagonal = pg.PlotDataItem(pen=pg.mkPen(colors.HIGHLIGHT, width=1))
        self.plot.addItem(self.diagonal)
        self.plot.addItem(self.scatter)

        row = QHBoxLayout()
        row.addWidget(QLabel("Scatter of", self))
        row.addWidget(self.choice, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addWidget(self.summary)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)

        document.modelChanged.connect(self._on_model_changed)
        document.evaluationChanged.connect(self._fill_table)
        document.outputsChanged.connect(self._draw_scatter)
        self._restyle()
        self._on_model_changed()

    def _on_picked(self, _index: int) -> None:
        self._picked = True

    def _on_model_changed(self) -> None:
        info = self._doc.info
        self._picked = False
        self.choice.blockSignals(True)
        self.choice.clear()
        if info is not None:
            self.choice.addItems([t.name for t in info.outputs])
        self.choice.blockSignals(False)
        self._fill_table()
        self._draw_scatter()

    def _fill_table(self) -> None:
        ev = self._doc.evaluation
        outputs = [] if ev is None else list(ev.outputs.values())
        self.table.setRowCount(len(outputs))
        for i, out in enumerate(outputs):
            cells = (
                out.name if out.measured_on is None else f"{out.name} (before its pick)",
                fmt_db(out.error.sqnr_db),
                f"{out.error.cosine:.5f}",
                fmt_percent(out.top1_agreement),
                NONE if out.kl is None else fmt_float(out.kl, 3),
            )
            for j, text in enumerate(cells):
                it = QTableWidgetItem(text)
                if j == 1:
                    colors.paint_error(it, out.error.sqnr_db)
                if out.measured_on:
                    it.setToolTip(picked_text(out.measured_on))
                elif out.shape_differs:
                    it.setToolTip(
                        f"The shape of this output depends on the data and differs from "
                        f"float's on {out.shape_differs}: compared zero-padded"
                    )
                self.table.setItem(i, j, it)
        # top-1 and KL judge class scores only: where no output has them their columns go,
        # so the output's name keeps the room (the dock is ~200 px wide at 1280x720, where
        # the name was elided to "...")
        for j in (3, 4):
            empty = all(self.table.item(i, j).text() == NONE for i in range(len(outputs)))
            self.table.setColumnHidden(j, empty)
        self.summary.setText(self._summary_text())
        self._fit_height()
        self._scatter_first_changed(outputs)

    def _scatter_first_changed(self, outputs: list) -> None:
        """Scatter the first output the plan changes until the user picks one: MiniLM's first
        output is its token ids passed through, always exact, and the scatter showed a line
        of them (as the status bar's output figure, status_panel.py)."""
        if self._picked:
            return
        changed = [o.name for o in outputs if o.error.sqnr_db != float("inf")]
        index = self.choice.findText(changed[0]) if changed else -1
        if index >= 0 and index != self.choice.currentIndex():
            self.choice.setCurrentIndex(index)  # draws it (currentIndexChanged)

    def _fit_height(self) -> None:
        """As tall as its rows (up to six): most models have one output."""
        rows = min(max(self.table.rowCount(), 1), 6)
        h = self.table.horizontalHeader().height() + 2 * self.table.frameWidth()
        h += rows * self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(h)

    def _summary_text(self) -> str:
        ev = self._doc.evaluation
        if ev is None:
            return "No evaluation yet."
        lines = []
        if "accuracy" in ev.task_metric:
            acc_f = ev.task_metric.get("accuracy_float")
            lines.append(
                f"Accuracy on the labels: {fmt_percent(ev.task_metric['accuracy'])}"
                + ("" if acc_f is None else f" (float model {fmt_percent(acc_f)})")
            )
        ranked, clean, total = divergence_counts(ev)
        if total:
            if not ranked:
                lines.append(f"No evaluation sample diverges (all {total} stay above 20 dB).")
            else:
                top = ", ".join(f"{name} ({n})" for name, n in ranked[:3])
                lines.append(
                    f"First layer below 20 dB, per sample: {top}; "
                    f"{clean} of {total} samples never diverge."
                )
        return "\n".join(lines)

    def _draw_scatter(self) -> None:
        name = self.choice.currentText()
        pairs = next((p for p in self._doc.outputs if p.name == name), None)
        if pairs is None or pairs.reference.size == 0:
            self.scatter.setData([], [])
            self.diagonal.setData([], [])
            self.plot.setTitle("")
            return
        self.scatter.setData(pairs.reference, pairs.quantized)
        lo = float(min(pairs.reference.min(), pairs.quantized.min()))
        hi = float(max(pairs.reference.max(), pairs.quantized.max()))
        self.diagonal.setData([lo, hi], [lo, hi])
        self.plot.setTitle(
            f"{pairs.reference.size} values of {name}", color=self._fg(), size="9pt"
        )

    def _fg(self):
        return self.palette().color(QPalette.ColorRole.Text)

    def _restyle(self) -> None:
        pal = self.palette()
        self.plot.setBackground(pal.color(QPalette.ColorRole.Base))
        for axis in ("left", "bottom"):
            ax = self.plot.getPlotItem().getAxis(axis)
            ax.setPen(pg.mkPen(self._fg()))
            ax.setTextPen(pg.mkPen(self._fg()))
        self._draw_scatter()  # the title's colour is fixed when it is set: set it again

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()
