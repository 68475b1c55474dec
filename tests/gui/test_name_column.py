"""The Layer column shows whole short names when the table has room (1920x1080), and keeps
its 16 em cap where it has not (1280x720); a width the user dragged stays (issue 15)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QApplication, QStyle

from bitlens.gui.layer_table_model import Column
from tests.gui.conftest import open_model
from tests.gui.test_short_names import bert_path  # noqa: F401  (fixture)


def _shown(view, text: str) -> str:
    """What a Layer cell paints: its width less the style's text margins (QItemDelegate's
    focus-frame margin plus one, each side), elided in the middle."""
    margin = view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1
    width = view.columnWidth(Column.NAME) - 2 * margin
    return QFontMetricsF(view.font()).elidedText(text, Qt.TextElideMode.ElideMiddle, width)


def _resize(window, w: int, h: int) -> None:
    window.resize(w, h)
    QApplication.processEvents()


def test_layer_column_grows_with_room(qtbot, window, bert_path) -> None:  # noqa: F811
    _resize(window, 1280, 720)
    open_model(qtbot, window, bert_path)
    view, proxy = window.table.view, window.table.proxy
    em = window.table.fontMetrics().horizontalAdvance("M")
    displayed = [proxy.index(r, Column.NAME).data() for r in range(proxy.rowCount())]
    fm = QFontMetricsF(view.font())
    assert max(fm.horizontalAdvance(t) for t in displayed) > 16 * em  # else nothing to show
    assert view.columnWidth(Column.NAME) <= 16 * em  # 1280: as before
    assert any(_shown(view, t) != t for t in displayed)

    _resize(window, 1920, 1080)
    assert view.columnWidth(Column.NAME) > 16 * em
    assert [_shown(view, t) for t in displayed] == displayed  # every name whole

    _resize(window, 1280, 720)
    assert view.columnWidth(Column.NAME) <= 16 * em


def test_dragged_layer_column_stays(qtbot, window, bert_path) -> None:  # noqa: F811
    _resize(window, 1280, 720)
    open_model(qtbot, window, bert_path)
    view = window.table.view
    view.horizontalHeader().resizeSection(Column.NAME, 90)  # as a drag of the header does
    _resize(window, 1920, 1080)
    assert view.columnWidth(Column.NAME) == 90
