"""Fixtures for window tests: isolated settings, small models on disk, a window that
never blocks on a modal dialog, and screenshots into ``screenshots/``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from PySide6.QtCore import QSettings, QThreadPool
from PySide6.QtWidgets import QMessageBox, QWidget

from bitlens.gui.main_window import MainWindow
from bitlens.gui.settings import AppSettings
from tests.core.engine_models import mlp_with_fragile_layer, small_cnn

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"
OPEN_TIMEOUT_MS = 30_000




@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "bitlens.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def cnn_path(tmp_path: Path) -> Path:
    p = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), p)
    return p


@pytest.fixture
def mlp_path(tmp_path: Path) -> Path:
    p = tmp_path / "mlp.onnx"
    onnx.save(mlp_with_fragile_layer(), p)
    return p


@pytest.fixture
def no_modal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Answer "Discard" to every unsaved-changes question; records the questions asked."""
    asked: list[str] = []

    def question(_parent, _title, text, *_a, **_k):
        asked.append(text)
        return QMessageBox.StandardButton.Discard

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    return asked


@pytest.fixture
def window(qtbot, settings: AppSettings, no_modal: list[str]) -> Iterator[MainWindow]:
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.close()
    assert QThreadPool.globalInstance().waitForDone(10_000)


def wait_idle(qtbot, w: MainWindow, timeout: int = OPEN_TIMEOUT_MS) -> None:
    """Until the window has no job left and its evaluation matches the plan."""
    doc = w.document

    def idle() -> bool:
        return not w.runner.busy and doc.is_open and doc.evaluation_current

    qtbot.waitUntil(idle, timeout=timeout)


def open_model(qtbot, w: MainWindow, path: Path) -> None:
    w.open_model(path)
    wait_idle(qtbot, w)


def screenshot(widget: QWidget, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    p = SHOTS / f"{name}.png"
    assert widget.grab().save(str(p)), f"could not save {p}"
    return p
