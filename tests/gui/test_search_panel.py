"""Tools ▸ Find Plan: run a search, cancel it, click a front point, undo; pins; metric errors."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

from bitlens.gui import jobs
from bitlens.gui.search_plot import LogErrorAxis
from tests.gui.conftest import WAIT_MS, held, open_model, screenshot, wait_idle


def _run(qtbot, window, ratio: float = 0.8):
    panel = window.search
    window.findChild(type(window.act_find_plan), "actionFindPlan").trigger()
    assert window.docks["search"].isVisible()
    panel.kind.setCurrentIndex(panel.kind.findData("size_ratio"))
    panel.value.setValue(ratio)
    with qtbot.waitSignal(window.controller.searchFinished, timeout=WAIT_MS) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def test_search_runs_and_a_front_point_applies_and_undoes(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    result = _run(qtbot, window)
    assert result is not None
    panel = window.search
    front = panel.plot.front_points
    assert front and all(a.error > b.error for a, b in itertools.pairwise(front))
    assert [p.label for p in panel.plot.references][:1] == ["float"]
    assert result.best.exported_bytes <= 0.8 * result.float_bytes
    assert "Best within the budget" in panel.status.text()
    assert "weights:" in panel.status.toolTip()
    wait_idle(qtbot, window)

    before = window.document.plan
    # click the smallest front point, through the plot's own click signal
    item = panel.plot.front
    spots = item.scatter.points()
    smallest = min(spots, key=lambda s: s.data().file_bytes)
    item.sigPointsClicked.emit(item, [smallest], None)
    applied = window.document.plan
    assert applied == smallest.data().plan and applied != before
    changed = [n for n in applied if applied[n] != before[n]]
    assert set(window.document.selection.names) == set(changed)
    wait_idle(qtbot, window)
    window.act_undo.trigger()
    assert window.document.plan == before
    window.act_redo.trigger()
    assert window.document.plan == applied
    wait_idle(qtbot, window)


def test_search_cancel_stops_it(qtbot, window, cnn_path: Path, monkeypatch) -> None:
    search, release = held(jobs.find_plan)  # held after its first step until Cancel was sent
    monkeypatch.setattr(jobs, "find_plan", search)
    open_model(qtbot, window, cnn_path)
    panel = window.search
    window.show_search()
    results = []
    window.controller.searchFinished.connect(results.append)
    with qtbot.waitSignal(window.runner.progressed, timeout=WAIT_MS):
        panel.run_button.click()
    assert panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    with qtbot.waitSignal(window.runner.cancelled, timeout=WAIT_MS):
        panel.cancel_button.click()
        release.set()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=WAIT_MS)
    assert results == [None]
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    assert "Stopped" in panel.status.text()
    assert panel.progress.text() == ""  # not the percentage reached when it stopped
    # the engine still evaluates plans after the cancelled search
    window.document.edit({"conv1": window.document.plan["conv1"]}, "nothing")
    model = window.table.model
    model.setData(model.index(0, 4), "int8 sym ch")
    wait_idle(qtbot, window)


def test_pinned_layer_stays_and_bad_metric_reports(qtbot, window, cnn_path: Path, tmp_path) -> None:
    open_model(qtbot, window, cnn_path)
    window.document.selection.set(["conv1"])
    window.table.pinRequested.emit(["conv1"])  # what the table's right-click menu sends
    pinned = window.document.plan["conv1"]
    assert "conv1" in window.search.pins
    result = _run(qtbot, window, ratio=0.9)
    assert all(p.plan["conv1"] == pinned for p in result.tried)

    bad = tmp_path / "bad_metric.py"
    bad.write_text("def score(outputs, reference, labels):\n    return 1 / 0\n")
    window.search.metric_spec.setText(f"{bad}:score")
    with qtbot.waitSignal(window.controller.searchFinished, timeout=WAIT_MS) as blocker:
        window.search.run_button.click()
    assert blocker.args[0] is None
    bar = window.message_bar
    assert "ZeroDivisionError" in bar.text.text()
    assert "Traceback" in bar.details.toPlainText() and "1 / 0" in bar.details.toPlainText()
    assert window.search.run_button.isEnabled()
    assert window.search.status.text().startswith("Failed")  # not "Stopped": it raised
    wait_idle(qtbot, window)


def test_search_panel_screenshot(qtbot, window) -> None:
    window.resize(1280, 720)
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    result = _run(qtbot, window, ratio=0.2)
    assert result is not None and result.best.metric is not None
    wait_idle(qtbot, window)
    assert screenshot(window, "find_plan").exists()


def test_error_axis_labels_only_the_1_2_5_ticks(qtbot) -> None:
    """On the panel's short plot pyqtgraph's labels of all nine ticks of a decade ran into
    each other; the axis labels 1, 2 and 5 of each decade (the grid keeps every tick)."""
    axis = LogErrorAxis("left")
    values = [math.log10(m * 10.0**e) for e in (-2, -1) for m in range(1, 10)]
    labels = axis.logTickStrings(values, 1.0, 1.0)
    got = dict(zip((round(10**v, 6) for v in values), labels, strict=True))
    labelled = {v for v, s in got.items() if s}
    assert labelled == {0.01, 0.02, 0.05, 0.1, 0.2, 0.5}, got
    assert got[0.2] == "0.2" and got[0.05] == "0.05"


def test_searches_in_the_window_give_the_plans_of_fresh_engines(
    qtbot, window, cnn_path: Path
) -> None:
    """Issue 13: the panel runs every search on the window's one engine; with seeds 1 then
    0 it returns what a search with the CLI's options gives on a fresh engine of the same
    data (SearchOptions' defaults, as ``bitlens search``)."""
    from bitlens.core.engine import Engine
    from bitlens.core.search import Budget, SearchOptions, search

    open_model(qtbot, window, cnn_path)
    engine = window.controller.session.engine
    got = []
    for seed in (1, 0):
        window.search.seed.setValue(seed)
        got.append(_run(qtbot, window, ratio=0.8))
        wait_idle(qtbot, window)
    for seed, result in zip((1, 0), got, strict=True):
        fresh = Engine(engine.model, engine.data, device="cpu")
        for _ in fresh.calibrate(engine.method.value):
            pass
        options = SearchOptions(Budget(size_ratio=0.8), seed=seed, target=result.best.plan.target)
        gen = search(fresh, options)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            alone = stop.value
        assert result.best.plan.to_json() == alone.best.plan.to_json()
        assert (result.best.error, result.best.file_bytes) == (
            alone.best.error,
            alone.best.file_bytes,
        )
        assert [p.plan.to_json() for p in result.front] == [p.plan.to_json() for p in alone.front]
