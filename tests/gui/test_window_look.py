"""What a user saw at 1280x720 driving the window on real models (session 13: open_nsfw,
ddddocr's CRNN, paraphrase-MiniLM-L3-v2, nudenet), each on a small model built in code."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QApplication, QStyle

from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.search import Budget, Point, SearchResult
from bitlens.gui.search_panel import SearchPanel
from bitlens.gui.theme import dark_palette, light_palette
from tests import builders
from tests.core.engine_models import small_cnn
from tests.gui.conftest import open_model, wait_detail, wait_idle

OUTPUT = "scores"  # open_nsfw's "4195": its figures are as wide as the data warning


def _classifier() -> onnx.ModelProto:
    """x [1, 64] -> Gemm W [64, 256] -> Relu -> Gemm W2 [256, 64] -> Softmax -> OUTPUT [1, 64]

    Class scores (the status bar gives top-1 agreement) under a long output name, and a
    weight whose shape and type ("256×64 float32 (constant)") outgrow a 1280 px window's
    properties pane."""
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "W"], ["h"], name="fc1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Gemm", ["r", "W2"], ["z"], name="fc2"),
         helper.make_node("Softmax", ["z"], [OUTPUT], name="softmax", axis=1)],
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 64])],
        [builders.init("W", builders.weights((64, 256), seed=1)),
         builders.init("W2", builders.weights((256, 64), seed=2))],
    )  # fmt: skip
    return builders.model(g)


@pytest.fixture
def classifier_1280(qtbot, window, tmp_path: Path):
    """The window at 1280x720 on the classifier at W8A8, random inputs (its sizes are fixed)."""
    path = tmp_path / "classifier.onnx"
    onnx.save(_classifier(), path)
    window.resize(1280, 720)
    open_model(qtbot, window, path)
    window._size_docks()
    doc = window.document
    doc.replace_plan(Plan.preset(doc.info, "W8A8"), "W8A8")
    wait_idle(qtbot, window)
    QApplication.processEvents()
    return window


def test_graph_properties_wrap_values_to_their_column_1280(qtbot, classifier_1280) -> None:
    """At 1280x720 the value column is about 110 px: open_nsfw's "512×128×1×1 float32
    (constant)" showed "512×128×1×1 float…", every row one line high."""
    window = classifier_1280
    props = window.graph.properties
    window.graph.find_box.edit.setText("fc2")
    qtbot.waitUntil(lambda: props.row_text("Node", "name") == "fc2", timeout=5000)
    QApplication.processEvents()
    # the text's margins either side, as Qt's styles paint it (qcommonstyle.cpp,
    # viewItemDrawText)
    margin = props.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, props) + 1
    room = props.columnWidth(1) - 2 * margin
    fm = props.fontMetrics()
    wrapped = 0
    for i in range(props.topLevelItemCount()):
        top = props.topLevelItem(i)
        for j in range(top.childCount()):
            row = top.child(j)
            text = row.text(1)
            need = fm.boundingRect(QRect(0, 0, room, 10_000), Qt.TextFlag.TextWordWrap, text)
            assert props.visualItemRect(row).height() >= need.height(), text
            wrapped += need.height() > fm.height()
    assert props.row_text("Inputs", "W2") == "256×64 float32 (constant)"
    assert wrapped  # the weight's line is wider than the column: it took more lines
    # a narrower pane lays the rows out again, taller
    row = next(top.child(j) for i in range(props.topLevelItemCount())
               if (top := props.topLevelItem(i)).text(0) == "Inputs"
               for j in range(top.childCount()) if top.child(j).text(0) == "W2")  # fmt: skip
    before = props.visualItemRect(row).height()
    props.setColumnWidth(0, props.columnWidth(0) + props.columnWidth(1) // 2)
    qtbot.waitUntil(lambda: props.visualItemRect(row).height() > before, timeout=5000)


def test_status_bar_and_detail_header_keep_their_figures_whole_1280(
    qtbot, classifier_1280
) -> None:
    """open_nsfw at 1280x720, idle: "output 4195: 26.1 dB · top-1 agreement 100.…" beside
    "⚠ Random inputs: errors on noise can misl…". The warning gives way, to its short form.
    One window for both checks (CI time): the layer detail's header is read at the end."""
    window = classifier_1280
    status = window.status
    out, data = status.output_label, status.data_label
    assert out.text().startswith(f"output {OUTPUT}: ") and "top-1 agreement" in out.text()
    assert not out.elided, (out.width(), out.text())
    assert data.text().startswith("⚠ Random inputs")
    if data.elided:  # whole in its tooltip, said short where it is cut
        short = "⚠ Random inputs"
        assert data.shown_text() in (short, short[: len(data.shown_text()) - 1] + "…")
        # and takes no more room than that: MiniLM's output line lost "+3 more outputs"
        # beside a short warning that kept its whole text's width
        assert data.width() <= data.short_width(), (data.width(), data.short_width())
        assert data.text() in data.toolTip()
    status.set_busy("Finding a plan (at most 0.25 of the float size)", quiet=False,
                    cancellable=True)  # fmt: skip
    QApplication.processEvents()
    # a job's words take the room: the error figure still shows
    assert out.shown_text().startswith(out.text().split(" · ")[0])
    status.set_idle()
    QApplication.processEvents()
    assert not out.elided
    # the layer detail's header (same window): it broke "20.2 | KiB in float" and
    # "keep | float" across lines; it wraps between its parts only
    window.document.selection.set(["fc2"], "fc2")
    wait_detail(qtbot, window, "fc2")
    text = window.detail.header.text()
    head, *parts = text.split("<br>")[0].split(" · ")
    assert head == "<b>fc2</b>"
    assert [p.split(":")[0] for p in parts[:2]] == ["weights", "activations"]
    assert parts[2].endswith("in\u00a0float") and "64.0\u00a0KiB" in parts[2]
    assert not any(" " in p for p in parts), parts  # only non-breaking spaces inside a part
    # a searched point applied says where each error was measured (see the test below)
    doc = window.document
    p = Point(Plan.preset(doc.info, "W4A8"), 40_000, 40_000, 0.08, None, "search")
    window.search.finished(_result(p, (p,)))
    window.apply_search_point(p)
    assert window.message_bar.text.text().endswith(
        "The plot's error is on the 3 of 4 evaluation rows it fits; the status bar's on all "
        "of them."
    ), window.message_bar.text.text()
    wait_idle(qtbot, window)


def _presets(errors: tuple[float, float]) -> list[Point]:
    plan = Plan.float(from_proto(small_cnn()).info)
    return [Point(plan, size, size, error, None, label)
            for label, size, error in (("float", 23_000_000, 0.0), ("W8A8", 6_000_000, errors[0]),
                                       ("W4A8", 3_200_000, errors[1]))]  # fmt: skip


def _contrast(a: QColor, b: QColor) -> float:
    """WCAG 2.1's contrast ratio (https://www.w3.org/TR/WCAG21/#dfn-contrast-ratio)."""

    def lum(c: QColor) -> float:
        ch = [x / 255 for x in (c.red(), c.green(), c.blue())]
        lin = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def axis_labels(plot) -> list[str]:
    """The error axis's labels within the search plot's view."""
    axis, view = plot.plot.getAxis("left"), plot.plot.getViewBox()
    lo, hi = view.viewRange()[1]
    return [
        text
        for spacing, values in axis.tickValues(lo, hi, 150)
        for text in axis.tickStrings([v for v in values if lo <= v <= hi], 1.0, spacing)
        if text
    ]


def test_search_panel_stopped_with_only_presets_says_no_plan_and_labels_its_axis(qtbot) -> None:
    """open_nsfw's search, stopped in its sensitivities: the plot held W8A8 and W4A8 at
    errors between 0.05 and 0.06, its axis read one number (0.05), the panel said "The plans
    tried so far stay on the plot" over a plot with none, and in the dark theme the
    presets' names were brick red on near-black (2.7:1)."""
    panel = SearchPanel()
    qtbot.addWidget(panel)
    panel.resize(1280, 230)
    panel.show()
    panel.started()
    for p in _presets((0.057, 0.0505)):
        panel.add_point(p)
    panel.finished(None)
    assert panel.status.text() == "Stopped before its first plan (the presets stay on the plot)."
    plot = panel.plot
    view = plot.plot.getViewBox()

    def fitted() -> bool:
        lo, hi = view.viewRange()[1]
        return lo < math.log10(0.0505) and math.log10(0.057) < hi < math.log10(0.065)

    qtbot.waitUntil(fitted, timeout=5000)
    lo, hi = view.viewRange()[1]
    shown = axis_labels(plot)
    assert len(shown) >= 2 and len(set(shown)) == len(shown), shown
    assert all(10**lo <= float(t) <= 10**hi for t in shown), shown
    for theme in (light_palette(), dark_palette()):
        plot.setPalette(theme)
        background = plot.plot.backgroundBrush().color()
        for label in plot._labels:
            assert _contrast(label.color, background) >= 4.5, (label.color.getRgb(), background)



def _result(p: Point, refs: tuple[Point, ...]) -> SearchResult:
    """A finished search of one plan, ``p``, that held back one of 4 evaluation rows."""
    return SearchResult(
        Budget(size_ratio=0.25), best=p, front=(p,), tried=(p,), references=refs,
        sensitivities=(), evaluations=9, metric_name=None, float_bytes=23_000_000,
        wide_layers=(), seed=0, eval_rows=4, check_rows=(2,),
    )  # fmt: skip


def test_search_panel_says_its_errors_are_on_the_rows_it_fits(qtbot) -> None:
    """nudenet: a front point read "error 0.04356 (27.2 dB)" and, applied, the status bar
    27.6 dB: the search measures the evaluation rows it does not hold back, nothing said so."""
    panel = SearchPanel()
    qtbot.addWidget(panel)
    refs = _presets((0.057, 0.0505))
    plan = refs[0].plan
    p = Point(plan, 4_000_000, 4_000_000, 0.04356, None, "search")
    result = _result(p, tuple(refs))
    panel.started()
    panel.finished(result)
    panel._on_hovered(p)
    assert panel.status.text().startswith(
        "search: 3.8 MiB, error 0.04356 (27.2 dB) on the 3 of 4 evaluation rows it fits"
    ), panel.status.text()
    panel.finished(replace(result, check_rows=()))  # none held back: all rows, said as before
    panel._on_hovered(p)
    assert panel.status.text().startswith("search: 3.8 MiB, error 0.04356 (27.2 dB) …")
