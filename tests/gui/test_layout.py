"""The window on a laptop screen: it fits 1280x720, every pane can be resized, and a
layout that once squeezed a pane to a sliver can be undone (or is undone on restore)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QTabBar

from bitlens.gui.main_window import MainWindow
from bitlens.gui.window_layout import MIN_SIDE_PANE
from tests.gui.conftest import WAIT_MS, open_model


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
    qtbot.waitUntil(lambda: second.docks["detail"].width() >= MIN_SIDE_PANE, timeout=WAIT_MS)
    second.close()


def _tab_bars_over_docks(window) -> list[str]:
    """The dock-area tab bars lying over a visible pane (a stale bar left by a restore)."""
    docks = {k: d.geometry() for k, d in window.docks.items() if d.isVisible()}
    over = []
    for bar in window.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
        if bar.isVisible():
            over += [f"{key}: {bar.tabText(0)!r}" for key, g in docks.items()
                     if bar.geometry().intersects(g)]  # fmt: skip
    return over


def test_reset_layout_at_1920_shows_the_default_panes_only(qtbot, window, cnn_path) -> None:
    window.resize(1920, 1080)
    window.reset_layout()  # before the window settled at this size: a tab bar was left over
    open_model(qtbot, window, cnn_path)
    window.docks["graph"].setFloating(True)  # a layout the user made a mess of
    window.show_search()
    window.tabifyDockWidget(window.docks["graph"], window.docks["detail"])
    QApplication.processEvents()
    window.reset_layout()
    QApplication.processEvents()
    assert _tab_bars_over_docks(window) == []
    qtbot.wait(50)  # and after the layout settled
    assert _tab_bars_over_docks(window) == []
    assert not window.docks["search"].isVisible()  # only Tools ▸ Find Plan shows it
    tabbed = {k: sorted(o.objectName() for o in window.tabifiedDockWidgets(d))
              for k, d in window.docks.items() if d.isVisible()}  # fmt: skip
    assert tabbed["graph"] == []
    assert tabbed["detail"] == ["dock_outputs"]
    assert tabbed["plots"] == ["dock_deployed", "dock_sweep"]  # the As deployed pane's place
    for key, share in (("graph", 0.2), ("detail", 0.3)):
        dock = window.docks[key]
        assert dock.isVisible() and not dock.isFloating()
        assert abs(dock.width() - 1920 * share) < 60, (key, dock.width())
    table = window.table
    assert table.isVisible() and table.width() > 600
    plots = window.docks["plots"]
    assert plots.isVisible() and plots.width() > 1800 and plots.height() > 250
    window.show_search()  # Tools ▸ Find Plan still brings it up, as a tab by the plots
    QApplication.processEvents()
    assert window.docks["search"].isVisible()
