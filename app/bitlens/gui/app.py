"""Starting the window: ``bitlens`` (the image sample) or ``bitlens MODEL.onnx``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

from bitlens import __version__
from bitlens.gui.main_window import MainWindow
from bitlens.gui.settings import AppSettings
from bitlens.gui.theme import apply_theme

QUIT_AFTER_ENV = "BITLENS_QUIT_AFTER"  # milliseconds; for smoke tests of the window


def make_app() -> QApplication:
    app = QApplication.instance()
    if isinstance(app, QApplication):
        return app
    QCoreApplication.setOrganizationName("Bitlens")
    QCoreApplication.setApplicationName("Bitlens")
    QCoreApplication.setApplicationVersion(__version__)
    # Fractional scale factors (150 %) render crisply instead of rounding to 1x or 2x.
    QGuiApplication.setHighDpiScaleFactorRoundingPolicy(
        Qt.HighDpiScaleFactorRoundingPolicy.PassThrough
    )
    return QApplication(sys.argv[:1])


def quit_after_ms(args: argparse.Namespace) -> int | None:
    value = getattr(args, "quit_after", None)
    if value is None:
        env = os.environ.get(QUIT_AFTER_ENV, "").strip()
        value = int(env) if env.isdigit() else None
    return value


def run(args: argparse.Namespace) -> int:
    """Open the window (on ``args.model`` when given) and run the event loop."""
    app = make_app()
    settings = AppSettings()
    apply_theme(app, settings.theme())
    window = MainWindow(settings, device=getattr(args, "device", None) or "auto")
    window.show()
    model = getattr(args, "model", None)
    if model:
        window.open_model(Path(model))
    else:
        window.open_default()
    ms = quit_after_ms(args)
    if ms is None:
        return int(app.exec())
    QTimer.singleShot(ms, lambda: _close_when_idle(window))
    code = int(app.exec())
    # The smoke-test mode reports what the window showed, and fails on a shown error.
    print(f"bitlens: {window.windowTitle()}", file=sys.stderr)
    if window.message_bar.isVisibleTo(window) and window.message_bar.level == "error":
        print(f"bitlens: error shown: {window.message_bar.text.text()}", file=sys.stderr)
        return 1
    return code


def _close_when_idle(window: MainWindow) -> None:
    """Close once the window has finished its work (opening a model takes a moment)."""
    if window.runner.busy:
        QTimer.singleShot(100, lambda: _close_when_idle(window))
    else:
        window.close()
