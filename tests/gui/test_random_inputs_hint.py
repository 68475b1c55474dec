"""When ONNX Runtime cannot run a model on the random inputs of the sizes given, the message
says which inputs they were and what to do; other sizes then run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.core.engine_models import _model
from tests.gui.conftest import OPEN_TIMEOUT_MS, wait_idle


def fixed_reshape() -> onnx.ModelProto:
    """x[1, W] -> Reshape([2, 4]) -> MatMul(M[4, 3]) -> y[2, 3]: runs only when W is 8."""
    m = numpy_helper.from_array(np.ones((4, 3), np.float32), "M")
    s = numpy_helper.from_array(np.array([2, 4], np.int64), "s")
    g = helper.make_graph(
        [
            helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
            helper.make_node("MatMul", ["r", "M"], ["y"], name="mm"),
        ],
        "fixed_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [m, s],
    )
    return _model(g)


def test_sizes_the_model_cannot_run_say_so_and_other_sizes_run(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "reshape.onnx"
    onnx.save(fixed_reshape(), path)
    window.open_model(path)
    qtbot.waitUntil(lambda: window.dims_dialog is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    bar = window.message_bar
    dlg = window.dims_dialog
    dlg.boxes["W"].setValue(6)
    dlg.accept()
    qtbot.waitUntil(lambda: bar.isVisible() and bar.level == "error", timeout=OPEN_TIMEOUT_MS)
    text = bar.text.text()
    assert "on random inputs x [1, 6]" in text and "File ▸ Input Sizes…" in text, text
    assert window.document.session.data is None  # still open, weights only
    dlg = window.ask_input_sizes()
    dlg.boxes["W"].setValue(8)
    dlg.accept()
    qtbot.waitUntil(lambda: window.document.session.data is not None, timeout=OPEN_TIMEOUT_MS)
    wait_idle(qtbot, window)
    assert window.document.evaluation.outputs["y"].error.sqnr_db == float("inf")  # float plan
