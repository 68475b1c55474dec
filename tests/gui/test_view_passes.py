"""The views' deferred work runs one piece per event-loop pass, each after a pass that ran
none, so no piece shares a pass with the repaint of the previous one's changes (issue 11;
gui/view_passes.py). The time itself is measured by benchmarks/bench_ui_passes.py
(docs/benchmarks.md "uiviews (session 16)")."""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtWidgets import QApplication

from bitlens.core.plan import Plan
from bitlens.gui import jobs
from bitlens.gui.jobs import DataRequest
from bitlens.gui.view_passes import ViewPasses
from tests.gui.conftest import WAIT_MS, PaintLog, open_model, run_to_end, wait_idle


def _passes(log: list[str], *marks: str) -> dict[str, int]:
    """The event-loop pass (counted from the log's start) in which each mark was logged."""
    out, n = {}, 0
    for entry in log:
        if entry == "pass":
            n += 1
        elif entry in marks and entry not in out:
            out[entry] = n
    return out


def _turn_until(done, log: list[str]) -> None:
    """Turn the event loop one pass at a time (as the window's loop does), each logged."""
    app = QApplication.instance()
    end = time.monotonic() + WAIT_MS / 1000
    while not done() and time.monotonic() < end:
        log.append("pass")
        app.processEvents()
        time.sleep(0.002)


def test_pieces_run_one_a_pass_with_a_pass_between(qapp) -> None:
    passes = ViewPasses()
    log: list[str] = []
    a, b = (lambda: log.append("a")), (lambda: log.append("b"))
    passes.post(a)
    passes.post(b)
    passes.post(a)  # posted again before it ran: keeps its place, runs once
    log.append("posted")
    _turn_until(lambda: "b" in log, log)
    after = log[log.index("posted") :]
    assert after.count("a") == 1 and after.count("b") == 1
    at = _passes(after, "a", "b")
    # rest passes first (the poster's own repaint), then a, a rest, then b
    assert at["a"] >= 3 and at["b"] >= at["a"] + 2, after
    assert passes.is_queued(a) is False and passes.is_queued(b) is False


def test_a_rest_taken_for_a_cancelled_piece_is_taken_again(qapp) -> None:
    """A result's handler that cancels the waiting piece and posts others (a model opened
    while the last one's detail waited) made changes of its own: the next pass rests."""
    passes = ViewPasses()
    log: list[str] = []
    first = lambda: log.append("first")  # noqa: E731
    passes.post(first)
    _turn_until(lambda: log.count("pass") == 1, log)  # the rest for ``first``
    passes.cancel(first)
    passes.post(lambda: log.append("second"))
    log.append("posted")
    _turn_until(lambda: "second" in log, log)
    after = log[log.index("posted") :]
    # two turns first, as for any piece that fills the queue: the first may fall in the
    # poster's own pass
    assert "first" not in log and _passes(after, "second")["second"] >= 3, after


def test_a_cancelled_piece_does_not_run(qapp) -> None:
    passes = ViewPasses()
    log: list[str] = []

    def piece() -> None:
        log.append("ran")

    passes.post(piece)
    assert passes.is_queued(piece)
    passes.cancel(piece)
    passes.post(lambda: log.append("other"))
    _turn_until(lambda: "other" in log, log)
    log[:] = [e for e in log if e != "pass"]
    assert log == ["other"]


def test_the_detail_and_the_graph_are_drawn_in_passes_of_their_own(
    qtbot, window, cnn_path: Path, mlp_path: Path, monkeypatch
) -> None:
    """At open the layer detail's drawing shared the pass that painted the new model's table
    (62-89 ms of the window's thread on PP-OCRv4 rec), and the graph's build the pass that
    painted the detail's plots (54-96 ms)."""
    open_model(qtbot, window, mlp_path)
    wait_idle(qtbot, window)
    session = run_to_end(jobs.open_model(cnn_path, DataRequest(dims={}), "cpu"))
    layer = session.info.layers[0].name
    plan = Plan.float(session.info)
    detail = run_to_end(jobs.layer_detail(session.engine, layer, plan[layer], {}))
    log: list[str] = []
    paints = PaintLog(log)
    window.table.view.viewport().installEventFilter(paints)
    view, pane = window.graph.view, window.detail
    view.rebuilt.connect(lambda: log.append("built"))
    shown = pane.show_detail

    def showing(d) -> None:
        if d is not None:  # the one handed over here, or the controller's own for the layer
            log.append("detail")
        shown(d)

    monkeypatch.setattr(pane, "show_detail", showing)
    try:
        window.document.load(session)  # as the open job's result handler does
        pane.show_later(detail)  # the detail's first stage, in the same pass
        log.append("loaded")
        _turn_until(lambda: "built" in log and "detail" in log, log)
    finally:
        window.table.view.viewport().removeEventFilter(paints)
    after = log[log.index("loaded") :]
    at = _passes(after, "paint", "detail", "built")
    # the table's repaint, then each piece in a pass of its own, a pass apart
    assert at["paint"] < min(at["detail"], at["built"]), after
    assert abs(at["detail"] - at["built"]) > 1, after
    assert pane.detail is not None and pane.detail.layer == layer
