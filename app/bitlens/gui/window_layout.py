"""Where the window's panes sit: the first size, the docks' shares, reset and restore.

A mixin of :class:`~bitlens.gui.main_window.MainWindow` (it reads the window's
``docks`` and ``settings``): the layout's rules live here, the wiring there.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QApplication, QDockWidget, QTabBar, QWidget

from bitlens.gui import layout_reset
from bitlens.gui.settings import STATE_VERSION

DEFAULT_SIZE = (1400, 880)  # shrunk to the screen's free area when that is smaller
MIN_SIDE_PANE = 220  # a restored side pane narrower than this gets this width back
# the side panes' first shares of the window's width (the graph left, the detail right)
SHARES = {Qt.DockWidgetArea.LeftDockWidgetArea: 0.2, Qt.DockWidgetArea.RightDockWidgetArea: 0.3}
JUMP = 1.2  # the window this much wider or narrower at once: the side panes follow


class LayoutMixin:
    def _fit_to_screen(self) -> None:
        """Open at a comfortable size that never exceeds the screen's free area (a laptop's
        1366x768 keeps its status bar on screen)."""
        screen = self.screen() or QApplication.primaryScreen()
        w, h = DEFAULT_SIZE
        if screen is not None:
            free = screen.availableGeometry()
            # the frame and title bar take some pixels the geometry does not count
            w, h = min(w, free.width() - 16), min(h, free.height() - 48)
        self.resize(max(w, 640), max(h, 480))

    def _size_docks(self) -> None:
        """Share the width and height between the panes in proportion to the window."""
        width, height = max(self.width(), 800), max(self.height(), 500)
        side = [self.docks["graph"], self.docks["detail"]]
        shares = [SHARES[self.dockWidgetArea(d)] for d in side]
        self.resizeDocks(side, [int(width * f) for f in shares], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["plots"]], [int(height * 0.33)], Qt.Orientation.Vertical)

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Qt gives all of a wider window to the central table: a window opened at 1280 and
        maximized to 1920 kept a 256 px graph pane (its properties cut to "44.7 Mi…1792 B)")
        next to a table with 130 px to spare. A jump in width (maximized, restored) scales
        the side panes with it, each at most its first share of the window: panes grown
        on every maximize, never shrunk on restore, would squeeze the table in the end."""
        super().resizeEvent(event)
        old, new = event.oldSize().width(), event.size().width()
        if getattr(self, "_shown", False) and old > 0 and max(new / old, old / new) >= JUMP:
            QTimer.singleShot(0, lambda: self._scale_side_docks(new / old))

    def _scale_side_docks(self, factor: float) -> None:
        areas: dict[Qt.DockWidgetArea, QDockWidget] = {}
        for d in self.docks.values():  # one per side, the tab in front: a tab behind it
            # (Outputs behind the layer detail) keeps the width it had when last in front
            area = self.dockWidgetArea(d)
            if not d.visibleRegion().isEmpty() and not d.isFloating() and area in SHARES:
                areas.setdefault(area, d)
        docks = list(areas.values())
        # narrower: Qt took the width from the table first, and from the panes too once the
        # table was down to its minimum; then their widths are already cut, not scaled
        central = self.centralWidget()
        cut = factor < 1 and central.width() <= central.minimumSizeHint().width() + 2
        scale = 1.0 if cut else factor
        widths = [round(min(d.width() * scale, SHARES[a] * self.width())) for a, d in areas.items()]
        self.resizeDocks(docks, widths, Qt.Orientation.Horizontal)

    def reset_layout(self) -> None:
        """View ▸ Reset Layout: every pane back where and how big it first was."""
        layout_reset.reset_layout(self)

    def _unstick_docks(self) -> None:
        """A restored layout may have squeezed a side pane to a sliver (the window once
        shrank): give any visible, docked pane below a usable width its share back."""
        narrow = [
            d for d in self.docks.values()
            if d.isVisible() and not d.isFloating()
            and self.dockWidgetArea(d) in (Qt.DockWidgetArea.LeftDockWidgetArea,
                                           Qt.DockWidgetArea.RightDockWidgetArea)
            and d.width() < MIN_SIDE_PANE
        ]  # fmt: skip
        if narrow:
            self.resizeDocks(narrow, [MIN_SIDE_PANE] * len(narrow), Qt.Orientation.Horizontal)

    def _hide_stale_tab_bars(self) -> None:
        """Qt can leave a tab bar of the tabbed docks from the layout before the first
        resize visible on top of a pane (seen offscreen at 1920x1080, drawn over the
        plots' toolbar): the tab bars in use sit next to the docks, never over one.
        One such bar, of the bottom docks before "As deployed" joined them, sat below a
        1280x720 window, out of sight, and came over the graph's properties when the
        window grew to 1920x1080: a bar whose tabs another visible bar also holds (and
        more) is stale wherever it is."""
        docks = [d.geometry() for d in self.docks.values() if d.isVisible() and not d.isFloating()]
        bars = [
            b for b in self.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly)
            if b.isVisible()
        ]  # fmt: skip
        tabs = {b: {b.tabText(i) for i in range(b.count())} for b in bars}
        for bar in bars:
            over = any(bar.geometry().intersects(g) for g in docks)
            if over or any(tabs[bar] < tabs[other] for other in bars):
                bar.hide()

    def _dock(self, key: str, title: str, widget: QWidget, where: Qt.DockWidgetArea) -> None:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{key}")
        dock.setWidget(widget)
        self.addDockWidget(where, dock)
        self.docks[key] = dock

    def _restore_layout(self) -> None:
        geometry, state = self.settings.window_layout()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self._restored = self.restoreState(state, STATE_VERSION)
