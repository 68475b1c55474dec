"""What the window showed a user of real models, each on a small model built in code:
Find Plan's empty plot, sizes ONNX invented, and the sweep's default formats."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
from onnx import TensorProto, helper
from PySide6.QtCore import QThreadPool
from PySide6.QtWidgets import QApplication, QFormLayout, QLabel, QTabBar

from bitlens.cli import build_parser
from bitlens.core.formats import SWEEP_LADDER
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.search import Budget, Point, SearchOptions
from bitlens.gui.dims_dialog import DimsDialog
from bitlens.gui.main_window import MainWindow
from bitlens.gui.search_panel import SearchPanel
from bitlens.gui.search_plot import EMPTY, WAITING, SearchPlot
from bitlens.gui.sweep_dialog import SweepDialog, _ticked
from bitlens.gui.text import fmt_db
from tests import builders
from tests.core.engine_models import small_cnn
from tests.gui.conftest import WAIT_MS, held, open_model, wait_idle
from tests.gui.test_layout import _tab_bars_over_docks
from tests.gui.test_window_look import axis_labels


def test_find_plan_shows_what_the_plot_will_hold_before_the_first_plan(
    qtbot, window, cnn_path: Path, monkeypatch
) -> None:
    """Before the first run the plot showed bare 0..1 axes and an empty log axis."""
    from bitlens.gui import jobs

    search, release = held(jobs.find_plan)  # waits after its first step until released
    monkeypatch.setattr(jobs, "find_plan", search)
    open_model(qtbot, window, cnn_path)
    window.act_find_plan.trigger()
    panel = window.search
    plot = panel.plot
    qtbot.waitUntil(plot.placeholder.isVisible, timeout=WAIT_MS)
    assert plot.is_empty and not plot.plot.isVisible()
    assert plot.placeholder.text() == EMPTY
    window.controller.run_search(SearchOptions(Budget(size_ratio=0.8)))
    qtbot.waitUntil(lambda: panel.running, timeout=WAIT_MS)
    assert plot.is_empty and plot.placeholder.text() == WAITING  # no plan yet
    with qtbot.waitSignal(window.controller.searchFinished, timeout=WAIT_MS):
        release.set()
    assert not plot.is_empty and plot.plot.isVisible() and not plot.placeholder.isVisible()
    assert plot.points and plot.references
    panel.reset()  # another model: its plans are gone, the placeholder says so again
    assert plot.is_empty and plot.placeholder.isVisible() and plot.placeholder.text() == EMPTY


def test_search_stopped_before_its_first_plan_says_no_plans(
    qtbot, window, cnn_path: Path, monkeypatch
) -> None:
    from bitlens.gui import jobs

    search, release = held(jobs.find_plan)
    monkeypatch.setattr(jobs, "find_plan", search)
    open_model(qtbot, window, cnn_path)
    window.act_find_plan.trigger()
    window.controller.run_search(SearchOptions(Budget(size_ratio=0.8)))
    panel = window.search
    qtbot.waitUntil(lambda: panel.running, timeout=WAIT_MS)
    with qtbot.waitSignal(window.controller.searchFinished, timeout=WAIT_MS) as blocker:
        window.controller.cancel()
        release.set()  # the held job reaches its cancel check (set after the wait, it sat HOLD_S)
    assert blocker.args == [None]
    assert panel.plot.is_empty and panel.plot.placeholder.text() == EMPTY
    assert panel.status.text() == "Stopped before its first plan."  # none "stay on the plot"


def _invented_dims_model() -> onnx.ModelProto:
    """x [unk__7, 8] (a tf2onnx batch) -> MatMul W -> y -> NonZero -> nz [2, unk__0]

    ONNX's shape inference names NonZero's count of hits "unk__0" itself."""
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
         helper.make_node("NonZero", ["y"], ["nz"], name="nonzero")],
        "invented",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__7", 8])],
        [helper.make_tensor_value_info("nz", TensorProto.INT64, [2, None])],
        [builders.init("W", builders.weights((8, 8), seed=1))],
    )  # fmt: skip
    return builders.model(g)


def _tip(props, section: str, key: str) -> str:
    for i in range(props.topLevelItemCount()):
        top = props.topLevelItem(i)
        if top.text(0).startswith(section):
            for j in range(top.childCount()):
                if top.child(j).text(0) == key:
                    return top.child(j).toolTip(1)
    raise KeyError(key)


def test_properties_show_invented_sizes_as_unknown(qtbot, window, tmp_path: Path) -> None:
    """The properties read "unk__0" where a size is unknown: names no one chose."""
    path = tmp_path / "invented.onnx"
    onnx.save(_invented_dims_model(), path)
    open_model(qtbot, window, path)
    props = window.graph.properties
    window.graph.find_box.edit.setText("nonzero")
    qtbot.waitUntil(lambda: props.row_text("Node", "name") == "nonzero", timeout=WAIT_MS)
    assert props.row_text("Inputs", "y") == "?×8 float32"
    assert props.row_text("Outputs", "nz") == "2×? int64"
    assert "unk__0" in _tip(props, "Outputs", "nz") and "unk__7" in _tip(props, "Inputs", "y")
    window.graph.view.set_focus("input:x")
    qtbot.waitUntil(lambda: props.row_text("Model input", "shape") is not None, timeout=WAIT_MS)
    assert props.row_text("Model input", "shape") == "?×8"
    assert "unk__7" in _tip(props, "Model input", "shape")
    texts = [it.text(1) for it in _items(props)]
    assert not any("unk__" in t for t in texts), texts


def _items(tree):
    for i in range(tree.topLevelItemCount()):
        top = tree.topLevelItem(i)
        yield top
        yield from (top.child(j) for j in range(top.childCount()))


def test_sweep_dialog_ticks_the_formats_the_cli_sweeps(qtbot) -> None:
    """The window's sweep ticked "tern ch" too, which `bitlens sweep` does not try."""
    dlg = SweepDialog(["a", "b"], n_layers=2)
    qtbot.addWidget(dlg)
    cli = build_parser().parse_args(["sweep", "model.onnx"])
    assert set(_ticked(dlg.formats)) == set(cli.formats) == set(SWEEP_LADDER)
    assert "tern ch" not in cli.formats


def test_sweep_dialog_shows_the_ticked_formats_within_a_720_px_screen(qtbot) -> None:
    """At 1280x720 the weights list showed 11 of its 32 formats: two ticked ones were
    below its fold."""
    dlg = SweepDialog(["a"], n_layers=2)
    qtbot.addWidget(dlg)
    dlg.show()
    qtbot.waitExposed(dlg)
    hint = dlg.sizeHint()
    assert hint.height() <= 720 - 48  # a 720 px screen's free area less the title bar
    dlg.resize(hint)  # the size it opens at on a screen that has room (offscreen has 600 px)
    qtbot.waitUntil(lambda: dlg.height() == hint.height(), timeout=WAIT_MS)
    for box in (dlg.formats, dlg.activations):
        ticked = [box.item(i) for i in range(box.count()) if box.item(i).text() in _ticked(box)]
        assert ticked
        for item in ticked:
            assert box.viewport().rect().contains(box.visualItemRect(item)), item.text()
    assert dlg.sel_layers.text() == "The selected layer"


def test_no_stale_tab_bar_over_the_graph_when_the_window_grows(
    qtbot, settings, no_modal, cnn_path: Path
) -> None:
    """Shown at 1280x720, then made 1920x1080: the bottom docks' tab bar from before
    "As deployed" joined them, left by Qt out of sight below the small window (at
    (0, 726), 545 px wide, in a user's session started at 1280x720), lay over the graph's
    properties. Whether Qt leaves it depends on the order of its layout passes, so the
    test puts such a bar where Qt left it."""
    window = MainWindow(settings, device="cpu")
    qtbot.addWidget(window)
    window.resize(1280, 720)
    stale = QTabBar(window)
    for text in ("Error and size per layer", "Sweep results"):
        stale.addTab(text)
    stale.setGeometry(0, 726, 545, 26)
    window.show()
    qtbot.waitExposed(window)
    open_model(qtbot, window, cnn_path)
    window.resize(1920, 1080)
    qtbot.waitUntil(lambda: window.docks["plots"].width() > 1800, timeout=WAIT_MS)
    QApplication.processEvents()
    assert _tab_bars_over_docks(window) == []
    assert not stale.isVisible()
    bars = [b for b in window.findChildren(QTabBar) if b.isVisible()]
    tabs = [{b.tabText(i) for i in range(b.count())} for b in bars]
    assert {"Error and size per layer", "Sweep results", "As deployed"} in tabs  # the real one
    window.close()
    assert QThreadPool.globalInstance().waitForDone(10_000)


def test_search_plot_labels_errors_within_one_decade(qtbot) -> None:
    """open_nsfw's presets before the search's first plan (W8A8 0.056, W4A8 0.095): the
    error axis ran 0.05..0.1 and labelled only its 1-2-5 ticks, i.e. none it showed."""
    plan = Plan.float(from_proto(small_cnn()).info)
    plot = SearchPlot()
    qtbot.addWidget(plot)
    plot.resize(900, 170)
    plot.show()
    for label, size, error in (("float", 23_000_000, 0.0), ("W8A8", 6_000_000, 0.056),
                               ("W4A8", 3_200_000, 0.095)):  # fmt: skip
        plot.add(Point(plan, size, size, error, None, label))
        assert plot.is_empty == (label == "float")  # float alone: a line on bare axes
    view = plot.plot.getViewBox()

    def fitted() -> bool:  # the view ranges over the two errors, within one decade
        lo, hi = view.viewRange()[1]
        return lo < math.log10(0.056) and math.log10(0.095) < hi < -0.9

    qtbot.waitUntil(fitted, timeout=WAIT_MS)
    shown = axis_labels(plot)
    assert len(shown) >= 2, shown
    assert all(0.05 <= float(t) <= 0.1 for t in shown), shown


def test_input_sizes_name_an_invented_dimension_by_where_it_is(qtbot) -> None:
    """tf2onnx names the sizes of a Keras model's inputs "unk__N": the sizes dialog asked
    for "unk__9" as if the model named it so.

    x [N, unk__9, 8] -> MatMul W -> y"""
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "unk__9", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "unk__9", 8])],
        [builders.init("W", builders.weights((8, 8), seed=1))],
    )  # fmt: skip
    info = from_proto(builders.model(g)).info
    dlg = DimsDialog(info, {"unk__9": 5})
    qtbot.addWidget(dlg)
    form = dlg.layout().itemAt(1).layout()
    labels = [form.itemAt(i, QFormLayout.ItemRole.LabelRole).widget().text()
              for i in range(form.rowCount())]  # fmt: skip
    assert "x[1] (unnamed, unk__9)" in labels and not any(t.startswith("unk__") for t in labels)
    assert dlg.dims()["unk__9"] == 5  # still keyed by the file's name
    assert "<b>x</b>: N×?×8 float32" in dlg.findChild(QLabel).text()


def test_side_panes_keep_their_share_when_the_window_is_maximized(
    qtbot, window, cnn_path: Path
) -> None:
    """Opened at 1280 and maximized to 1920, the graph pane kept its 256 px (the
    properties cut off) and the table took all 640 px. Grown on every maximize and never
    shrunk on restore, the panes would squeeze the table after a few."""
    window.resize(1280, 720)
    open_model(qtbot, window, cnn_path)
    qtbot.waitUntil(lambda: window.width() == 1280, timeout=WAIT_MS)
    QApplication.processEvents()
    graph, detail = window.docks["graph"], window.docks["detail"]
    before = graph.width(), detail.width()
    window.resize(1920, 1080)

    def grown() -> bool:
        return all(abs(d.width() - w * 1.5) < 30 for d, w in zip((graph, detail), before, strict=True))

    qtbot.waitUntil(grown, timeout=WAIT_MS)
    assert window.table.width() > 800
    wide = graph.width(), detail.width()
    for _ in range(2):  # restored and maximized again: the panes never creep wider
        window.resize(1280, 720)
        qtbot.waitUntil(lambda: window.table.width() >= 1280 - sum(before) - 30, timeout=WAIT_MS)
        window.resize(1920, 1080)
        qtbot.waitUntil(lambda: (graph.width(), detail.width()) == wide, timeout=WAIT_MS)


def test_a_to_b_line_reads_the_first_output_the_plans_change(
    qtbot, window, tmp_path: Path
) -> None:
    """MiniLM's output 0 passes the integer ids through: the status bar's A→B line read
    "exact→exact =" for W8A8 against W4A8, its output line the embedding's SQNR.

    ids (int64) -> Identity -> ids_out ;  x -> MatMul W -> y"""
    g = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["ids_out"], name="pass"),
         helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "passthrough",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4]),
         helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("ids_out", TensorProto.INT64, [1, 4]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        [builders.init("W", builders.weights((8, 8), seed=2))],
    )  # fmt: skip
    path = tmp_path / "passthrough.onnx"
    onnx.save(builders.model(g), path)
    open_model(qtbot, window, path)
    doc = window.document
    doc.replace_plan(Plan.preset(doc.info, "W8A8"), "W8A8")
    wait_idle(qtbot, window)
    assert window.pin_plan_a()
    doc.replace_plan(Plan.preset(doc.info, "W4A8"), "W4A8")
    wait_idle(qtbot, window)
    label = window.ab_status
    qtbot.waitUntil(lambda: label.text().startswith("A→B "), timeout=WAIT_MS)
    c = doc.ab.comparison
    y = next(o for o in c.outputs if o.name == "y")
    assert c.outputs[0].name == "ids_out"  # the pass-through comes first
    assert label.text().startswith(f"A→B {fmt_db(y.sqnr_a)}→{fmt_db(y.sqnr_b)} ")
    assert "exact→exact" not in label.text()


def test_output_error_stays_readable_while_a_job_runs_at_1280(qtbot, window, cnn_path) -> None:
    """ddddocr at 1280x720: while Find Plan ran (minutes), the status bar read "output …":
    the running job's words and the data warning took the room of the output's figure."""
    open_model(qtbot, window, cnn_path)  # random inputs: the long data warning shows
    window.resize(1280, 720)
    status = window.status
    status.size_label.setText("Weights 65.7 MiB → 16.5 MiB (3.98×)")  # MiniLM's widths
    status.set_busy("export cost of int16 sym ch", quiet=False, cancellable=True)
    qtbot.waitUntil(status.progress.isVisible, timeout=WAIT_MS)
    out = window.document.evaluation.outputs
    name = next(iter(out))
    headline = f"output {name}: {fmt_db(out[name].error.sqnr_db)}"
    assert status.output_label.text().startswith(headline)
    bar, size = window.statusBar(), window.export_size
    # MiniLM's prediction (then its exported file's name) beside the job cut the size figure
    for text in ("Export file: ? (click to predict)",
                 "Export file: 16.6 MiB predicted (from 65.7 MiB, opset 17)",
                 "Export file: 16.6 MiB (paraphrase-MiniLM-L3-v2.quant.onnx)"):  # fmt: skip
        size.setText(text)
        QApplication.processEvents()
        assert status.output_label.shown_text().startswith(headline), text
        assert not status.size_label.elided, text
        assert size.shown_text().startswith(text.split(" (")[0].removesuffix(" predicted"))
        for label in (status.output_label, status.data_label, status.job_label, size):
            assert label.mapTo(window, label.rect().topRight()).x() <= bar.width()
    status.set_idle()


def test_a_long_output_name_is_cut_in_its_middle_before_its_figure(qtbot) -> None:
    from bitlens.gui.status_panel import NAME_CHARS, _short

    name = "encoder/layer.11/attention/output/LayerNorm_output_0"
    short = _short(name)
    assert len(short) == NAME_CHARS - 1 and short.startswith(name[:5]) and short.endswith(name[-5:])
    assert _short("387") == "387"


def test_speed_lines_say_which_ratio_is_predicted_and_which_measured(qtbot) -> None:
    """ddddocr's Find Plan: "kept to x0.58 of float" under Speed and "runs in ONNX Runtime at
    x0.65 float" in the status line read as a broken limit; the first is the latency model's
    prediction, the second a measurement of the exported file."""
    from bitlens.core.search.points import Steering
    from bitlens.core.search.speed import PlanSpeed

    steer = Steering("speed: plans are kept to x0.58 of the float time", 0.16, 0.58)
    speed = PlanSpeed(("CPUExecutionProvider",), 6.5, 10.0, 2.4, 0.65, 2.71, "medians")
    assert steer.short() == "kept to x0.58 of float, predicted (W8A8 x0.16)"
    assert speed.short() == "measured in ONNX Runtime at x0.65 float's time, x2.71 W8A8's"
    panel = SearchPanel()  # the note under Speed stays whole in the 1280 px window's panel
    qtbot.addWidget(panel)
    panel.resize(1270, 220)
    panel.speed_note.setText(steer.short())
    panel.speed_note.setVisible(True)
    panel.show()
    QApplication.processEvents()
    assert not panel.speed_note.elided


def _pass_through_first() -> onnx.ModelProto:
    """x [4, 8] -> Identity -> passed (output 0, never changed by a plan)
                -> MatMul W [8, 6] -> y (output 1)"""
    import numpy as np

    w = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["passed"], name="keep"),
         helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")],
        "pass_through_first",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
        [helper.make_tensor_value_info("passed", TensorProto.FLOAT, [4, 8]),
         helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])],
        [onnx.numpy_helper.from_array(w, "W")],
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_outputs_scatter_the_first_output_the_plan_changes(qtbot, window, tmp_path) -> None:
    """MiniLM (paraphrase-MiniLM-L3-v2): its output 0 passes the token ids through; the
    Outputs pane scattered that exact line while the status bar read output 2's 21 dB."""
    path = tmp_path / "two.onnx"
    onnx.save(_pass_through_first(), path)
    window.docks["outputs"].raise_()
    open_model(qtbot, window, path)
    window.document.replace_plan(Plan.preset(window.document.info, "W4A8"), "W4A8")
    wait_idle(qtbot, window)
    view = window.outputs
    qtbot.waitUntil(lambda: bool(window.document.outputs), timeout=WAIT_MS)
    assert view.choice.currentText() == "y"
    assert "values of y" in view.plot.getPlotItem().titleLabel.text
    for side in ("bottom", "left"):  # open_nsfw's 0.05..0.95 read "(x0.001)" 50..950 below
        axis = view.plot.getAxis(side)
        axis.setRange(0.05, 0.95)
        assert axis.autoSIPrefixScale == 1.0 and "x0.001" not in axis.labelString()
    view.choice.setCurrentIndex(0)  # the user's pick stays
    view.choice.activated.emit(0)
    window.document.replace_plan(Plan.preset(window.document.info, "W8A8"), "W8A8")
    wait_idle(qtbot, window)
    assert view.choice.currentText() == "passed"


def test_sweep_heat_map_shows_the_selected_layer(qtbot, window, tmp_path) -> None:
    """open_nsfw at 1280x720: the heat map shows four of its 54 rows; the layer selected in
    the table was not among them, after the sweep or when another was selected."""
    from tests.gui.test_ui_stall import _deep_mlp

    path = tmp_path / "deep.onnx"
    onnx.save(_deep_mlp(24), path)
    open_model(qtbot, window, path)
    window.resize(1280, 720)
    names = window.document.info.layer_names
    last = names[-1]
    window.document.selection.set([last], last)
    window.docks["plots"].raise_()  # the sweep's dock hidden behind it until the sweep ends
    QApplication.processEvents()
    heat = window.sweep.heat
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS):
        window.controller.run_sweep(["int4 sym ch"])
    wait_idle(qtbot, window)
    qtbot.waitUntil(heat.isVisible, timeout=WAIT_MS)
    QApplication.processEvents()
    assert heat.viewport().height() < 24 * heat.rowHeight(0)  # not every row shows

    def shown(name: str) -> bool:
        r = names.index(name)
        y = heat.rowViewportPosition(r)
        return y >= 0 and y + heat.rowHeight(r) <= heat.viewport().height()

    def bold(name: str) -> bool:
        return heat.verticalHeaderItem(names.index(name)).font().bold()

    qtbot.waitUntil(lambda: shown(last), timeout=WAIT_MS)  # once the dock is laid out
    assert bold(last) and not bold(names[0])
    window.document.selection.set([names[0]], names[0])
    QApplication.processEvents()
    assert shown(names[0]) and bold(names[0]) and not bold(last)
    assert not heat.selectedItems()  # a cell is a format: none is picked for the user
