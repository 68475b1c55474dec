"""The window says what the loader did in memory (issue 9, items 1 and 5), in the message bar."""

from __future__ import annotations

from pathlib import Path

import onnx

from bitlens.core.model import irversion
from tests.builders import conv_net
from tests.gui.conftest import open_model


def test_new_ir_version_opens_evaluates_and_says_so(qtbot, window, tmp_path: Path) -> None:
    m = conv_net()
    m.ir_version = irversion.ort_max_ir_version() + 1
    path = tmp_path / "new_ir.onnx"
    onnx.save(m, path)
    open_model(qtbot, window, path)
    assert window.document.evaluation is not None  # ONNX Runtime ran it
    assert window.message_bar.isVisible()
    assert f"as IR {irversion.ort_max_ir_version()} in memory" in window.message_bar.text.text()


def test_cpu_fallback_reason_is_the_providers_tooltip(qtbot, window, cnn_path, monkeypatch) -> None:
    from bitlens.core.engine import session

    monkeypatch.setattr(session, "_fallback", ["ONNX Runtime cannot start CUDA (test)"])
    open_model(qtbot, window, cnn_path)
    label = window.status.providers_label
    assert label.text() == "ORT: CPU"
    assert label.toolTip() == "ONNX Runtime cannot start CUDA (test)"
