"""The export file size shown before export, and the NaN/Inf warning during evaluation.

The status bar's "Export file" label shows the predicted size of the whole file (built in
memory by the worker, on demand, kept per plan); the file then written lands within 2% of
it. A plan whose outputs hold NaN or infinity gets the warning ``bitlens eval`` prints,
naming the first layer that produced it, in the message bar.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from bitlens.core.export.report import SIZE_TARGET
from bitlens.core.plan import Plan
from bitlens.gui.export_size_label import ASK
from bitlens.gui.text import fmt_bytes
from tests.core.test_export_verdict import _overflow_model
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def _apply(qtbot, window, plan: Plan) -> None:
    window.document.replace_plan(plan, "plan")
    wait_idle(qtbot, window)


@pytest.mark.parametrize("preset", ["W8A8", "W4A16"])
def test_predicted_file_size_is_the_written_file_size(
    qtbot, window, cnn_path: Path, tmp_path: Path, preset: str
) -> None:
    open_model(qtbot, window, cnn_path)
    label = window.export_size
    assert label.isVisible() and label.text() == ASK
    _apply(qtbot, window, Plan.preset(window.document.info, preset))
    with qtbot.waitSignal(window.controller.sizePredicted, timeout=60_000) as blocker:
        label.predict()  # what a click on the label (or Tools ▸ Predict…) does
    plan, size = blocker.args
    assert plan == window.document.plan and label.predicted == size
    # the prediction is not an attribute named size: QWidget.size() still answers (it hid it)
    assert label.size() == label.geometry().size()
    assert f"Export file: {fmt_bytes(size.file_bytes)} predicted" in label.text()
    assert size.file_bytes != window.document.evaluation.bytes_after  # not the weights alone
    # kept per plan: asking again answers at once, with no job
    with qtbot.waitSignal(window.controller.sizePredicted, timeout=WAIT_MS):
        assert window.controller.predict_size(window.export_options) is None
    out = tmp_path / f"cnn.{preset}.onnx"
    with qtbot.waitSignal(window.controller.exported, timeout=60_000) as done:
        window.controller.export_model(out)
    assert done.args[0].passed, done.args[0].failures
    written = out.stat().st_size
    assert abs(written - size.file_bytes) <= SIZE_TARGET * written, (written, size.file_bytes)
    # an edit makes the shown figure stale: it asks again
    _apply(qtbot, window, Plan(window.document.info))
    assert label.text() == ASK and label.predicted is None


def test_opening_the_export_dialog_predicts_the_file_size(
    qtbot, window, cnn_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QFileDialog

    open_model(qtbot, window, cnn_path)
    _apply(qtbot, window, Plan.preset(window.document.info, "W8A8"))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: ("", ""))  # cancelled
    with qtbot.waitSignal(window.controller.sizePredicted, timeout=60_000):
        window.act_export_model.trigger()
    assert "predicted" in window.export_size.text()


def test_nan_in_the_outputs_is_a_warning_naming_the_first_layer(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "overflow.onnx"
    onnx.save(_overflow_model(), path)  # W8A16: an fp16 activation of ~1e6 overflows
    open_model(qtbot, window, path)
    bar = window.message_bar
    _apply(qtbot, window, Plan.preset(window.document.info, "W8A8"))
    assert not bar.isVisible()
    with qtbot.waitSignal(window.controller.nonfinite, timeout=60_000) as blocker:
        _apply(qtbot, window, Plan.preset(window.document.info, "W8A16"))
    wait_idle(qtbot, window)
    text = bar.text.text()
    assert bar.isVisible() and bar.level == "warning"
    assert blocker.args[0] in text and "NaN" in text and "first produced by layer 'head'" in text
