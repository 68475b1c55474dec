"""A one-line label that fits any width: cut with "…" where too narrow, whole in its tooltip.

A plain QLabel asks for its whole text's width; in a status bar or a toolbar that
forces the window wider than a laptop screen, or the text is cut mid-letter with no
sign that something is missing. This one asks for little, shows as much as fits
and, when cut, puts the whole text at the top of its tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

MIN_CHARS = 6  # the least it shrinks to, in average character widths


class ElidedLabel(QLabel):
    def __init__(self, text: str = "", parent: QWidget | None = None, *, shrink: bool = True):
        """``shrink=False``: never cut (the text is short and must stay whole); the label
        still paints and reports like the others."""
        super().__init__(text, parent)
        self._tip = ""
        self._shrink = shrink
        self._kept = ""  # the start it never cuts (set_kept)
        self._short = ""  # what it shows instead of a cut text, when that fits (set_short)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setTextFormat(Qt.TextFormat.PlainText)

    def setToolTip(self, tip: str) -> None:
        self._tip = tip
        self._update_tip()

    def setText(self, text: str) -> None:
        super().setText(text)
        self._update_tip()

    def set_kept(self, start: str) -> None:
        """Never shrink below ``start`` (the text's beginning) and an ellipsis: the status
        bar's output line lost its figure ("output …") while a job's words took the room."""
        if start != self._kept:
            self._kept = start
            self.updateGeometry()

    def set_short(self, short: str) -> None:
        """Show ``short`` (whole in its tooltip) where the text does not fit: "⚠ Random
        inputs" says more than "⚠ Random inputs: errors on noise can misl…"."""
        if short != self._short:
            self._short = short
            self.update()

    def short_width(self) -> int:
        """The width its short form needs (0 without one)."""
        return self._width(self._short) if self._short else 0

    def full_width(self) -> int:
        return self._width(self.text())

    def _width(self, text: str) -> int:
        return self.fontMetrics().horizontalAdvance(text) + 2 * self.margin() + 2

    @property
    def elided(self) -> bool:
        """Whether the text is cut at the current width."""
        return self.fontMetrics().horizontalAdvance(self.text()) > self.contentsRect().width()

    def shown_text(self) -> str:
        fm, room, text = self.fontMetrics(), self.contentsRect().width(), self.text()
        if self._short and fm.horizontalAdvance(text) > room:
            text = self._short
        return fm.elidedText(text, Qt.TextElideMode.ElideRight, room)

    def minimumSizeHint(self) -> QSize:
        fm = self.fontMetrics()
        full = self.full_width()
        least = max(fm.averageCharWidth() * MIN_CHARS, fm.horizontalAdvance(self._kept + "…") + 2)
        width = min(least, full) if self._shrink else full
        return QSize(width, super().minimumSizeHint().height())

    def _update_tip(self) -> None:
        text, tip = self.text(), self._tip
        if self.elided and text and text not in tip:
            tip = f"{text}\n\n{tip}" if tip else text
        super().setToolTip(tip)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._update_tip()

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        self.style().drawItemText(
            p, self.contentsRect(), int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
            self.palette(), self.isEnabled(), self.shown_text(), self.foregroundRole(),
        )  # fmt: skip
        p.end()
