"""Bad files opened in the window give a one-line message; the window keeps working."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.gui.jobs import DataRequest
from bitlens.gui.layer_table_model import Column
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def _bad_models(tmp_path: Path, good: Path) -> list[tuple[Path, str]]:
    data = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    short = onnx.load(good)
    short.graph.initializer[0].raw_data = short.graph.initializer[0].raw_data[:5]
    short_path = tmp_path / "short.onnx"
    onnx.save(short, short_path)
    bomb = onnx.load(good)
    values = numpy_helper.from_array(np.ones(1, np.float32), "s")
    idx = numpy_helper.from_array(np.zeros(1, np.int64), "s_idx")
    bomb.graph.sparse_initializer.append(helper.make_sparse_tensor(values, idx, [100000, 100000]))
    bomb_path = tmp_path / "bomb.onnx"
    onnx.save(bomb, bomb_path)
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    return [(truncated, "corrupt or truncated"), (short_path, "holds 5 bytes"),
            (bomb_path, "over the budget"), (fifo, "not a regular file")]  # fmt: skip


def _expect_error(qtbot, window, fragment: str) -> None:
    qtbot.waitUntil(
        lambda: window.message_bar.isVisible() and not window.runner.busy, timeout=WAIT_MS
    )
    text = window.message_bar.text.text()
    assert fragment in text and "unexpected error" not in text, text
    assert "\n" not in text
    window.message_bar.hide()


def test_bad_files_are_reported_and_the_window_still_works(
    qtbot, window, cnn_path: Path, tmp_path: Path
) -> None:
    open_model(qtbot, window, cnn_path)
    session = window.document.session
    for path, fragment in _bad_models(tmp_path, cnn_path):
        window.open_model(path)
        _expect_error(qtbot, window, fragment)
        assert window.document.session is session  # the open model stays

    bomb = tmp_path / "bomb.npz"
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    header = (tmp_path / "x.npy").read_bytes().replace(b"(2, 2)", b"(99999, 999999, 2)")
    import zipfile

    with zipfile.ZipFile(bomb, "w") as zf:
        zf.writestr("x.npy", header)
    window.controller.open_data(DataRequest("npz", path=bomb))
    _expect_error(qtbot, window, "over the budget")

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"bitlens_plan": 1, "layers": {"conv1": {"dynamic": "no"}}}))
    assert not window.controller.load_plan(plan)
    _expect_error(qtbot, window, "'dynamic' must be true or false")
    overrides = tmp_path / "ort.json"
    overrides.write_text(json.dumps({"conv1.w": [{"quant_type": "QInt8", "axis": "abc"}]}))
    assert not window.controller.import_ort_overrides(overrides)
    _expect_error(qtbot, window, "'axis' must be an integer")
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)
    assert not window.controller.load_plan(deep)
    _expect_error(qtbot, window, "nested")

    # Outputs never replace an input or a foreign file.
    notes = tmp_path / "notes.json"
    notes.write_text("my notes, not JSON\n")
    assert not window.controller.save_plan(notes)
    _expect_error(qtbot, window, "not JSON")
    assert notes.read_text() == "my notes, not JSON\n"
    model_bytes = cnn_path.read_bytes()
    window.controller.export_ort_overrides(cnn_path)
    _expect_error(qtbot, window, "input of this run")
    assert cnn_path.read_bytes() == model_bytes
    (tmp_path / "dir.onnx").mkdir()
    assert window.controller.export_model(tmp_path / "dir.onnx") is None
    _expect_error(qtbot, window, "is a directory")

    # Still usable: an edit is evaluated.
    model = window.table.model
    assert model.setData(model.index(model.row_of("conv1"), Column.WEIGHT), "int4 sym ch")
    wait_idle(qtbot, window)
    assert window.document.plan["conv1"].weight.name == "int4 sym ch"
    assert window.document.evaluation_current


def test_damaged_remembered_sizes_are_ignored(settings, tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    settings.set_model_dims(model, {"width": 16})
    key = settings._dims_key(model)
    for raw in ("[" * 100_000, '{"dims": ' + "9" * 5000 + "}"):
        settings.q.setValue(key, raw)
        assert settings.model_dims(model) == {}
