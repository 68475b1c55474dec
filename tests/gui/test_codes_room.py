"""At 1280x720 (with the sweep results shown) the Codes tab's table had 2-3 rows under the two histograms: shown, it
takes height from them (the input activation's hidden while it is), and gives it back
(issue 15)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication

from bitlens.gui.layer_detail import CODES_ROWS
from tests.gui.conftest import WAIT_MS, open_model


def _rows(detail) -> float:
    table = detail.codes.table
    return table.viewport().height() / table.verticalHeader().defaultSectionSize()


def test_codes_table_gets_rows_at_1280(qtbot, window, cnn_path: Path) -> None:
    window.resize(1280, 720)
    open_model(qtbot, window, cnn_path)
    # the pane as short as at 1280x720 with the sweep results under it (about 330 px)
    dock = window.docks["detail"]
    dock.setFloating(True)
    dock.resize(330, 330)
    window.document.selection.set(["conv2"])
    detail = window.detail
    qtbot.waitUntil(lambda: detail.detail is not None and detail.detail.layer == "conv2",
                    timeout=WAIT_MS)  # fmt: skip
    QApplication.processEvents()
    detail.sandboxes.setCurrentWidget(detail.codes)
    assert detail.height() <= 340  # short: the case this is about
    # the rows, or all the height the histograms can give: the input activation's hidden,
    # the weights' down to its minimum (it stays)
    wp = detail.weight_plot
    qtbot.waitUntil(lambda: _rows(detail) >= CODES_ROWS or (
        not detail.act_plot.isVisible() and wp.height() <= wp.minimumHeight()
    ), timeout=WAIT_MS)  # fmt: skip
    assert wp.isVisible()

    detail.sandboxes.setCurrentWidget(detail.sandbox)
    qtbot.waitUntil(detail.act_plot.isVisible, timeout=WAIT_MS)

    dock.resize(330, 700)  # tall enough for both histograms and the rows
    detail.sandboxes.setCurrentWidget(detail.codes)
    qtbot.waitUntil(lambda: _rows(detail) >= CODES_ROWS and detail.act_plot.isVisible(),
                    timeout=WAIT_MS)  # fmt: skip
