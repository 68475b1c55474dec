"""The predicted size of the export file, for the status bar and the export dialog.

The table's and the status bar's "Weights X → Y" count weight data only; the file also
holds scales, zero points, codebooks, the nodes that rebuild weights and the graph.
:func:`bitlens.core.export.accounting.predict` builds the export in memory to count
everything, which takes seconds on a real model, so it runs in the worker only when asked
(a click here, or opening the export dialog) and the controller keeps it per plan.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QWidget

from bitlens.core.export.accounting import ExportSize
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.report import FidelityReport
from bitlens.core.plan import Plan
from bitlens.gui.controller import Controller
from bitlens.gui.elided_label import ElidedLabel
from bitlens.gui.text import fmt_bytes

ASK = "Export file: ? (click to predict)"
TIP = (
    "The size of the exported .onnx file, everything included (codes, scales, zero points, "
    "codebooks, extra nodes, graph), from building the export in memory. "
    "Click to predict it for the current plan."
)


class ExportSizeLabel(ElidedLabel):
    """Shows the current plan's predicted export file size; a click asks for it.

    Its figure stays whole, the rest gives way with "…" (whole in the tooltip): at 1280 px
    "Export file: 16.6 MiB predicted (from 65.7 MiB, opset 17)" or the exported file's name
    beside a running job's words cut the status bar's other figures."""

    def __init__(
        self,
        controller: Controller,
        parent: QWidget | None = None,
        options: Callable[[], ExportOptions | None] = lambda: None,
    ):
        super().__init__("", parent)
        self.options = options  # the export options in force (they change the file)
        self.setObjectName("exportSize")
        self.controller = controller
        self.predicted: ExportSize | None = None  # the prediction shown, for the current plan
        # the last export: (plan, options, what the label says of its file)
        self._exported: tuple[Plan, ExportOptions | None, str] | None = None
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip(TIP)
        controller.sizePredicted.connect(self._on_predicted)
        controller.document.planChanged.connect(self.refresh)
        controller.document.modelChanged.connect(self.refresh)
        controller.runner.finished.connect(self._on_job_finished)
        self.refresh()

    def refresh(self) -> None:
        """Show what is known for the current plan and export options (call it when the
        options change)."""
        doc = self.controller.document
        self.setVisible(doc.is_open)
        known = None if doc.plan is None else self.controller.sizes.get((doc.plan, self.options()))
        self.predicted = known
        self.setText(self._describe(known) if known is not None else self._written() or ASK)

    def show_exported(self, plan: Plan, report: FidelityReport) -> None:
        """An export of ``plan`` finished: its file's real size stands until the plan or the
        export options change (it read "?" after the export had told it)."""
        name = Path(report.export).name
        text = f"Export file: {fmt_bytes(report.file_bytes)} ({name})"
        self._exported = (plan, self.options(), text)
        self.refresh()

    def _written(self) -> str | None:
        """The last export's size when it was of the current plan and export options."""
        doc, done = self.controller.document, self._exported
        if done is None or doc.plan is None or done[0] != doc.plan or done[1] != self.options():
            return None
        return done[2]

    def setText(self, text: str) -> None:
        super().setText(text)
        self.set_kept(text.split(" (")[0].removesuffix(" predicted"))  # "Export file: 16.6 MiB"

    def _on_predicted(self, plan: Plan, size: ExportSize) -> None:
        if plan != self.controller.document.plan or (
            self.controller.sizes.get((plan, self.options())) is not size
        ):
            return  # predicted for a plan since edited, or under other export options
        self.predicted = size
        self.setText(self._describe(size))

    def _on_job_finished(self, job: object) -> None:
        if getattr(job, "key", None) == "size" and self.predicted is None:
            self.setText(self._written() or ASK)  # failed or cancelled: the message bar says why

    def predict(self) -> None:
        """Ask for the current plan's prediction (shown at once when already known)."""
        if self.predicted is None:
            self.setText("Export file: predicting…")
            if self.controller.predict_size(self.options()) is None and self.predicted is None:
                self.setText(ASK)  # nothing to predict yet (no model, or no data)

    @staticmethod
    def _describe(size: ExportSize) -> str:
        return (
            f"Export file: {fmt_bytes(size.file_bytes)} predicted "
            f"(from {fmt_bytes(size.source_bytes)}, opset {size.opset})"
        )

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.predict()
        super().mousePressEvent(event)
