"""The window's as-deployed mode: a job with progress and Cancel, numbers equal to the
exported model's in a fresh default ONNX Runtime session, per-layer differences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QGuiApplication

from bitlens.core import metrics
from bitlens.core.export.asdeployed import DeployedRunner
from bitlens.core.export.exporter import export
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.gui.text import fmt_db
from tests.core.test_targets import silu_net
from tests.gui.conftest import WAIT_MS, held, open_model, wait_idle

TIMEOUT = 60_000


def _w8a8(qtbot, window) -> None:
    window.table.preset_combo.setCurrentText("W8A8")
    window.table.preset_all.click()
    wait_idle(qtbot, window)


def _run(qtbot, window):
    with qtbot.waitSignal(window.runner.finished, timeout=TIMEOUT,
                          check_params_cb=lambda job: job.key == "deployed"):  # fmt: skip
        window.act_deployed.trigger()
    report = window.deployed.pane.report
    assert report is not None and report.plan == window.document.plan
    return report


def _fresh_errors(window, tmp_path: Path) -> dict[str, tuple[float, float]]:
    """(deployed SQNR, max |deployed - simulated|) per output, from the plan exported anew and
    run in a fresh default session: the independent reference."""
    engine, plan = window.document.session.engine, window.document.plan
    path = tmp_path / "fresh.onnx"
    drain(export(engine, plan, path, window.export_options))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ref = engine.run_outputs(Plan(plan.info, target=plan.target))
    sim = engine.run_outputs(plan)
    got = {n: [] for n in names}
    for i in engine.data.evaluation:
        for n, v in zip(names, sess.run(names, engine.data.samples[i]), strict=True):
            got[n].append(v)
    flat = lambda vs: np.concatenate([np.asarray(v).ravel() for v in vs])  # noqa: E731
    return {
        n: (
            metrics.tensor_error(flat(ref[n]), flat(got[n])).sqnr_db,
            float(np.max(np.abs(flat(got[n]).astype(np.float64) - flat(sim[n])))),
        )
        for n in names
    }


def test_as_deployed_in_the_window_equals_a_fresh_session(qtbot, window, tmp_path: Path) -> None:
    src = tmp_path / "silu.onnx"
    onnx.save(silu_net(), str(src))
    open_model(qtbot, window, src)
    _w8a8(qtbot, window)
    report = _run(qtbot, window)
    fresh = _fresh_errors(window, tmp_path)
    for o in report.outputs:
        assert o.deployed.sqnr_db == fresh[o.name][0]  # bit for bit the same outputs
        assert o.max_abs_difference == fresh[o.name][1]
    pane = window.deployed.pane
    # the mode keeps the main window as main_window, not window (QWidget's window() name)
    assert window.deployed.main_window is window and pane.window() is window
    assert pane.table.rowCount() == 5
    assert pane.table.item(0, 0).text() == "conv0"
    assert "codes" in pane.table.item(0, 1).text()
    assert "simulated (fake-quant" in pane.outputs.text() and "deployed (the export" in (
        pane.outputs.text()
    )
    y = next(o for o in report.outputs if o.name == "y")
    status = window.deployed.status
    assert status.isVisible() and f"Deployed {fmt_db(y.deployed.sqnr_db)}" in status.text()
    # one selection: a row selects its layer, the layer selects its row (the row picked
    # with explicit flags: selectRow reads the keyboard's modifiers, which Qt keeps from the
    # last key event of an earlier test, e.g. test_open_and_edit's Ctrl+Shift+Z)
    rows = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
    pane.table.selectionModel().select(pane.table.model().index(2, 0), rows)
    assert window.document.selection.current == "conv2"
    window.document.selection.set(["fc"])
    assert [r.row() for r in pane.table.selectionModel().selectedRows()] == [4]
    # with Shift held (a Shift-click on the graph) the layer still selects its one row:
    # selectRow extended the selection from the table's anchor instead
    qtbot.keyPress(pane.table, Qt.Key.Key_Shift, Qt.KeyboardModifier.ShiftModifier)
    try:
        assert QGuiApplication.keyboardModifiers() & Qt.KeyboardModifier.ShiftModifier
        window.document.selection.set(["conv1"])
        assert [r.row() for r in pane.table.selectionModel().selectedRows()] == [1]
    finally:
        qtbot.keyRelease(pane.table, Qt.Key.Key_Shift)
    # an edit makes the run stale, and the pane says so
    window.table.preset_combo.setCurrentText("W4A8")
    window.table.preset_all.click()
    wait_idle(qtbot, window)
    assert pane.state.text().startswith("Stale") and "(stale)" in status.text()


def test_as_deployed_on_a_sample(qtbot, window, tmp_path: Path) -> None:
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    _w8a8(qtbot, window)
    report = _run(qtbot, window)
    assert report.layers_verified
    fresh = _fresh_errors(window, tmp_path)
    for o in report.outputs:
        assert o.deployed.sqnr_db == fresh[o.name][0]
    assert any(la.kind == "codes" for la in report.layers)


def test_as_deployed_can_be_cancelled(
    qtbot, window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "silu.onnx"
    onnx.save(silu_net(), str(src))
    open_model(qtbot, window, src)
    _w8a8(qtbot, window)
    run, release = held(DeployedRunner.run)  # held after its first step until Cancel was sent
    monkeypatch.setattr(DeployedRunner, "run", run)
    with qtbot.waitSignal(window.runner.progressed, timeout=TIMEOUT):
        window.act_deployed.trigger()
    assert window.status.cancel_button.isVisible()
    with qtbot.waitSignal(window.runner.cancelled, timeout=TIMEOUT):
        window.status.cancel_button.click()
        release.set()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=TIMEOUT)
    assert window.deployed.pane.report is None
    assert not window.deployed.status.isVisible()


def test_the_error_plots_stay_in_front_and_the_pane_titles_fit(qtbot, window) -> None:
    """The As deployed pane is tabbed with the plots, not shown over them (it was the
    bottom area's front tab at start), and its last column shows its whole title."""
    window.resize(1280, 720)
    window.show()
    qtbot.waitExposed(window)
    assert window.docks["plots"].visibleRegion().isEmpty() is False
    assert window.docks["deployed"].visibleRegion().isEmpty()
    window.docks["deployed"].raise_()
    qtbot.waitUntil(lambda: not window.docks["deployed"].visibleRegion().isEmpty(), timeout=WAIT_MS)
    table = window.deployed.pane.table
    header = table.horizontalHeader()
    title = table.horizontalHeaderItem(3).text()
    assert header.sectionSize(3) >= header.fontMetrics().horizontalAdvance(title)
