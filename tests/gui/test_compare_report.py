"""Plan A/B, Compare With Model and Save Report driven through the window (offscreen; file
dialogs are monkeypatched, nothing modal opens)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PySide6.QtWidgets import QFileDialog

from bitlens.gui.ab_compare import WORSE
from bitlens.gui.layer_table_model import Column
from bitlens.gui.series import error_series
from bitlens.gui.text import FLOAT_LABEL
from tests.core.engine_models import small_cnn
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def _set_weight(qtbot, window, layer: str, fmt: str) -> None:
    model = window.table.model
    model.setData(model.index(model.row_of(layer), Column.WEIGHT), fmt)
    wait_idle(qtbot, window)


def test_pin_a_then_change_shows_b_next_to_a(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    table = window.table
    assert table.view.isColumnHidden(Column.DELTA_ERROR)  # nothing pinned: no Δ columns
    _set_weight(qtbot, window, "conv2", "int8 sym ch")
    ev_a = window.document.evaluation
    assert window.act_pin.isEnabled()
    window.act_pin.trigger()
    assert window.document.ab.pinned and window.act_pin.isChecked()
    assert not table.view.isColumnHidden(Column.DELTA_ERROR)
    _set_weight(qtbot, window, "conv2", "int2 sym ch")
    qtbot.waitUntil(lambda: window.document.ab.comparison is not None
                    and window.document.ab.comparison.changed == ("conv2",), timeout=WAIT_MS)
    m = table.model
    row = m.row_of("conv2")
    window.document.error_kind.set("weight")
    text = m.data(m.index(row, Column.DELTA_ERROR))
    ev_b = window.document.evaluation
    want = ev_b.layers["conv2"].weight.sqnr_db - ev_a.layers["conv2"].weight.sqnr_db
    assert want < 0 and text == f"−{abs(want):.1f} dB ▼"
    assert m.data(m.index(row, Column.DELTA_ERROR), 8) == WORSE  # BackgroundRole
    size = m.data(m.index(row, Column.DELTA_BYTES))
    assert size.startswith("−") and size.endswith("▲")  # int2 is smaller: better
    assert m.data(m.index(m.row_of("conv1"), Column.DELTA_ERROR)).startswith("+0.0")
    # both series in the plots: A's bars are A's own evaluation
    plots = window.plots
    assert plots.a_error_bars.isVisible()
    want_a = error_series(ev_a, window.document.info.layer_names, "sqnr", "weight").values
    np.testing.assert_allclose(plots.a_error_bars.opts["height"], want_a[np.isfinite(want_a)])
    assert "A" in plots.size_legend.text()
    # both output metrics in the status bar
    status = window.ab_status
    assert status.isVisible() and status.text().startswith("A→B ") and "▼" in status.text()
    out = window.document.ab.comparison.outputs[0]
    assert f"{out.sqnr_a:.1f} dB→{out.sqnr_b:.1f} dB ▼" in status.text()
    assert f"{out.delta_db:+.1f}".replace("-", "−") in status.toolTip()
    window.act_unpin.trigger()
    assert not window.document.ab.pinned and table.view.isColumnHidden(Column.DELTA_ERROR)
    assert not plots.a_error_bars.isVisible() and not status.isVisible()


def test_toolbar_button_pins_and_opening_another_model_unpins(qtbot, window, cnn_path, mlp_path):
    open_model(qtbot, window, cnn_path)
    assert window.pin_button.defaultAction() is window.act_pin
    window.pin_button.click()
    assert window.document.ab.pinned
    open_model(qtbot, window, mlp_path)
    assert not window.document.ab.pinned and not window.act_pin.isChecked()
    view = window.table.view
    assert view.isColumnHidden(Column.DELTA_ERROR) and view.isColumnHidden(Column.DELTA_BYTES)
    open_model(qtbot, window, cnn_path)  # a model reset with nothing pinned keeps them hidden
    assert view.isColumnHidden(Column.DELTA_ERROR) and view.isColumnHidden(Column.DELTA_BYTES)
    header = view.horizontalHeader()
    assert header.visualIndex(Column.DELTA_ERROR) == header.visualIndex(Column.ACCUMULATED) + 1


def test_compare_with_model_matches_layers_by_name(qtbot, window, cnn_path, tmp_path, monkeypatch):
    open_model(qtbot, window, cnn_path)
    other = small_cnn()
    for i, t in enumerate(other.graph.initializer):
        if t.name == "W2":
            other.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(t) * 0.5, "W2"))
    other.graph.node[-1].name = "head"
    path = tmp_path / "tuned.onnx"
    onnx.save(other, path)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(path), "")))
    window.act_compare_model.trigger()
    qtbot.waitUntil(lambda: window.model_compare is not None and window.model_compare.isVisible(),
                    timeout=WAIT_MS)
    dlg = window.model_compare
    assert dlg.table.rowCount() == 2  # conv1, conv2; fc and head are unmatched
    assert "only in this model</b>: fc" in dlg.summary.text()
    assert "only in the other</b>: head" in dlg.summary.text()
    assert dlg.table.item(0, 4).text() == "exact"  # conv1 is the same
    assert dlg.table.item(1, 3).text() == "0.5"  # relative L2 of halving every weight
    dlg.table.cellClicked.emit(1, 0)
    assert window.document.selection.current == "conv2"
    html = window.save_report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Weights against another model" in html and "tuned.onnx" in html


class _Closed(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br", "img"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag


def test_save_report_writes_html_and_never_over_an_input(qtbot, window, cnn_path, tmp_path,
                                                         monkeypatch):  # fmt: skip
    open_model(qtbot, window, cnn_path)
    window.act_pin.trigger()
    _set_weight(qtbot, window, "fc", "int4 sym ch")
    qtbot.waitUntil(lambda: window.document.ab.comparison.changed == ("fc",), timeout=WAIT_MS)
    out = tmp_path / "report.html"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    window.act_save_report.trigger()
    html = out.read_text(encoding="utf-8")
    p = _Closed()
    p.feed(html)
    assert p.stack == []
    assert "Bitlens report: cnn.onnx" in html and "against the pinned plan A" in html
    assert "random inputs" in html and len(re.findall(r"<svg", html)) == 2
    before = cnn_path.read_bytes()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(cnn_path), "")))  # fmt: skip
    window.act_save_report.trigger()
    assert window.message_bar.isVisible() and window.message_bar.level == "error"
    assert cnn_path.read_bytes() == before
    assert window.document.is_open  # the window stays usable



def test_codes_tab_shows_the_layers_codes(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    _set_weight(qtbot, window, "conv2", "int4 sym ch")
    window.document.selection.set(["conv2"])
    detail = window.detail
    qtbot.waitUntil(lambda: detail.detail is not None and detail.detail.layer == "conv2",
                    timeout=WAIT_MS)  # fmt: skip
    detail.sandboxes.setCurrentWidget(detail.codes)
    codes = detail.codes
    qtbot.waitUntil(lambda: codes.slice is not None and codes.layer == "conv2", timeout=WAIT_MS)
    s = codes.slice
    assert s.format == "int4 sym ch0" and s.total == 16 * 8 * 3 * 3
    assert codes.table.rowCount() == 64
    w = window.document.session.model.weight("W2")
    r = s.rows[5]
    # the row is the weight's own value, its int4 code and the affine reconstruction
    assert r.value == float(w[r.index]) and -8 <= r.code <= 7 and r.zero_point == 0
    assert r.dequantized == pytest.approx(r.scale * r.code, rel=1e-6)
    assert codes.table.item(5, 2).text() == f"{r.code:.0f}"
    assert "scale · (q − zero point)" in codes.header.text()
    assert "elements 0–63 of 1152" in codes.header.toolTip()
    codes.start.setValue(100)  # page on
    qtbot.waitUntil(lambda: codes.slice.start == 100, timeout=WAIT_MS)
    assert codes.table.item(0, 0).text() == str(list(codes.slice.rows[0].index))
    _set_weight(qtbot, window, "conv2", FLOAT_LABEL)  # kept float: says so instead of codes
    qtbot.waitUntil(lambda: "keeps its weights in float" in codes.header.text(), timeout=WAIT_MS)
    assert codes.table.rowCount() == 0


def test_report_carries_the_fidelity_verdict_of_this_plans_export(qtbot, window, cnn_path,
                                                                   tmp_path) -> None:  # fmt: skip
    open_model(qtbot, window, cnn_path)
    window.table.preset_combo.setCurrentText("W8A8")
    window.table.preset_all.click()
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.controller.exported, timeout=60_000) as blocker:
        window.controller.export_model(tmp_path / "cnn.quant.onnx")
    wait_idle(qtbot, window)
    report = blocker.args[0]
    html = window.save_report(tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Export fidelity" in html and "cnn.quant.onnx" in html
    assert ("<span class='pass'>passed</span>" in html) == report.passed
    assert f"{report.file_bytes} B" in html
    _set_weight(qtbot, window, "fc", "int4 sym ch")  # another plan: that export is not its
    html = window.save_report(tmp_path / "r2.html").read_text(encoding="utf-8")
    assert "Export fidelity" not in html


def test_compare_with_an_already_quantized_model_says_so(qtbot, window, cnn_path, tmp_path,
                                                         monkeypatch) -> None:  # fmt: skip
    """A dynamically quantized copy (ConvInteger, MatMulInteger) has no float layer to match:
    the window says what the other model is instead of showing an empty table silently."""
    from onnxruntime.quantization import quantize_dynamic

    open_model(qtbot, window, cnn_path)
    quantized = tmp_path / "cnn.dyn.onnx"
    quantize_dynamic(str(cnn_path), str(quantized))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(quantized), "")))  # fmt: skip
    window.act_compare_model.trigger()
    qtbot.waitUntil(lambda: window.model_compare is not None, timeout=WAIT_MS)
    text = window.model_compare.summary.text()
    assert "already quantized" in text
    assert "only in this model</b>" in text
