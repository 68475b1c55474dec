"""The graph dock: the graph view under a small toolbar (colour metric, zoom, fit)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from bitlens.gui.document import Document
from bitlens.gui.error_kind import ErrorKindBox
from bitlens.gui.graph_legend import GraphLegend
from bitlens.gui.graph_view import GraphView


class GraphPanel(QWidget):
    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = GraphView(document, self)
        self.legend = GraphLegend(self)
        self.metric_box = ErrorKindBox(document.error_kind, self)
        self.metric_box.setObjectName("graphMetric")
        # The dock may be narrow on a laptop screen; the popup still shows whole names.
        self.metric_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.metric_box.setMinimumContentsLength(8)
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(QLabel("Colour:", self))
        bar.addWidget(self.metric_box, 1)
        for text, tip, slot in (
            ("−", "Zoom out (-)", lambda: self.view.zoom(0.8)),
            ("+", "Zoom in (+)", lambda: self.view.zoom(1.25)),
            ("Fit", "Fit the graph (F, or double-click the background)", self.view.fit),
        ):
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(slot)
            bar.addWidget(b)
        self._doc = document
        document.evaluationChanged.connect(self._update_legend)
        document.modelChanged.connect(self._update_legend)
        document.error_kind.changed.connect(self._update_legend)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addWidget(self.legend)
        layout.addWidget(self.view)

    def _update_legend(self) -> None:
        self.legend.set_scale(self._doc.error_kind.scale(self._doc.evaluation))
