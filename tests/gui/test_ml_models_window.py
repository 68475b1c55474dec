"""The window over a model converted from scikit-learn that has nothing to quantize (only
ai.onnx.ml operators, as ONNX Runtime's logreg_iris.onnx): it opens, says why in the
message bar, and the status bar says there are no quantizable weights."""

from __future__ import annotations

from pathlib import Path

import onnx

from tests.builders_ml import ml_only_classifier
from tests.gui.conftest import open_model


def test_ai_onnx_ml_only_model_opens_and_says_nothing_is_quantizable(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "logreg.onnx"
    onnx.save(ml_only_classifier(), str(path))
    open_model(qtbot, window, path)  # it failed to open: "declares no ONNX opset"
    assert window.document.is_open and window.table.proxy.rowCount() == 0
    bar = window.message_bar
    assert bar.isVisible() and "3 ai.onnx.ml operators" in bar.text.text()
    assert window.status.size_label.text() == "No quantizable weights"
