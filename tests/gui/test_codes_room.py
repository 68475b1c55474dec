"""At 1280x720 the Codes tab's table had 2-3 rows under the two histograms: shown, it
takes height from them (the input activation's hidden while it is), and gives it back
(issue 15)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QApplication

from bitlens.gui.layer_detail import CODES_ROWS
from tests.gui.conftest import open_model


def _rows(detail) -> float:
    table = detail.codes.table
    return table.viewport().height() / table.verticalHeader().defaultSectionSize()


def test_codes_table_gets_rows_at_1280(qtbot, window, cnn_path: Path) -> None:
    window.resize(1280, 720)
    open_model(qtbot, window, cnn_path)
    window.document.selection.set(["conv2"])
    detail = window.detail
    qtbot.waitUntil(lambda: detail.detail is not None and detail.detail.layer == "conv2",
                    timeout=20_000)  # fmt: skip
    QApplication.processEvents()
    detail.sandboxes.setCurrentWidget(detail.codes)
    QApplication.processEvents()
    assert _rows(detail) >= CODES_ROWS
    assert detail.weight_plot.isVisible()  # the weights' histogram stays

    detail.sandboxes.setCurrentWidget(detail.sandbox)
    QApplication.processEvents()
    assert detail.act_plot.isVisible()

    window.resize(1920, 1080)  # tall enough for both histograms and the rows
    detail.sandboxes.setCurrentWidget(detail.codes)
    QApplication.processEvents()
    assert _rows(detail) >= CODES_ROWS and detail.act_plot.isVisible()
