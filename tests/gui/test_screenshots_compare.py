"""Screenshots at 1280x720 of the A/B compare, the model comparison, the codes tab and the
HTML report, for a human to look at (into ``screenshots/``). The assertions check what a
picture cannot: each view holds the numbers it should."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from PySide6.QtCore import QRectF, Qt, QUrl
from PySide6.QtGui import QColor, QImage, QPainter, QTextDocument
from PySide6.QtSvg import QSvgRenderer
from PySide6.QtWidgets import QApplication

from bitlens.core.htmlreport import render_html
from bitlens.gui.theme import apply_theme
from tests.gui.conftest import SHOTS, WAIT_MS, screenshot, wait_idle


@pytest.fixture
def light(qapp):
    apply_theme(qapp, "light")
    yield
    apply_theme(qapp, "system")


def _digits_ab(qtbot, window) -> None:
    window.resize(1280, 720)
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    assert window.pin_plan_a()
    window.table.preset_combo.setCurrentText("W4A8")
    window.table.preset_all.click()
    wait_idle(qtbot, window)
    qtbot.waitUntil(lambda: window.document.ab.comparison is not None
                    and len(window.document.ab.comparison.changed) > 0, timeout=WAIT_MS)  # fmt: skip


def test_screenshot_ab_compare_and_codes(qtbot, window, light) -> None:
    window.set_theme("light")
    _digits_ab(qtbot, window)
    layer = "/conv2/Conv"
    window.document.selection.set([layer])
    detail = window.detail
    qtbot.waitUntil(lambda: detail.detail is not None and detail.detail.layer == layer,
                    timeout=WAIT_MS)  # fmt: skip
    detail.sandboxes.setCurrentWidget(detail.codes)
    qtbot.waitUntil(lambda: detail.codes.slice is not None, timeout=WAIT_MS)
    wait_idle(qtbot, window)
    QApplication.processEvents()
    assert window.ab_status.isVisible() and "▼" in window.ab_status.text()
    screenshot(window, "ab_compare_digits_1280_light")
    # the dark picture of the same window (a test of its own opened and compared the sample
    # again for it), then back to light for the codes
    window.set_theme("dark")
    QApplication.processEvents()
    assert window.ab_status.isVisible() and "▼" in window.ab_status.text()
    screenshot(window, "ab_compare_digits_1280_dark")
    window.set_theme("light")
    QApplication.processEvents()
    screenshot(detail, "codes_digits_default_width")
    # widened by the user, as one would to read the codes
    window.resizeDocks([window.docks["detail"]], [620], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    assert detail.codes.table.rowCount() == 64
    screenshot(detail, "codes_digits")


def test_screenshot_model_compare_and_report(qtbot, window, light, tmp_path) -> None:
    _digits_ab(qtbot, window)
    session = window.document.session
    # a "fine-tuned" copy: two layers moved a little, the head renamed
    tuned = onnx.load(session.path)
    rng = np.random.default_rng(0)
    for i, t in enumerate(tuned.graph.initializer):
        if t.name in ("conv2.weight", "fc1.weight"):
            w = numpy_helper.to_array(t)
            moved = w * (1 + 0.05 * rng.standard_normal(w.shape)).astype(np.float32)
            tuned.graph.initializer[i].CopyFrom(numpy_helper.from_array(moved, t.name))
    next(n for n in tuned.graph.node if n.name == "/fc2/Gemm").name = "/head/Gemm"
    onnx.save(tuned, tmp_path / "digits_tuned.onnx")
    with qtbot.waitSignal(window.runner.finished, timeout=WAIT_MS):
        window.compare_with_model(tmp_path / "digits_tuned.onnx")
    qtbot.waitUntil(lambda: window.model_compare is not None, timeout=WAIT_MS)
    dlg = window.model_compare
    dlg.resize(1000, 420)
    QApplication.processEvents()
    assert dlg.table.rowCount() == len(session.info.layers) - 1
    assert "only in the other</b>: /head/Gemm" in dlg.summary.text()
    screenshot(dlg, "model_compare_digits")
    html = render_html(window.report_content())
    (tmp_path / "r.html").write_text(html, encoding="utf-8")
    _render_report(html, SHOTS / "report_digits.png")


def _render_report(html: str, out) -> None:
    """The report as a browser would lay it out, near enough to look at: the text and tables
    through QTextDocument, each inline SVG chart through QSvgRenderer."""
    doc = QTextDocument()
    for i, svg in enumerate(re.findall(r"<svg.*?</svg>", html, flags=re.S)):
        renderer = QSvgRenderer(svg.encode())
        assert renderer.isValid()
        img = QImage(renderer.defaultSize(), QImage.Format.Format_ARGB32)
        img.fill(QColor("white"))
        p = QPainter(img)
        renderer.render(p)
        p.end()
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(f"chart{i}"), img)
        html = html.replace(svg, f"<img src='chart{i}'>", 1)
    doc.setHtml(html)
    doc.setTextWidth(1280)
    h = min(int(doc.size().height()), 4000)
    page = QImage(1280, h, QImage.Format.Format_ARGB32)
    page.fill(QColor("white"))
    p = QPainter(page)
    doc.drawContents(p, QRectF(0, 0, 1280, h))
    p.end()
    SHOTS.mkdir(exist_ok=True)
    assert page.save(str(out))
