"""The window's sweep over input activations (issue 13, ``bitlens sweep --activation-formats``):
picking the formats, the entries equal to the core's, their columns, applying one and undo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import Qt

from bitlens.core.engine import Engine
from bitlens.core.results import drain
from bitlens.core.search import Sensitivity, sensitivities
from bitlens.core.usermetric import Metric
from bitlens.gui import jobs
from bitlens.gui.sweep_dialog import DEFAULT_ACTIVATIONS, SweepDialog
from bitlens.gui.text import fmt_db
from tests.gui.conftest import WAIT_MS, held, open_model, wait_idle

WEIGHTS = ["int4 sym ch"]
ACTS = ["uint8 asym", "int8 sym"]


def _tick(box, name: str, on: bool) -> None:
    item = next(box.item(i) for i in range(box.count()) if box.item(i).text() == name)
    item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)


def test_dialog_picks_activation_formats(qtbot) -> None:
    dlg = SweepDialog(["a", "b"], n_layers=5, n_samples=8, metric="my_score")
    qtbot.addWidget(dlg)
    formats, layers, acts = dlg.sweep_choice()
    assert acts == list(DEFAULT_ACTIVATIONS) and "int4 sym ch" in formats and layers == ["a", "b"]
    _tick(dlg.activations, "fp16", True)
    _tick(dlg.activations, "int8 sym", False)
    assert dlg.activation_formats() == ["fp16", "uint8 asym"]
    assert dlg.runs() == 2 * (len(formats) + 2)
    assert "+ 2 activation formats" in dlg.estimate.text() and "my_score" in dlg.estimate.text()
    # activations alone are a sweep; nothing ticked at all is not
    for i in range(dlg.formats.count()):
        dlg.formats.item(i).setCheckState(Qt.CheckState.Unchecked)
    assert dlg.ok.isEnabled() and dlg.sweep_choice()[0] == []
    for name in ("fp16", "uint8 asym"):
        _tick(dlg.activations, name, False)
    assert not dlg.ok.isEnabled()


@pytest.fixture
def digits(qtbot, window):
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    return window


def test_window_sweep_equals_the_core_and_applies_an_activation(qtbot, digits) -> None:
    window = digits
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS) as blocker:
        window.controller.run_sweep(WEIGHTS, None, ACTS)
    got = blocker.args[0]
    assert all(isinstance(e, Sensitivity) for e in got)
    # the same measure on a fresh engine over the same model and data, calibrated as the
    # window's (minmax): what `bitlens sweep --activation-formats` prints
    session = window.document.session
    engine = Engine(session.model, session.data, device="cpu")
    drain(engine.calibrate(window.controller.calibration))
    want = drain(sensitivities(engine, WEIGHTS, ACTS))
    key = lambda e: (e.layer, e.kind, e.format)  # noqa: E731
    assert sorted(map(key, got)) == sorted(map(key, want))
    acts = [e for e in got if e.kind == "activation"]
    assert {e.format for e in acts} == set(ACTS) and len(acts) == 2 * len(session.info.layers)
    mine = {key(e): e for e in got}
    for w in want:
        e = mine[key(w)]
        assert e.error == pytest.approx(w.error, rel=1e-5, abs=1e-9)
        assert e.metric == pytest.approx(w.metric) and e.bytes_saved == w.bytes_saved
    assert window.controller.sweep_metric == "accuracy"  # the sample has labels

    view = window.sweep
    heat = view.heat
    headers = [heat.horizontalHeaderItem(c).text() for c in range(heat.columnCount())]
    assert headers == ["int4 sym ch\nweights", "uint8 asym\ninput act.", "int8 sym\ninput act."]
    assert "Task metric: accuracy" in view.note.text()
    layer = session.info.layer_names[1]
    row = [heat.verticalHeaderItem(r).toolTip() for r in range(heat.rowCount())].index(layer)
    entry = mine[(layer, "activation", "int8 sym")]
    tip = heat.item(row, 2).toolTip()
    assert f"input activation in int8 sym\noutput error {entry.error:.4g}" in tip
    assert f"accuracy {entry.metric:.4g}" in tip and "saves no file bytes" in tip
    assert heat.item(row, 2).text() == fmt_db(-20 * math.log10(entry.error))
    assert view.table.columnCount() == 7 and view.table.rowCount() == len(got)
    assert not view.table.isColumnHidden(5)  # the metric: accuracy on the labels

    # double-click: that layer's input activation in int8 sym, one undoable step
    before = window.document.plan[layer]
    assert before.activation is None or before.activation.name != "int8 sym"
    stack = window.document.undo_stack
    steps = stack.count()
    heat.cellDoubleClicked.emit(row, 2)
    wait_idle(qtbot, window)
    after = window.document.plan[layer]
    assert after.activation.name == "int8 sym" and not after.dynamic
    assert after.weight == before.weight and stack.count() == steps + 1
    stack.undo()
    wait_idle(qtbot, window)
    assert window.document.plan[layer] == before


def test_activation_sweep_from_the_menu_cancels(qtbot, window, mlp_path, monkeypatch) -> None:
    measure, release = held(jobs.sensitivities)  # held after its first step until Cancel
    monkeypatch.setattr(jobs, "sensitivities", measure)
    open_model(qtbot, window, mlp_path)
    finished = []
    window.controller.sweepFinished.connect(finished.append)
    asked = []

    def ask(selected, parent=None, **counts):  # the dialog's answer: activations only
        asked.append(counts)
        return [], None, ["uint8 asym"]

    monkeypatch.setattr(SweepDialog, "ask", staticmethod(ask))
    with qtbot.waitSignal(window.runner.progressed, timeout=WAIT_MS):
        window.act_sweep.trigger()  # Tools ▸ Sensitivity Sweep…
    assert asked[0]["metric"] is None and asked[0]["n_layers"] == len(window.document.info.layers)
    assert window.status.cancel_button.isVisible()
    with qtbot.waitSignal(window.runner.cancelled, timeout=WAIT_MS):
        window.status.cancel_button.click()
        release.set()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=WAIT_MS)
    assert finished == [] and "Cancelled" in window.message_bar.text.text()


def _closeness(outputs, reference, labels) -> float:
    """Negative largest absolute output difference (higher is better)."""
    return -max(float(np.max(np.abs(outputs[k] - reference[k]))) for k in reference)


def test_loaded_metric_is_measured_by_the_weights_sweep(qtbot, window, mlp_path) -> None:
    """As `bitlens sweep --metric`: a metric loaded (by Find Plan) makes even a weights-only
    sweep measure it, with the same numbers as the core's."""
    open_model(qtbot, window, mlp_path)
    metric = Metric("closeness", _closeness, "negative largest output difference")
    window.controller.metric = metric
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS) as blocker:
        window.controller.run_sweep(WEIGHTS)
    got = {(e.layer, e.format): e for e in blocker.args[0]}
    engine = Engine(window.document.session.model, window.document.session.data, device="cpu")
    drain(engine.calibrate(window.controller.calibration))
    want = drain(sensitivities(engine, WEIGHTS, metric=metric))
    assert sorted(got) == sorted((e.layer, e.format) for e in want) and want
    for w in want:
        assert got[(w.layer, w.format)].metric == pytest.approx(w.metric, rel=1e-5, abs=1e-9)
    assert window.controller.sweep_metric == "closeness"
    assert "Task metric: closeness" in window.sweep.note.text()
    # with no metric measured (no labels, none loaded) the list has no column of dashes
    layer = window.document.info.layer_names[0]
    window.sweep.show_entries([Sensitivity(layer, "activation", "int8 sym", 0.1, None, 0)])
    assert window.sweep.table.isColumnHidden(5) and "Task metric: none" in window.sweep.note.text()
