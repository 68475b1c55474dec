"""``bitlens --selftest``: the window offscreen on the bundled sample, one evaluation, one export.

Run by the packaging build on the frozen bundle, so a bundle missing a Qt
plugin, ONNX Runtime, the samples or any module fails the build. Prints
one line per step and exits 0 only if every step worked.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from bitlens.core.plan import Plan

TIMEOUT_S = 180.0


def _wait(app: QApplication, done: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + TIMEOUT_S
    while not done():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()
        time.sleep(0.01)


def run() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from bitlens.gui.app import make_app
    from bitlens.gui.main_window import MainWindow
    from bitlens.gui.settings import AppSettings

    app = make_app()
    with tempfile.TemporaryDirectory(prefix="bitlens-selftest-") as tmp:
        settings = AppSettings(
            QSettings(str(Path(tmp) / "settings.ini"), QSettings.Format.IniFormat)
        )
        window = MainWindow(settings, device="auto")
        window.show()
        try:
            return _steps(app, window, Path(tmp))
        except Exception as exc:
            print(f"selftest: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            window.document.undo_stack.setClean()  # no unsaved-changes question on close
            window.close()


def _steps(app: QApplication, window, tmp: Path) -> int:
    doc = window.document
    window.open_default()
    _wait(
        app, lambda: doc.is_open and not window.runner.busy and doc.evaluation_current, "the sample"
    )
    session = doc.session
    print(
        f"selftest: opened {session.title}: {len(doc.info.layers)} layers, ORT {session.providers}"
    )
    doc.replace_plan(Plan.preset(doc.info, "W8A8"), "W8A8")
    _wait(app, lambda: not window.runner.busy and doc.evaluation_current, "the evaluation")
    ev = doc.evaluation
    if ev is None or "accuracy" not in ev.task_metric:
        raise RuntimeError("the W8A8 evaluation did not report an accuracy")
    print(
        f"selftest: W8A8 accuracy {ev.task_metric['accuracy']:.4f} "
        f"(float {ev.task_metric['accuracy_float']:.4f}), {ev.compression:.2f}x smaller"
    )
    reports: list = []
    window.controller.exported.connect(reports.append)
    failures: list = []
    window.controller.failed.connect(lambda what, exc: failures.append(f"{what}: {exc}"))
    window.controller.export_model(tmp / "selftest.onnx")
    _wait(app, lambda: bool(reports or failures) and not window.runner.busy, "the export")
    if failures:
        raise RuntimeError(failures[0])
    report = reports[0]
    if window.export_report is not None:
        window.export_report.close()
    print(f"selftest: export {'passed' if report.passed else 'FAILED'} its fidelity check")
    if not report.passed:
        for f in report.failures:
            print(f"selftest:   {f}", file=sys.stderr)
        return 1
    print("selftest: ok")
    return 0
