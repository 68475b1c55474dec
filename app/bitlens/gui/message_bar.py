"""A non-modal message strip above the views, for errors and notices.

It names the problem in one line; the exception's details (the traceback
for unexpected errors) open under "Details". The app stays usable: the bar
never blocks, and a newer message replaces the old one.
"""

from __future__ import annotations

import traceback

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from bitlens.core.errors import BitlensError

_LEVELS = {
    "error": QColor(250, 215, 215),
    "warning": QColor(252, 238, 200),
    "info": QColor(215, 232, 250),
}


class MessageBar(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setAutoFillBackground(True)
        self.level = "info"
        self.what = ""
        self.text = QLabel(self)
        self.text.setObjectName("messageText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QToolButton(self)
        self.details_button.setText("Details")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self._toggle_details)
        self.close_button = QPushButton("Dismiss", self)
        self.close_button.setObjectName("messageDismiss")
        self.close_button.clicked.connect(self.hide)
        self.details = QPlainTextEdit(self)
        self.details.setObjectName("messageDetails")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(180)
        self.details.setVisible(False)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.text, 1)
        row.addWidget(self.details_button)
        row.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addLayout(row)
        layout.addWidget(self.details)
        self.hide()

    def show_error(self, what: str, exc: BaseException) -> None:
        """A failed action: what was being done and why it failed."""
        if isinstance(exc, BitlensError | OSError):
            message = f"{what} failed: {exc}"
            # a user metric's traceback, when the error carries one
            details = getattr(exc, "details", "") or f"{type(exc).__name__}: {exc}"
        else:  # a bug: say so, and keep the traceback for the report
            message = f"{what} failed with an unexpected error: {type(exc).__name__}: {exc}"
            details = "".join(traceback.format_exception(exc))
        self.show_message(message, "error", details)
        self.what = what

    def show_message(self, message: str, level: str = "info", details: str = "") -> None:
        self.level = level
        self.what = ""  # the action that failed, for an error shown by show_error
        self.text.setText(message)
        self.details.setPlainText(details)
        self.details_button.setVisible(bool(details))
        self.details_button.setChecked(False)
        pal = self.palette()
        bg = _LEVELS.get(level, _LEVELS["info"])
        pal.setColor(QPalette.ColorRole.Window, bg)
        pal.setColor(QPalette.ColorRole.WindowText, QColor(20, 20, 20))
        self.setPalette(pal)
        self.text.setPalette(pal)
        self.show()

    def _toggle_details(self, on: bool) -> None:
        self.details.setVisible(on)
