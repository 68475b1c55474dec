"""The window on a laptop screen: it fits 1280x720, every pane can be resized, and a
layout that once squeezed a pane to a sliver can be undone (or is undone on restore)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from bitlens.gui.main_window import MainWindow
from bitlens.gui.window_layout import MIN_SIDE_PANE
from tests.gui.conftest import open_model


def test_window_fits_a_laptop_screen(qtbot, window, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)
    hint = window.minimumSizeHint()
    assert hint.width() <= 1000 and hint.height() <= 600, hint
    window.resize(1280, 720)
    QApplication.processEvents()
    assert window.width() == 1280 and window.height() == 720
    assert window.statusBar().isVisible()
    assert window.statusBar().geometry().bottom() < 720
    for key in ("graph", "detail", "plots"):
        dock = window.docks[key]
        assert dock.features() & dock.DockWidgetFeature.DockWidgetMovable
        assert dock.width() > 100, key


def test_reset_layout_brings_a_squeezed_pane_back(qtbot, window, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)
    window.resize(1280, 720)
    detail = window.docks["detail"]
    window.resizeDocks([detail], [80], Qt.Orientation.Horizontal)
    window.docks["graph"].hide()
    QApplication.processEvents()
    assert detail.width() < MIN_SIDE_PANE
    window.reset_layout()
    QApplication.processEvents()
    assert window.docks["graph"].isVisible()
    assert detail.width() >= MIN_SIDE_PANE
    assert window.act_reset_layout.text() == "Reset &Layout"


def test_a_saved_sliver_is_not_restored(qtbot, settings, no_modal) -> None:
    first = MainWindow(settings, device="cpu")
    qtbot.addWidget(first)
    first.resize(1280, 720)
    first.show()
    qtbot.waitExposed(first)
    QApplication.processEvents()  # the check on first show has run
    first.resizeDocks([first.docks["detail"]], [80], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    assert first.docks["detail"].width() < MIN_SIDE_PANE
    first.close()  # saves the squeezed layout

    second = MainWindow(settings, device="cpu")
    qtbot.addWidget(second)
    second.resize(1280, 720)
    second.show()
    qtbot.waitExposed(second)
    qtbot.waitUntil(lambda: second.docks["detail"].width() >= MIN_SIDE_PANE, timeout=2000)
    second.close()
