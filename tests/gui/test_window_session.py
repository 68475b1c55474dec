"""What a user's session on real models showed at 1280x720 and 1920x1080 (ddddocr's CRNN,
open_nsfw, PP-OCRv6's recognizer), each on a small model built in code."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontMetricsF, QImage
from PySide6.QtWidgets import QApplication, QStyle, QStyleOptionFrame

from bitlens.core.compare import compare_models
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import Progress
from bitlens.gui.data_dialog import DataDialog
from bitlens.gui.export_size_label import ASK
from bitlens.gui.jobs import DataRequest
from bitlens.gui.layer_table_model import Column
from bitlens.gui.model_compare_view import ModelCompareDialog
from bitlens.gui.search_panel import SearchPanel
from bitlens.gui.text import fmt_bytes
from tests import builders
from tests.core.coded_models import FLAT, OUT, C, K, coded_net, coded_pair
from tests.core.engine_models import small_cnn
from tests.gui.conftest import WAIT_MS, open_model, wait_detail, wait_idle


@pytest.fixture
def lstm_path(tmp_path: Path) -> Path:
    p = tmp_path / "crnn_tail.onnx"
    # 128 hidden x 64 inputs: where the ort-cpu preset runs the LSTM kernel (core/lstm_kernel.py)
    onnx.save(builders.lstm_recognizer(inp=64, hidden=128), p)
    return p


def _cut(view, model, col: int) -> list[str]:
    """The texts of column ``col`` that its cells elide."""
    margin = view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1
    fm = QFontMetricsF(view.font())
    room = view.columnWidth(col) - 1 - 2 * margin  # less the grid line and text margins
    texts = {model.text(row, col) for row in range(model.rowCount())}
    return [t for t in texts if fm.elidedText(t, Qt.TextElideMode.ElideMiddle, room) != t]


def test_table_widens_for_formats_and_kernels_that_come_later(
    qtbot, window, lstm_path: Path
) -> None:
    """Opened in float, the columns were sized for "keep float" once: W8A8 then cut the
    LSTM's "uint8 asym (dynamic)" to "uint8 …namic)", a file's own "int8 sym narrow ch" to
    "int8 …ow ch" at 1280, and an export's "QLinearConv" to "QLi…onv"."""
    window.resize(1280, 720)
    open_model(qtbot, window, lstm_path)
    doc, table = window.document, window.table
    view, model = table.view, table.model
    plan = Plan.preset(doc.info, "W8A8")
    narrow = LayerChoice(parse_format("int8 sym narrow ch"), plan["head"].activation)
    doc.replace_plan(plan.with_choices({"head": narrow}), "W8A8, narrow head")
    wait_idle(qtbot, window)
    assert doc.plan["lstm"].dynamic  # the ort-cpu preset runs the LSTM kernel
    assert model.text(model.row_of("lstm"), Column.ACTIVATION) == "uint8 asym (dynamic)"
    assert model.text(model.row_of("head"), Column.WEIGHT) == "int8 sym narrow ch"
    for col in (Column.WEIGHT, Column.ACTIVATION):
        assert not _cut(view, model, col), col
    doc.set_ran_as(doc.plan, {"lstm": "DynamicQuantizeLSTM", "head": "QGemm"})
    assert model.text(model.row_of("lstm"), Column.RAN_AS) == "DynamicQuantizeLSTM"
    assert not _cut(view, model, Column.RAN_AS)
    # a column the user sized keeps the user's width
    view.horizontalHeader().resizeSection(Column.WEIGHT, 40)
    doc.replace_plan(Plan.preset(doc.info, "W4A8"), "W4A8")
    wait_idle(qtbot, window)
    assert view.columnWidth(Column.WEIGHT) == 40


def test_histogram_titles_name_the_format_as_the_table_does(
    qtbot, window, lstm_path: Path
) -> None:
    """The LSTM's weights are per channel along axis 1: the histogram said "int8 sym ch1"
    where the table says "int8 sym ch"; its dynamic activations read as static."""
    open_model(qtbot, window, lstm_path)
    doc = window.document
    doc.replace_plan(Plan.preset(doc.info, "W8A8"), "W8A8")
    wait_idle(qtbot, window)
    doc.selection.set(["lstm"], "lstm")
    wait_detail(qtbot, window, "lstm", "int8 sym ch")
    detail = window.detail
    assert detail.detail.weights.fmt == "int8 sym ch1"  # bound to the LSTM's channel axis
    weights = detail.titles[detail.weight_plot].text
    assert weights.splitlines()[0] == "weights — int8 sym ch", weights
    assert "channel" in weights.splitlines()[1]  # which channel's grid: said on line two
    act = detail.titles[detail.act_plot].text
    assert act.splitlines()[0] == "input activation — uint8 asym (dynamic)", act
    assert "activations: uint8 asym (dynamic)" in detail.header.text().replace("\u00a0", " ")


def _png_folder(folder: Path, n: int = 4, size: int = 8) -> Path:
    """``n`` small RGB images, each a different colour gradient."""
    folder.mkdir()
    for i in range(n):
        image = QImage(size, size, QImage.Format.Format_RGB32)
        for y in range(size):
            for x in range(size):
                image.setPixelColor(x, y, QColor(30 * i + 20 * x, 25 * y, 200 - 40 * i))
        assert image.save(str(folder / f"img{i}.png"))
    return folder


def test_detail_follows_the_selection_when_data_comes(
    qtbot, window, cnn_path: Path, tmp_path: Path
) -> None:
    """A folder of images for the open model kept the selected row but emptied the layer
    detail ("Select a layer…") until the next edit."""
    open_model(qtbot, window, cnn_path)
    layer = window.document.selection.current
    assert layer is not None  # the first layer, selected on open
    wait_detail(qtbot, window, layer)
    request = DataRequest("images", path=_png_folder(tmp_path / "images"))
    window.controller.open_data(request)
    qtbot.waitUntil(lambda: window.document.session.request == request, timeout=WAIT_MS)
    wait_idle(qtbot, window)
    assert window.document.selection.current == layer
    wait_detail(qtbot, window, layer)
    assert window.detail.header.text().startswith(f"<b>{layer}</b>")


def _w8a8(qtbot, window, path: Path) -> None:
    open_model(qtbot, window, path)
    doc = window.document
    doc.replace_plan(Plan.preset(doc.info, "W8A8"), "W8A8")
    wait_idle(qtbot, window)


def test_unpin_clears_the_pin_note(qtbot, window, cnn_path: Path) -> None:
    """After Unpin A the bar still said "Pinned the current plan as A: change the plan to
    see B's deltas…"."""
    _w8a8(qtbot, window, cnn_path)
    bar = window.message_bar
    assert window.pin_plan_a()
    assert bar.isVisible() and "Pinned" in bar.text.text()
    window.unpin_plan_a()
    assert not bar.isVisible()
    # another message stays: Unpin A hides only its own note
    window.pin_plan_a()
    bar.show_message("Something else.", "warning")
    window.unpin_plan_a()
    assert bar.isVisible() and bar.text.text() == "Something else."


def test_export_tells_its_file_size_and_samples(
    qtbot, window, cnn_path: Path, tmp_path: Path
) -> None:
    """After an export the status bar still asked "Export file: ? (click to predict)"; the
    report said "1 evaluation samples" for 4 images run as one batch."""
    _w8a8(qtbot, window, cnn_path)
    doc = window.document
    out = tmp_path / "cnn.w8a8.onnx"
    with qtbot.waitSignal(window.controller.exported, timeout=WAIT_MS) as blocker:
        window.controller.export_model(out)
    report = blocker.args[0]
    size = window.export_size
    assert size.text() == f"Export file: {fmt_bytes(out.stat().st_size)} ({out.name})"
    assert report.file_bytes == out.stat().st_size
    rows = doc.session.data.summary().evaluation.rows
    runs = report.samples
    assert (rows, runs) == (4, 1)  # random inputs: 8 samples, half evaluate, one batch
    assert "checked on 4 evaluation samples in 1 run." in window.export_report.headline.text()
    window.export_report.close()
    doc.replace_plan(Plan.preset(doc.info, "W4A8"), "W4A8")  # another plan: not known
    assert size.text() == ASK
    doc.undo_stack.undo()  # the exported plan again
    assert size.text().endswith(f"({out.name})")


def test_graph_opens_with_the_selected_layer_in_sight(qtbot, window, tmp_path: Path) -> None:
    """open_nsfw's first conv sits below 30 rows of casts and reshapes of the input: the
    graph opened on those, the selected layer out of sight."""
    nodes, prev = [], "x"
    for i in range(40):
        nodes.append(helper.make_node("Relu", [prev], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    nodes.append(helper.make_node("MatMul", [prev, "W"], ["y"], name="first_layer"))
    g = helper.make_graph(
        nodes, "deep_stem",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])],
        [builders.init("W", builders.weights((8, 8), seed=3))],
    )  # fmt: skip
    path = tmp_path / "deep_stem.onnx"
    onnx.save(builders.model(g), path)
    open_model(qtbot, window, path)
    view = window.graph.view
    assert window.document.selection.current == "first_layer"
    item = view.node_item("first_layer").sceneBoundingRect()
    assert view.visible_rect().contains(item)
    assert view.focused == "first_layer"


def test_status_bar_sizes_an_int8_file_as_stored(qtbot, window, tmp_path: Path) -> None:
    """PP-OCRv6's recognizer stores its weights as int8 codes: at W8A8 (its own grid) the
    status bar said "3.84x" smaller, counting the weights as the float32 they are in memory,
    while the load note said an export saves less."""
    path = tmp_path / "coded.onnx"
    onnx.save(coded_pair(), path)
    _w8a8(qtbot, window, path)
    ev = window.document.evaluation
    # codes of one byte, a float32 scale per channel (conv) and one per tensor with its
    # zero point (fc at "int8 asym", the grid min-max finds for -128..127)
    stored = C * 3 * K * K + 4 * C + FLAT * OUT + 4 + 1
    assert ev.bytes_before == 4 * (C * 3 * K * K + FLAT * OUT)  # float32 in memory
    assert ev.bytes_after == stored  # W8A8 keeps the file's own grids
    label = window.status.size_label
    assert label.text() == f"Weights {fmt_bytes(stored)} in the file → {fmt_bytes(stored)} (1.00×)"
    assert "int8 codes in the file" in label.toolTip()
    assert fmt_bytes(ev.bytes_before) in label.toolTip()  # the float32 figure, said


def test_status_bar_says_float32_where_the_file_grid_is_unknown(
    qtbot, window, tmp_path: Path
) -> None:
    path = tmp_path / "coded.onnx"
    onnx.save(coded_net()[0], path)  # "head" lies on no int8 grid Bitlens reproduces
    _w8a8(qtbot, window, path)
    label = window.status.size_label
    assert label.text().startswith(f"Weights {fmt_bytes(window.document.evaluation.bytes_before)} as float32 → ")
    assert "an export saves less" in label.toolTip()


def test_find_plan_panel_says_the_step_and_stays_narrow(qtbot) -> None:
    """A search on ddddocr's CRNN measured sensitivities for minutes with an empty plot and
    only a percentage in the panel; the step was in the status bar, away from the plot."""
    panel = SearchPanel()
    qtbot.addWidget(panel)
    panel.show()
    narrow = panel.minimumSizeHint().width()
    panel.started()
    panel.show_progress(Progress(3, 40, "sensitivity: /Conv_1 wide activation"))
    assert panel.status.text() == (
        "Searching: at most 0.25 of the float size (default) · sensitivity: /Conv_1 wide "
        "activation"
    )
    panel.value.setValue(0.5)  # a budget typed meanwhile is not the one searched
    panel.show_progress(Progress(4, 40, "sensitivity: " + "/very/long/layer/name" * 20))
    assert panel.status.text().startswith("Searching: at most 0.25 of the float size (default) · ")
    assert panel.minimumSizeHint().width() <= narrow  # the long line is cut, not the window
    panel.finished(None)
    panel.show_progress(Progress(5, 40, "late step"))  # a step reported after the stop
    assert panel.status.text().startswith("Stopped")


def test_model_comparison_gives_its_room_to_the_names(qtbot, cnn_path: Path) -> None:
    """Compare With Model at 1000 px: the last column (the other model's SQNR) stretched to
    a third of the dialog, a coloured bar with its number far at the right."""
    model = from_proto(small_cnn())
    comparison = compare_models(model, from_proto(small_cnn(seed=1)), Plan.preset(model.info, "W8A8"))
    dlg = ModelCompareDialog(comparison)
    qtbot.addWidget(dlg)
    dlg.resize(1000, 500)
    dlg.show()
    qtbot.waitExposed(dlg)
    table, header = dlg.table, dlg.table.horizontalHeader()
    last = table.columnCount() - 1
    assert header.sectionSize(last) <= header.sectionSizeHint(last) + 8
    assert header.sectionSize(0) > header.sectionSizeHint(0)  # the names take the room
    assert sum(header.sectionSize(c) for c in range(last + 1)) <= table.viewport().width()


def _hint_fits(edit) -> bool:
    """Whether a line edit shows its whole placeholder (its contents less Qt's 2 px a side)."""
    opt = QStyleOptionFrame()
    edit.initStyleOption(opt)
    rect = edit.style().subElementRect(QStyle.SubElement.SE_LineEditContents, opt, edit)
    margins = edit.textMargins()
    room = rect.width() - margins.left() - margins.right() - 4
    return edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= room


def test_metric_and_evaluation_data_hints_read_whole(qtbot, window, cnn_path: Path) -> None:
    """At 1280x720 the Find Plan metric box read "built-in (ac…" beside an 80 px "…" button;
    the data dialog's evaluation box read "none: split the da…"."""
    window.resize(1280, 720)
    open_model(qtbot, window, cnn_path)
    window.show_search()
    window._size_docks()
    QApplication.processEvents()
    assert window.search.metric_spec.isVisible()
    assert _hint_fits(window.search.metric_spec), window.search.metric_spec.width()
    dlg = DataDialog(window.document.info, window)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    assert _hint_fits(dlg.eval_path), dlg.eval_path.width()
