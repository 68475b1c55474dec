"""The window's jobs run with a 1 ms interpreter switch interval (gui/lock_switch.py): each
time Qt calls into Python on the window's thread while a job computes, the thread waits for
the lock about that long, not Python's default 5 ms; the last window to close puts Python's
back."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest

from bitlens.core.plan import Plan
from bitlens.gui import jobs, lock_switch
from bitlens.gui.lock_switch import WINDOW_SWITCH_S
from bitlens.gui.main_window import MainWindow
from tests.core.engine_models import small_cnn
from tests.gui.conftest import open_model, wait_idle


@pytest.fixture
def default_interval(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Python's default interval and no window open before the test (other tests' windows
    may be left unclosed); whatever was set before it back after."""
    before = sys.getswitchinterval()
    monkeypatch.setattr(lock_switch, "_open_windows", 0)
    monkeypatch.setattr(lock_switch, "_before", None)
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_an_export_job_runs_with_the_lock_handed_over_within_a_millisecond(
    qtbot, settings, no_modal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, default_interval
) -> None:
    seen: list[float] = []
    real = jobs.export_model

    def export(*args):
        seen.append(sys.getswitchinterval())  # in the job's thread, while it computes
        return (yield from real(*args))

    monkeypatch.setattr(jobs, "export_model", export)
    path = tmp_path / "cnn.onnx"
    onnx.save(small_cnn(), path)
    w = MainWindow(settings, device="cpu")  # Python's 5 ms until the window is made
    qtbot.addWidget(w)
    w.show()
    open_model(qtbot, w, path)
    w.document.replace_plan(Plan.preset(w.document.info, "W8A8"), "W8A8")
    wait_idle(qtbot, w)
    out = tmp_path / "cnn.w8a8.onnx"
    with qtbot.waitSignal(w.controller.exported, timeout=60_000):
        w.controller.export_model(out)
    assert seen == [WINDOW_SWITCH_S] and out.is_file()
    w.export_report.close()
    w.close()


def test_a_shorter_interval_already_set_is_kept(qtbot, settings, default_interval) -> None:
    sys.setswitchinterval(WINDOW_SWITCH_S / 4)
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    assert sys.getswitchinterval() == pytest.approx(WINDOW_SWITCH_S / 4)
    w.close()


def test_the_last_window_to_close_puts_pythons_interval_back(
    qtbot, settings, no_modal, default_interval
) -> None:
    first, second = MainWindow(settings, device="cpu"), MainWindow(settings, device="cpu")
    for w in (first, second):
        qtbot.addWidget(w)
    assert sys.getswitchinterval() == WINDOW_SWITCH_S
    first.close()
    first.close()  # a second close counts once
    assert sys.getswitchinterval() == WINDOW_SWITCH_S  # the other window still runs jobs
    second.close()
    assert sys.getswitchinterval() == pytest.approx(0.005)
