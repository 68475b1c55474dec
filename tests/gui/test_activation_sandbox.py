"""Dynamic activation quantization in the layer sandbox, next to static with both errors
(issue 15, item 11); the dynamic error is checked against ONNX Runtime's own
DynamicQuantizeLinear -> DequantizeLinear."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.plan import ACTIVATION_CHOICES
from tests.core.engine_models import small_cnn
from tests.core.ort_dynamic import dynamic_qdq_sqnr
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def _float_r1(feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """conv2's input (relu1's output) from a plain ORT session of the float model."""
    m = small_cnn()
    m.graph.output.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return [sess.run(["r1"], f)[0] for f in feeds]


def _double_click(table, row: int, col: int) -> None:
    table.cellDoubleClicked.emit(row, col)  # as the other sandbox tests do (offscreen)


def test_sandbox_shows_static_and_dynamic_and_applies_either(
    qtbot, window, cnn_path: Path
) -> None:
    open_model(qtbot, window, cnn_path)
    doc = window.document
    doc.selection.set(["conv2"], "conv2")
    detail = window.detail
    qtbot.waitUntil(
        lambda: bool(detail.detail and detail.detail.layer == "conv2" and detail.detail.complete),
        timeout=WAIT_MS,
    )
    box = detail.act_sandbox
    detail.sandboxes.setCurrentWidget(box)
    assert [r.format for r in box.rows] == list(ACTIVATION_CHOICES)
    row = next(i for i, r in enumerate(box.rows) if r.format == "uint8 asym")
    r = box.rows[row]
    assert box.item(row, 1).text().endswith("dB") and box.item(row, 2).text().endswith("dB")
    data = doc.session.data
    values = doc.session.engine.activation_feeds("conv2", data.evaluation)
    # the engine's float reference is conv2's input as a plain ORT session computes it
    # (up to float reordering), and quantized as DynamicQuantizeLinear does, bit for bit
    for mine, ref in zip(values, _float_r1([data.samples[i] for i in data.evaluation]),
                         strict=True):  # fmt: skip
        np.testing.assert_allclose(mine, ref, rtol=1e-5, atol=1e-6)
    assert r.dynamic.sqnr_db == dynamic_qdq_sqnr(values)
    per_channel = next(i for i, x in enumerate(box.rows) if x.format == "uint8 asym ch")
    assert box.rows[per_channel].dynamic is None and box.item(per_channel, 2).text() == "—"
    weight_before = doc.plan["conv2"].weight
    _double_click(box, row, 2)  # the dynamic error: dynamic activations
    choice = doc.plan["conv2"]
    assert choice.dynamic and choice.activation.name == "uint8 asym"
    assert choice.weight == weight_before
    wait_idle(qtbot, window)
    assert not doc.evaluation_failed
    qtbot.waitUntil(lambda: bool(detail.detail and detail.detail.complete), timeout=WAIT_MS)
    assert box.item(row, 2).font().bold() and not box.item(row, 1).font().bold()
    _double_click(box, row, 1)  # the static error: back to a calibrated range
    assert not doc.plan["conv2"].dynamic
    _double_click(box, per_channel, 2)  # no dynamic variant: nothing happens
    assert doc.plan["conv2"].activation.name == "uint8 asym"
