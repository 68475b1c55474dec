"""View ▸ Reset Layout: every pane back where and how big it first was.

Restoring the window's first state alone is not enough. The panes a user hid come
back, but so would one that is hidden until asked for (Tools ▸ Find Plan); and
Qt's dock layout can leave the tab bar of a tab group that no longer exists
visible where it was, drawn over a pane, until the next relayout.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QMainWindow

from bitlens.gui.settings import STATE_VERSION

HIDDEN_UNTIL_ASKED = frozenset({"search"})  # Tools ▸ Find Plan shows it


def reset_layout(window: QMainWindow) -> None:
    """``window`` is the main window: its ``docks``, ``_default_state`` (saved before the
    first show), ``_size_docks`` and ``_hide_stale_tab_bars``."""
    for dock in window.docks.values():
        dock.setFloating(False)
    window.restoreState(window._default_state, STATE_VERSION)
    for key, dock in window.docks.items():
        dock.setVisible(key not in HIDDEN_UNTIL_ASKED)
    window.docks["detail"].raise_()
    window.docks["plots"].raise_()
    window._size_docks()
    window._hide_stale_tab_bars()
    # the layout settles on the next turn of the event loop: look again then
    QTimer.singleShot(0, window._hide_stale_tab_bars)
