"""Plans and ORT overrides as files, the unsaved-changes prompt, data, drops, settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QMessageBox

from bitlens.gui.data_dialog import DataDialog, symbolic_dims
from bitlens.gui.jobs import DataRequest
from bitlens.gui.layer_table_model import Column
from bitlens.gui.main_window import MainWindow
from tests.gui.conftest import WAIT_MS, click_row, open_model, wait_idle


def _quantize(qtbot, window, layer: str, fmt: str, column: Column = Column.WEIGHT) -> None:
    model = window.table.model
    assert model.setData(model.index(model.row_of(layer), column), fmt)
    wait_idle(qtbot, window)


def test_save_and_open_plan(qtbot, window, cnn_path: Path, tmp_path: Path, monkeypatch) -> None:
    open_model(qtbot, window, cnn_path)
    _quantize(qtbot, window, "conv1", "int4 sym ch")
    _quantize(qtbot, window, "fc", "uint8 asym", Column.ACTIVATION)
    target = tmp_path / "my.plan.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    assert window.save_plan()
    assert not window.isWindowModified()
    data = json.loads(target.read_text())
    assert data["layers"]["conv1"]["weight"] == "int4 sym ch"
    assert data["layers"]["fc"]["activation"] == "uint8 asym"
    # back to float, then open the saved plan: one undoable step restores it
    window.reset_plan()
    wait_idle(qtbot, window)
    assert window.document.plan.choices == {}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(target), ""))
    window.open_plan_dialog()
    wait_idle(qtbot, window)
    assert window.document.plan["conv1"].weight.name == "int4 sym ch"
    window.act_undo.trigger()
    assert window.document.plan.choices == {}


def test_bad_plan_file_is_reported(qtbot, window, cnn_path: Path, tmp_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"bitlens_plan": 1, "layers": {"nope": {"weight": "int8"}}}))
    assert not window.controller.load_plan(bad)
    assert "nope" in window.message_bar.text.text()
    assert window.document.undo_stack.count() == 0


def test_ort_overrides_round_trip(qtbot, window, cnn_path: Path, tmp_path: Path, monkeypatch):
    open_model(qtbot, window, cnn_path)
    _quantize(qtbot, window, "conv2", "int8 sym ch")
    _quantize(qtbot, window, "fc", "nf4 blk64")  # no ORT quant_type: reported, left out
    out = tmp_path / "overrides.json"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    window.export_overrides_dialog()
    data = json.loads(out.read_text())
    # int8 sym is -128..127, not ORT's symmetric int8: written with its own scales
    assert data["W2"][0]["quant_type"] == "QInt8" and data["W2"][0]["axis"] == 0
    assert all("scale" in e and e["zero_point"] == 0 for e in data["W2"])
    assert "W3" not in data
    assert window.message_bar.level == "warning" and "left out" in window.message_bar.text.text()
    window.reset_plan()
    wait_idle(qtbot, window)
    wrapped = tmp_path / "extra_options.json"
    wrapped.write_text(json.dumps({"TensorQuantOverrides": data}))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(wrapped), ""))
    window.import_overrides_dialog()
    wait_idle(qtbot, window)
    assert window.document.plan["conv2"].weight.name == "int8 sym ch0"
    assert window.document.plan["fc"].is_float


def test_unsaved_prompt_on_close(qtbot, settings, cnn_path: Path, monkeypatch) -> None:
    answers = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Discard]
    asked: list[str] = []

    def question(_parent, _title, text, *_a, **_k):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", staticmethod(question))
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    w.show()
    open_model(qtbot, w, cnn_path)
    _quantize(qtbot, w, "conv1", "int8 sym ch")
    assert not w.close()  # "Cancel" keeps the window open
    assert w.isVisible()
    assert w.close()  # "Discard" closes it
    assert len(asked) == 2 and "unsaved" in asked[0]


def test_layout_and_recent_files_persist(qtbot, settings, cnn_path: Path, no_modal) -> None:
    w = MainWindow(settings, device="cpu")
    qtbot.addWidget(w)
    w.show()
    open_model(qtbot, w, cnn_path)
    w.docks["graph"].hide()
    assert w.close()
    w2 = MainWindow(settings, device="cpu")
    qtbot.addWidget(w2)
    w2.show()
    assert not w2.docks["graph"].isVisible()
    assert w2.docks["plots"].isVisible()
    w2._fill_recent()
    texts = [a.text() for a in w2.recent_menu.actions()]
    assert str(cnn_path.resolve()) in texts
    w2.close()


def test_drop_an_onnx_file_opens_it(qtbot, window, cnn_path: Path) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(cnn_path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime,
        Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    window.dropEvent(event)
    wait_idle(qtbot, window)
    assert window.document.session.path == cnn_path


def test_open_data_npz_and_generated(qtbot, window, cnn_path: Path, tmp_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    _quantize(qtbot, window, "conv1", "int4 sym ch")
    rng = np.random.default_rng(1)
    npz = tmp_path / "data.npz"
    np.savez(npz, x=rng.normal(size=(6, 3, 8, 8)).astype(np.float32), labels=np.arange(6) % 10)
    window.controller.open_data(DataRequest("npz", path=npz))
    qtbot.waitUntil(lambda: window.document.session.data.source == "data.npz", timeout=WAIT_MS)
    wait_idle(qtbot, window)
    # the plan survives a change of data, and labels give an accuracy
    assert window.document.plan["conv1"].weight.name == "int4 sym ch"
    assert "accuracy" in window.document.evaluation.task_metric
    assert "Accuracy" in window.outputs.summary.text()
    window.controller.open_data(DataRequest("random", samples=3, seed=5))
    qtbot.waitUntil(lambda: "seed 5" in window.document.session.data.source, timeout=WAIT_MS)
    wait_idle(qtbot, window)
    # a data file that does not fit the model is reported, the old data stay
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, y=np.zeros((2, 3), np.float32))
    window.controller.open_data(DataRequest("npz", path=wrong))
    qtbot.waitUntil(lambda: window.message_bar.isVisible(), timeout=WAIT_MS)
    assert "wrong.npz" in window.message_bar.text.text()
    assert "seed 5" in window.document.session.data.source


def test_data_dialog_builds_requests(qtbot, tmp_path: Path) -> None:
    from bitlens.core.model.loader import from_proto
    from tests.core.engine_models import small_cnn

    info = from_proto(small_cnn()).info
    assert symbolic_dims(info) == []  # only the batch dim is symbolic
    dlg = DataDialog(info)
    qtbot.addWidget(dlg)
    assert dlg.request() == DataRequest("random", samples=8, seed=0, dims={})
    dlg.kind.setCurrentIndex(2)
    with pytest.raises(ValueError, match="image folder"):
        dlg.request()
    dlg.image_path.setText(str(tmp_path))
    dlg.mean_edit.setText("0.485, 0.456, 0.406")
    req = dlg.request()
    assert req.kind == "images" and req.path == tmp_path and req.mean == (0.485, 0.456, 0.406)
    dlg.mean_edit.setText("a, b")
    dlg._accept()
    assert "mean" in dlg.error.text() and dlg.result() == 0


def test_new_data_keeps_selection_and_graph_view(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    click_row(qtbot, window, 1)
    view = window.graph.view
    view.zoom(1.5)
    scale = view.transform().m11()
    window.controller.open_data(DataRequest("random", samples=3, seed=2))
    qtbot.waitUntil(lambda: "seed 2" in window.document.session.data.source, timeout=WAIT_MS)
    wait_idle(qtbot, window)
    assert window.document.selection.names == ("conv2",)
    assert [r.row() for r in window.table.view.selectionModel().selectedRows()] == [1]
    assert view.transform().m11() == scale


def test_file_open_dialog_opens_the_chosen_model(qtbot, window, cnn_path: Path, monkeypatch):
    seen = []

    def pick(_parent, _title, start, _filter):
        seen.append(start)
        return str(cnn_path), ""

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(pick))
    window.findChild(type(window.act_undo), "actionOpen").trigger()
    wait_idle(qtbot, window)
    assert window.document.session.path == cnn_path
    window.open_model_dialog()  # the second time it starts in the last model's folder
    assert seen[-1] == str(cnn_path.resolve().parent)
    wait_idle(qtbot, window)
