"""The graph dock: a toolbar (colour, zoom, fit, zoom to selection), the find box, the
colour key, the graph with its minimap, and the focused node's properties below."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bitlens.gui.document import Document
from bitlens.gui.error_kind import ErrorKindBox
from bitlens.gui.graph_find_box import GraphFindBox
from bitlens.gui.graph_legend import GraphLegend
from bitlens.gui.graph_minimap import GraphMinimap
from bitlens.gui.graph_properties import GraphProperties
from bitlens.gui.graph_view import GraphView


class GraphPanel(QWidget):
    def __init__(self, document: Document, parent: QWidget | None = None):
        super().__init__(parent)
        self.view = GraphView(document, self)
        self.legend = GraphLegend(self)
        self.find_box = GraphFindBox(document, self.view, self)
        self.minimap = GraphMinimap(self.view, self)
        self.properties = GraphProperties(document, self.view, self)
        self.metric_box = ErrorKindBox(document.error_kind, self)
        self.metric_box.setObjectName("graphMetric")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(QLabel("Colour:", self))
        bar.addWidget(self.metric_box)
        bar.addStretch(1)
        self.buttons: dict[str, QToolButton] = {}
        for key, text, tip, slot in (
            ("out", "−", "Zoom out (-)", lambda: self.view.zoom(0.8)),
            ("in", "+", "Zoom in (+)", lambda: self.view.zoom(1.25)),
            ("fit", "Fit", "Fit the whole graph (F, or double-click the background)",
             self.view.fit),
            ("selection", "Sel", "Zoom to the selected layers (Z)", self.view.zoom_to_selection),
        ):  # fmt: skip
            b = QToolButton(self)
            b.setText(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _c=False, slot=slot: slot())
            self.buttons[key] = b
            if key != "selection":  # that one sits in the find row: the pane stays narrow
                bar.addWidget(b)
        self.map_button = QToolButton(self)
        self.map_button.setText("Map")
        self.map_button.setCheckable(True)
        self.map_button.setChecked(True)
        self.map_button.setToolTip("Show the overview of the whole graph beside it")
        self.map_button.toggled.connect(self.minimap.setVisible)
        self._doc = document
        document.evaluationChanged.connect(self._update_legend)
        document.modelChanged.connect(self._update_legend)
        document.error_kind.changed.connect(self._update_legend)
        find_row = QHBoxLayout()
        find_row.setContentsMargins(0, 0, 0, 0)
        find_row.addWidget(self.find_box, 1)
        find_row.addWidget(self.buttons["selection"])
        key_row = QHBoxLayout()  # the colour key, and the minimap's switch where there is room
        key_row.setContentsMargins(0, 0, 0, 0)
        key_row.addWidget(self.legend, 1)
        key_row.addWidget(self.map_button)
        graph = QWidget(self)
        row = QHBoxLayout(graph)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(self.view, 1)
        row.addWidget(self.minimap)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.addWidget(graph)
        self.splitter.addWidget(self.properties)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setCollapsible(0, False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        layout.addLayout(find_row)
        layout.addLayout(key_row)
        layout.addWidget(self.splitter, 1)

        # Ctrl+F (the platform's Find) while the graph pane has focus: into the find box
        find = QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self)
        find.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        find.activated.connect(self.focus_find)

    def focus_find(self) -> None:
        self.find_box.edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.find_box.edit.selectAll()

    def _update_legend(self) -> None:
        self.legend.set_scale(self._doc.error_kind.scale(self._doc.evaluation))
