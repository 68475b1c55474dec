"""Fixtures for window tests: isolated settings, small models on disk, a window that
never blocks on a modal dialog, and screenshots into ``screenshots/``."""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path

import onnx
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QObject, QSettings, Qt, QThreadPool
from PySide6.QtWidgets import QMessageBox, QWidget

from bitlens.core.results import Progress
from bitlens.gui.layer_table_model import Column
from bitlens.gui.main_window import MainWindow
from bitlens.gui.settings import AppSettings
from tests.core.engine_models import mlp_with_fragile_layer, small_cnn

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "screenshots"
# A generous bound: these waits end as soon as their condition holds, and a CI machine
# under load runs several times slower than a quiet one (a 30 s wait failed there).
WAIT_MS = 120_000
OPEN_TIMEOUT_MS = WAIT_MS
HOLD_S = 60.0  # how long a held job waits for its test at most




@cache
def _binding_leaks() -> bool:
    """Whether this PySide6 loses references to True on Signal.emit() (6.12.0 on
    Python < 3.12, see tests/gui/test_toolkit.py): such a run would abort midway."""
    import PySide6
    from PySide6.QtCore import QObject, Signal

    if sys.version_info >= (3, 12) or not PySide6.__version__.startswith("6.12.0"):
        return False

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(10):
        probe.ping.emit()
    return sys.getrefcount(True) < before


@pytest.fixture(autouse=True)
def _usable_binding(request: pytest.FixtureRequest) -> None:
    """Fail each window test at once on a broken binding, instead of letting the
    interpreter abort the whole session a few hundred signals later."""
    if request.node.name.startswith("test_signal_emit_keeps"):
        return
    if _binding_leaks():
        pytest.fail("PySide6 6.12.0 on Python < 3.12 corrupts reference counts; "
                    "install PySide6-Essentials<6.12 (pyproject pins it)")


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


@pytest.fixture(autouse=True)
def _collect_windows_in_the_main_thread() -> Iterator[None]:
    """After each test (its widgets already closed and deleted later by pytest-qt), delete
    them and collect their Python wrappers here, in the main thread. Left to the cyclic
    garbage collector, a wrapper may die in a worker thread; shiboken then defers the
    widget's deletion to whatever main-thread call comes next, and one such deletion inside
    a later test's paint event deadlocked on a Qt mutex."""
    yield
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


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
    """Until the window has no job left, its evaluation matches the plan, and the results
    are drawn: the graph and the layer detail are drawn on later passes than the job's
    result (gui/view_passes.py), so a test reading them at once could still see the previous ones
    (when the runner fell idle at the end of one of waitUntil's short waits)."""
    doc = w.document

    def idle() -> bool:
        drawn = not (w.graph.view.is_pending or w.detail.is_pending or doc.view_passes.pending)
        return not w.runner.busy and doc.is_open and doc.evaluation_current and drawn

    qtbot.waitUntil(idle, timeout=timeout)


def wait_detail(qtbot, w: MainWindow, layer: str, weight: str | None = None) -> None:
    """Until the layer detail shows ``layer`` complete (with weight format ``weight``)."""

    def done() -> bool:
        d = w.detail.detail
        if not (d and d.layer == layer and d.complete):
            return False
        return weight is None or (d.choice.weight is not None and d.choice.weight.name == weight)

    qtbot.waitUntil(done, timeout=WAIT_MS)


def open_model(qtbot, w: MainWindow, path: Path) -> None:
    w.open_model(path)
    wait_idle(qtbot, w)


def click_row(qtbot, w: MainWindow, row: int) -> None:
    """Click a layer table row's name as a user would, with no key held.

    Not ``QTableView.selectRow``: it builds its selection command from the keyboard
    modifiers Qt keeps from the last key event, so a test that ended with Shift held
    (Ctrl+Shift+Z) would make it extend the selection instead."""
    view = w.table.view
    index = view.model().index(row, Column.NAME)
    view.scrollTo(index)
    qtbot.mouseClick(
        view.viewport(),
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
        view.visualRect(index).center(),
    )


def screenshot(widget: QWidget, name: str) -> Path:
    SHOTS.mkdir(exist_ok=True)
    p = SHOTS / f"{name}.png"
    assert widget.grab().save(str(p)), f"could not save {p}"
    return p


def held(real, at: Callable[[object], bool] = lambda item: isinstance(item, Progress)):
    """``real`` (a progress generator function) stopping after the first item ``at`` accepts
    until the test sets the returned event; then it runs on at its own pace.

    A test that cancels the job meanwhile and then sets the event reaches the job before it
    can finish, however slowly the window's thread gets to the progress: a pause after each
    step (``slowed``) only made that likely, and on a loaded machine the job could end first.
    """
    release = threading.Event()

    def hold(*args):
        gen = real(*args)
        waiting = True
        try:
            while True:
                item = next(gen)
                yield item
                if waiting and at(item):
                    waiting = False
                    release.wait(HOLD_S)
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()  # a cancelled job's own cleanup (an export's staging file) runs now

    return hold, release


def run_to_end(gen):
    """A job's generator to its return value, on this thread."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def slowed(real, delay: float):
    """``real`` (a progress generator function) pausing ``delay`` s after each step, so a
    test can act while the job runs."""

    def slow(*args):
        gen = real(*args)
        try:
            while True:
                item = next(gen)
                time.sleep(delay)
                yield item
        except StopIteration as stop:
            return stop.value

    return slow


class PaintLog(QObject):
    """An event filter that appends "paint" to ``log`` at each paint event of what it
    watches: tests read which event-loop pass painted what."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Paint:
            self.log.append("paint")
        return False
