"""The graph's find box: a node by name, op type or format; Enter walks the matches.

Matching is :func:`bitlens.core.graph_find.find` (every word must occur in the
node's name, op type or planned formats). The first match is shown as soon
as the text changes; Enter (or the ↓ button) moves to the next, Shift+Enter
(or ↑) to the previous, wrapping around. Each shown match is focused,
selected when it is a layer, and centred in the view.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

from bitlens.core.graph_find import Findable, find, findables
from bitlens.gui.document import Document
from bitlens.gui.graph_view import GraphView


class _FindEdit(QLineEdit):
    def __init__(self, box: GraphFindBox):
        super().__init__(box)
        self._box = box

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            shift = event.modifiers() & Qt.KeyboardModifier.ShiftModifier
            self._box.step(-1 if shift else 1)
            event.accept()
            return
        if event.key() == Qt.Key.Key_Escape and self.text():
            self.clear()
            event.accept()
            return
        super().keyPressEvent(event)


class GraphFindBox(QWidget):
    def __init__(self, document: Document, view: GraphView, parent: QWidget | None = None):
        super().__init__(parent)
        self._doc = document
        self.view = view
        self.matches: list[str] = []
        self.index = -1
        self._items: list[Findable] | None = None  # built on first use, per model and plan
        self.edit = _FindEdit(self)
        self.edit.setObjectName("graphFind")
        self.edit.setPlaceholderText("Find: name, op, format")
        self.edit.setClearButtonEnabled(True)
        self.edit.setToolTip(
            "Find nodes by name, op type (Conv, MatMul) or planned format (int4, fp16, float).\n"
            "Every word must match. Enter: next match, Shift+Enter: previous.\n"
            "Ctrl+F in the graph pane comes here."
        )
        self.count = QLabel(self)
        self.count.setObjectName("graphFindCount")
        self.count.setMinimumWidth(self.fontMetrics().horizontalAdvance("888/888"))
        self.count.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        prev, nxt = QToolButton(self), QToolButton(self)
        prev.setText("↑")
        prev.setToolTip("Previous match (Shift+Enter)")
        nxt.setText("↓")
        nxt.setToolTip("Next match (Enter)")
        prev.clicked.connect(lambda: self.step(-1))
        nxt.clicked.connect(lambda: self.step(1))
        self.prev_button, self.next_button = prev, nxt
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(2)
        row.addWidget(self.edit, 1)
        row.addWidget(self.count)
        row.addWidget(prev)
        row.addWidget(nxt)
        self.edit.textChanged.connect(self._on_text)
        document.modelChanged.connect(self._forget)
        document.planChanged.connect(self._forget)
        view.rebuilt.connect(self._forget)
        self._show_count()

    def _forget(self) -> None:
        self._items = None
        if self.edit.text():
            self.matches = find(self._findables(), self.edit.text())
            self.index = min(self.index, len(self.matches) - 1)
            self._show_count()

    def _findables(self) -> list[Findable]:
        if self._items is None:
            info = self._doc.info
            self._items = (
                [] if info is None else findables(info, self._doc.plan, self.view.node_names)
            )
        return self._items

    def _on_text(self, text: str) -> None:
        self.matches = find(self._findables(), text)
        self.index = -1
        if self.matches:
            self.step(1)
        else:
            self._show_count()

    def step(self, by: int) -> None:
        """Show the next (``by`` = 1) or previous (-1) match, wrapping around."""
        if not self.matches:
            self._show_count()
            return
        self.index = (self.index + by) % len(self.matches)
        self.view.show_node(self.matches[self.index])
        self._show_count()

    def _show_count(self) -> None:
        text = self.edit.text().strip()
        self.count.setToolTip("")
        if not text:
            self.count.setText("")
            self.edit.setStyleSheet("")
        elif not self.matches:
            self.count.setText("none")
            self.edit.setStyleSheet("QLineEdit { border: 1px solid #c0392b; }")
        else:
            self.count.setText(f"{self.index + 1}/{len(self.matches)}")
            self.count.setToolTip(self.matches[self.index])  # the full name of the match shown
            self.edit.setStyleSheet("")
        for b in (self.prev_button, self.next_button):
            b.setEnabled(len(self.matches) > 1)
