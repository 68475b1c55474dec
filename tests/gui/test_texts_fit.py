"""At 1280 px wide the status bar and the error-kind explanation fit: long lines end in
"…" with the whole text in their tooltip, instead of running off the window (issue 15)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFontMetricsF
from PySide6.QtWidgets import QApplication, QComboBox, QStyle, QStyleOptionComboBox

from bitlens.gui.elided_label import ElidedLabel
from bitlens.gui.layer_table_model import Column
from tests.gui.conftest import WAIT_MS, open_model, wait_detail, wait_idle


def test_status_bar_and_explanations_fit_1280(qtbot, window, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)  # random inputs: the long orange warning shows
    window.resize(1280, 720)
    QApplication.processEvents()
    assert window.width() == 1280
    status = window.status
    labels = [status.size_label, status.bits_label, status.output_label, status.data_label,
              status.providers_label]  # fmt: skip
    assert "Random inputs" in status.data_label.text()
    bar = window.statusBar()
    for label in labels:
        right = label.mapTo(window, label.rect().topRight()).x()
        assert right <= bar.width(), (label.objectName(), right)
        if label.elided:
            assert label.shown_text().endswith("…")
            assert label.text() in label.toolTip()  # the whole line, on hover
    # the short figures are never cut
    for label in (status.size_label, status.bits_label, status.providers_label):
        assert not label.elided, label.text()
    help_line = window.plots.kind_help
    assert isinstance(help_line, ElidedLabel)
    window.docks["plots"].raise_()
    QApplication.processEvents()
    plots = window.plots
    assert help_line.mapTo(plots, help_line.rect().topRight()).x() <= plots.width()
    if help_line.elided:  # the accumulated-error explanation is near 1280's limit
        assert help_line.shown_text().endswith("…")
        assert window.document.error_kind.explanation in help_line.toolTip()
    else:
        assert help_line.shown_text() == window.document.error_kind.explanation


def test_elided_label_keeps_its_own_tooltip(qtbot) -> None:
    label = ElidedLabel("a fairly long line of status text that will not fit")
    qtbot.addWidget(label)
    label.setToolTip("what it means")
    label.resize(60, 20)
    label.show()
    assert label.elided and label.toolTip().startswith(label.text())
    assert label.toolTip().endswith("what it means")
    label.resize(2000, 20)
    assert not label.elided and label.toolTip() == "what it means"
    assert label.minimumSizeHint().width() < 100  # it never forces its parent wider
    whole = ElidedLabel("12.00 bits/weight", shrink=False)
    qtbot.addWidget(whole)
    assert whole.minimumSizeHint().width() >= whole.fontMetrics().horizontalAdvance(whole.text())


def _text_room(combo: QComboBox) -> int:
    """The width a combo box has for its current text (its style's edit field)."""
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    field = combo.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox, opt, QStyle.SubControl.SC_ComboBoxEditField, combo
    )
    return field.width()


def test_graph_colour_filter_and_histogram_titles_fit_1280(qtbot, window, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)
    window.resize(1280, 720)
    QApplication.processEvents()
    window._size_docks()
    QApplication.processEvents()
    # the error kind's name whole in the graph's colour box and the plots' box
    for box in (window.graph.metric_box, window.plots.source):
        for i in range(box.count()):
            box.setCurrentIndex(i)
            QApplication.processEvents()
            need = box.fontMetrics().horizontalAdvance(box.currentText())
            assert need <= _text_room(box), (box.objectName(), box.currentText())
    assert window.graph.metric_box.currentText() == "weight"  # the last one set, shared
    window.graph.metric_box.setCurrentIndex(window.graph.metric_box.findData("accumulated"))
    # the graph's toolbar inside its pane
    pane = window.graph
    for b in pane.buttons.values():
        assert b.mapTo(pane, b.rect().topRight()).x() <= pane.width(), b.text()
    # the layer filter's placeholder whole, beside its clear button
    edit = window.table.filter
    room = edit.width() - edit.height() - 8  # the clear button is about a line high
    assert edit.fontMetrics().horizontalAdvance(edit.placeholderText()) <= room
    assert "name, op or format" in edit.toolTip()
    # the histogram titles: cut with "…" to their plot, whole in its tooltip
    detail = window.detail
    window.document.selection.set(["conv2"])
    qtbot.waitUntil(lambda: bool(detail.detail and detail.detail.layer == "conv2"
                                 and detail.detail.complete), timeout=WAIT_MS)  # fmt: skip
    window.docks["detail"].raise_()
    window.resizeDocks([window.docks["detail"]], [230], Qt.Orientation.Horizontal)
    QApplication.processEvents()
    plot = detail.weight_plot
    title = detail.titles[plot]
    long_note = "input activation — the calibration range of every sample, all 4096 of them"
    title.set([(long_note, 9), ("grid shown: channel 402 of 512 (widest range)", 8)],
              QColor("black"), "weight tensor W2")  # fmt: skip
    assert title.elided and all(s == t or s.endswith("…") for s, t in
                                zip(title.shown, title.text.split("\n"), strict=True))  # fmt: skip
    label = plot.getPlotItem().titleLabel.item
    assert label.boundingRect().width() <= plot.width(), title.shown
    assert plot.toolTip().startswith(long_note) and plot.toolTip().endswith("weight tensor W2")
    window.resize(1920, 1080)
    window.resizeDocks([window.docks["detail"]], [800], Qt.Orientation.Horizontal)
    QApplication.processEvents()  # wide again: whole, and the tooltip is the plot's own
    assert not title.elided, (plot.width(), title.shown) and plot.toolTip() == "weight tensor W2"


def test_graph_properties_value_column_stays_in_its_pane_1280(qtbot, window) -> None:
    window.resize(1280, 720)
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    window._size_docks()
    window.graph.find_box.edit.setText("conv2")  # a node with long input names
    QApplication.processEvents()
    props = window.graph.properties
    assert props.row_text("Node", "op type") == "Conv"
    room = props.viewport().width()
    assert props.columnWidth(0) <= 0.6 * room  # the names give the values room
    assert props.columnViewportPosition(1) + props.columnWidth(1) <= room  # no value cut off
    wide = props.topLevelItem(0)  # its long cells say all in their tooltips
    # the node row shows the short layer name; its tooltip the whole name
    assert wide.toolTip(1) == props.details.name and wide.text(1) in props.details.name


def _wide_layer_model(path) -> None:
    """One MatMul of 512x576 weights: 576.0 KiB in fp16, the widest byte counts the
    weight sandbox shows (a ResNet-50's layers gave the same)."""
    import onnx
    from onnx import TensorProto, helper

    from tests.builders import init, model, weights

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="wide")],
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 576])],
        [init("w", weights((512, 576), seed=3, channel_axis=1))],
    )
    onnx.save(model(graph), path)


def test_weight_sandbox_never_scrolls_sideways(qtbot, window, tmp_path) -> None:
    """At 1280x720 the Ratio column needed a horizontal scroll; the format name now takes
    what the numbers leave, elided, down to a narrower pane than the default."""
    path = tmp_path / "wide.onnx"
    _wide_layer_model(path)
    window.resize(1280, 720)
    open_model(qtbot, window, path)
    window.reset_layout()  # the panes as the window shares them out at this size
    QApplication.processEvents()
    window.document.selection.set(["wide"])
    wait_detail(qtbot, window, "wide")
    sandbox = window.detail.sandbox
    dock = window.docks["detail"]
    for width in (dock.width(), 330):
        window.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
        QApplication.processEvents()
        assert dock.width() <= 400
        assert sandbox.rowCount() > 10
        assert "KiB" in sandbox.item(0, 3).text()
        header = sandbox.horizontalHeader()
        assert header.length() <= sandbox.viewport().width(), (width, header.length())
        assert not sandbox.horizontalScrollBar().isVisible()
        last = header.count() - 1
        assert header.sectionViewportPosition(last) + header.sectionSize(last) <= (
            sandbox.viewport().width()
        )


def test_layer_table_leading_columns_fit_1920(qtbot, window) -> None:
    """At 1920x1080 the size column (the last before the reference columns op, shape,
    params) sat under the vertical scroll bar; and no fitted cell is elided."""
    from bitlens.gui.layer_table_model import Column

    window.resize(1920, 1080)
    window.open_sample("digits_cnn")
    wait_idle(qtbot, window)
    window.reset_layout()  # the panes as the window shares them out at this size
    QApplication.processEvents()
    view, model = window.table.view, window.table.model
    right = view.columnViewportPosition(Column.SIZE) + view.columnWidth(Column.SIZE)
    assert right <= view.viewport().width(), (right, view.viewport().width())
    margin = view.style().pixelMetric(QStyle.PixelMetric.PM_FocusFrameHMargin, None, view) + 1
    fm = QFontMetricsF(view.font())
    for col in (Column.OP, Column.SIZE, Column.BOPS):
        room = view.columnWidth(col) - 1 - 2 * margin  # less the grid line and text margins
        for row in range(model.rowCount()):
            text = model.text(row, col)
            assert fm.elidedText(text, Qt.TextElideMode.ElideMiddle, room) == text, (col, text)


def test_graph_legend_names_the_float_swatch_as_far_as_it_fits(qtbot) -> None:
    """At 1280x720 the float swatch stood without a word; now "float" at least."""
    from bitlens.gui.graph_legend import GraphLegend

    legend = GraphLegend()
    qtbot.addWidget(legend)
    legend.show()
    fm = legend.fontMetrics()
    widths = {
        "float / no result": legend.sizeHint().width(),
        "float": legend.minimumSizeHint().width() + fm.horizontalAdvance("float"),
        "": legend.minimumSizeHint().width(),
    }
    for expected, width in widths.items():
        legend.resize(width, legend.sizeHint().height())
        legend.grab()  # paints it
        assert legend.float_words == expected, (width, legend.float_words)


def test_codes_tab_and_node_properties_fit_1280(qtbot, window, cnn_path) -> None:
    """At 1280x720 the Codes tab's line ends in "…" (whole in its tooltip) instead of being
    cut mid-word, its table needs no sideways scroll, and the properties pane's own words
    ("quantizable layer" read "quanti… layer") stay whole."""
    open_model(qtbot, window, cnn_path)
    model = window.table.model
    model.setData(model.index(model.row_of("conv2"), Column.WEIGHT), "int4 sym ch")
    wait_idle(qtbot, window)
    window.resize(1280, 720)
    QApplication.processEvents()
    window._size_docks()
    window.docks["detail"].raise_()
    QApplication.processEvents()
    window.document.selection.set(["conv2"])
    wait_detail(qtbot, window, "conv2")
    detail = window.detail
    detail.sandboxes.setCurrentWidget(detail.codes)
    codes = detail.codes
    qtbot.waitUntil(lambda: codes.slice is not None and codes.layer == "conv2", timeout=WAIT_MS)
    QApplication.processEvents()
    header = codes.header
    assert isinstance(header, ElidedLabel)
    assert header.mapTo(codes, header.rect().topRight()).x() <= codes.width()
    assert header.elided and header.shown_text().endswith("…")  # 1280: too long for the row
    assert header.toolTip().startswith(header.text()) and codes.slice.formula in header.text()
    table = codes.table
    assert table.horizontalScrollBar().maximum() == 0  # every shown column in the pane
    for j in range(1, 8):  # the numbers are never cut
        if not table.isColumnHidden(j):
            assert table.columnWidth(j) >= table.sizeHintForColumn(j), j
    assert table.isColumnHidden(5)  # Level: lookup formats only, every row empty here
    r = codes.slice.rows[0]  # 64 rows of one output channel: one scale, said once above
    assert table.isColumnHidden(3) and f"scale {table.item(0, 3).text()}" in header.text()
    assert header.text().startswith(r.group) and table.isColumnHidden(8)
    codes.count.setCurrentIndex(codes.count.findData(256))  # four channels: four scales
    qtbot.waitUntil(lambda: codes.slice is not None and len(codes.slice.rows) == 256)
    assert not table.isColumnHidden(3) and not table.isColumnHidden(8)
    window.graph.find_box.edit.setText("conv2")
    QApplication.processEvents()
    props = window.graph.properties
    assert props.row_text("Node", "quantizable") == "yes"
    # a row of a section sits two indentations in (the root is decorated), then its text
    need = props.fontMetrics().horizontalAdvance("quantizable") + 2 * props.indentation()
    assert props.columnWidth(0) >= need
