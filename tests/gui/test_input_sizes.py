"""Models with dynamic input sizes open with no data (graph, table, weight errors), then
evaluate after the input-sizes dialog; sizes are remembered per model. The data dialog's
evaluation slot and a folder of feeds of different widths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bitlens.core.plan import LayerChoice
from bitlens.gui.data_dialog import DataDialog
from bitlens.gui.jobs import DataRequest
from tests.core.data_models import line_feeds, ocr_line, two_inputs_shared_dim
from tests.gui.conftest import OPEN_TIMEOUT_MS, WAIT_MS, wait_idle


@pytest.fixture
def line_path(tmp_path: Path) -> Path:
    p = tmp_path / "line.onnx"
    onnx.save(ocr_line(batch=None, width=None), p)  # x: [?, 1, 8, ?] like "[?, 3, 48, ?]"
    return p


def _open_without_data(qtbot, window, path: Path) -> None:
    window.open_model(path)
    qtbot.waitUntil(lambda: window.dims_dialog is not None and window.dims_dialog.isVisible(),
                    timeout=OPEN_TIMEOUT_MS)  # fmt: skip
    wait_idle(qtbot, window)


def test_opens_with_no_data_then_evaluates_after_the_sizes_dialog(
    qtbot, window, line_path: Path, settings
) -> None:
    _open_without_data(qtbot, window, line_path)
    doc = window.document
    assert doc.session.data is None
    assert window.table.proxy.rowCount() == 2
    assert {"conv", "classify", "input:x"} <= set(window.graph.view._items)
    assert "No input data" in window.status.data_label.text()
    # weight errors need no data
    with qtbot.waitSignal(doc.evaluationChanged, timeout=WAIT_MS):
        doc.edit({"conv": LayerChoice.of("int4 sym ch", None)}, "int4")
    wait_idle(qtbot, window)
    ev = doc.evaluation
    assert ev.layers["conv"].weight is not None and ev.layers["conv"].weight.sqnr_db > 10
    assert ev.outputs == {} and ev.layers["conv"].accumulated is None
    # the dialog, filled and accepted as a user would
    dlg = window.dims_dialog
    assert list(dlg.boxes) == ["x:3"] and dlg.boxes["x:3"].value() == 8  # copies the fixed side
    dlg.boxes["x:3"].setValue(21)
    dlg.accept()
    qtbot.waitUntil(lambda: doc.session.data is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    assert doc.session.data.samples[0]["x"].shape[1:] == (1, 8, 21)
    assert doc.plan["conv"].weight.name == "int4 sym ch"  # the plan survives
    assert doc.evaluation.outputs["y"].error.sqnr_db > 0
    assert doc.evaluation.layers["conv"].accumulated is not None
    assert "Random inputs" in window.status.data_label.text()
    assert settings.model_dims(line_path) == {"x:3": 21}


def test_remembered_sizes_open_without_asking(qtbot, window, line_path: Path, settings) -> None:
    settings.set_model_dims(line_path, {"x:3": 13})
    window.open_model(line_path)
    wait_idle(qtbot, window)
    assert window.document.session.data.samples[0]["x"].shape[3] == 13
    assert window.dims_dialog is None
    assert window.document.evaluation.outputs


def test_declining_the_sizes_keeps_weights_and_asks_again_for_a_sweep(
    qtbot, window, line_path: Path
) -> None:
    _open_without_data(qtbot, window, line_path)
    first = window.dims_dialog
    first.reject()
    assert window.message_bar.isVisible() and "Weights only" in window.message_bar.text.text()
    assert window.controller.run_sweep(["int8 sym ch"]) is None
    assert window.dims_dialog is not first and window.dims_dialog.isVisible()
    window.dims_dialog.reject()


def test_the_weights_only_hint_goes_when_data_open(
    qtbot, window, line_path: Path, tmp_path
) -> None:
    """Declining the sizes, then File > Open Data (as with tinyocr's PP-OCRv6 detector): the
    'Weights only: ... need input sizes or data' hint stayed above results computed on data."""
    _open_without_data(qtbot, window, line_path)
    window.dims_dialog.reject()
    assert "Weights only" in window.message_bar.text.text()
    data = tmp_path / "lines.npz"
    np.savez(data, **{f"x/{i}": np.ones((1, 1, 8, 12 + i), np.float32) for i in range(2)})
    window.controller.open_data(DataRequest("npz", path=data))
    qtbot.waitUntil(lambda: window.document.session.data is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    assert not window.message_bar.isVisible(), window.message_bar.text.text()


def test_shared_dim_is_one_box_and_sizes_come_from_the_data(qtbot, window, tmp_path) -> None:
    path = tmp_path / "shared.onnx"
    onnx.save(two_inputs_shared_dim(), path)
    _open_without_data(qtbot, window, path)
    assert list(window.dims_dialog.boxes) == ["seq"]
    window.dims_dialog.reject()
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    for i, n in enumerate([5, 9, 5]):
        x = np.ones((1, n, 4), np.float32)
        np.savez(feeds / f"f{i}.npz", a=x, b=x)
    window.controller.open_data(DataRequest("npz", path=feeds))
    qtbot.waitUntil(lambda: window.document.session.data is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    data = window.document.session.data
    assert "Data: 2 calibrate, 1 evaluate" in window.status.data_label.text()
    assert "[1, 5, 4]" in window.status.data_label.toolTip()
    dlg = window.ask_input_sizes()
    assert dlg.boxes["seq"].value() == data.samples[data.evaluation[0]]["a"].shape[1] == 5
    dlg.reject()


def test_data_dialog_evaluation_slot_and_fraction(qtbot, tmp_path: Path) -> None:
    from bitlens.core.model.loader import from_proto

    info = from_proto(ocr_line(width="width")).info
    dlg = DataDialog(info, dims={"width": 40})
    qtbot.addWidget(dlg)
    assert dlg.dim_boxes["width"].value() == 40
    dlg.fraction_box.setValue(0.75)
    req = dlg.request()
    assert req.eval_path is None and req.calib_fraction == 0.75 and req.dims == {"width": 40}
    dlg.kind.setCurrentIndex(1)
    dlg.npz_path.setText(str(tmp_path / "cal"))
    dlg.eval_path.setText(str(tmp_path / "ev"))
    assert not dlg.fraction_box.isEnabled()
    req = dlg.request()
    assert req.kind == "npz" and req.path == tmp_path / "cal" and req.eval_path == tmp_path / "ev"


def test_separate_calibration_and_evaluation_folders_in_the_window(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "line.onnx"
    onnx.save(ocr_line(batch=1), path)
    for part, widths in (("cal", [10, 14, 10]), ("ev", [12, 30])):
        (tmp_path / part).mkdir()
        for i, f in enumerate(line_feeds(widths, seed=len(part))):
            np.save(tmp_path / part / f"line{i}.npy", f["x"])
    window.settings.set_model_dims(path, {"width": 16})
    window.open_model(path)
    wait_idle(qtbot, window)
    window.controller.open_data(
        DataRequest("npz", path=tmp_path / "cal", eval_path=tmp_path / "ev")
    )
    qtbot.waitUntil(lambda: not window.document.session.data.generated, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    data = window.document.session.data
    assert len(data.calibration) == 3 and len(data.evaluation) == 2
    assert "Data: 3 calibrate, 2 evaluate" in window.status.data_label.text()
    assert window.document.evaluation.outputs["y"].error.sqnr_db == float("inf")  # float plan


def test_input_random_data_cannot_fill_opens_and_says_why(qtbot, window, tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from tests.core.engine_models import _model

    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "W")
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "string_input",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("tag", TensorProto.STRING, ["N"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w],
    )
    path = tmp_path / "tagged.onnx"
    onnx.save(_model(g), path)
    window.open_model(path)
    wait_idle(qtbot, window)
    assert window.document.session.data is None and window.table.proxy.rowCount() == 1
    assert window.message_bar.isVisible() and "'tag'" in window.message_bar.text.text()
    assert window.controller.run_sweep(["int8 sym ch"]) is None
    assert "Open Data" in window.message_bar.text.text()


def test_opening_another_model_drops_the_pending_sizes_dialog(
    qtbot, window, line_path: Path, cnn_path: Path
) -> None:
    _open_without_data(qtbot, window, line_path)
    old = window.dims_dialog
    window.open_model(cnn_path)
    qtbot.waitUntil(lambda: window.document.session.path == cnn_path, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    assert not old.isVisible() and window.dims_dialog is None
    assert not window.message_bar.isVisible()
    assert window.document.session.data is not None


def test_a_sweep_that_asked_for_sizes_runs_once_they_are_given(
    qtbot, window, line_path: Path
) -> None:
    _open_without_data(qtbot, window, line_path)
    window.dims_dialog.reject()
    assert window.controller.run_sweep(["int8 sym ch"], ["conv"]) is None  # asks for sizes
    dlg = window.dims_dialog
    dlg.boxes["x:3"].setValue(16)
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=OPEN_TIMEOUT_MS) as sweep:
        dlg.accept()
    wait_idle(qtbot, window)
    entries = sweep.args[0]
    assert [(e.layer, e.format) for e in entries] == [("conv", "int8 sym ch")]
    # the pending sweep ran once: opening data again does not repeat it
    with qtbot.assertNotEmitted(window.controller.sweepFinished, wait=500):
        window.controller.set_input_sizes({"x:3": 12})
        qtbot.waitUntil(
            lambda: window.document.session.data.samples[0]["x"].shape[3] == 12,
            timeout=OPEN_TIMEOUT_MS,
        )
        wait_idle(qtbot, window)


def test_data_dialog_starts_at_the_layout_of_the_image_input(qtbot) -> None:
    """An NHWC input (MTCNN's [N, 48, 48, 3]) starts the images page at NHWC, an NCHW one
    at NCHW (it always started at NCHW)."""
    from bitlens.core.model.loader import from_proto
    from tests.builders import nhwc_conv

    for proto, want in ((nhwc_conv(), "NHWC"), (ocr_line(width="width"), "NCHW")):
        dlg = DataDialog(from_proto(proto).info)
        qtbot.addWidget(dlg)
        assert dlg.layout_box.currentText() == want
