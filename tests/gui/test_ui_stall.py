"""The window's thread stays free while jobs run (issue 11): the layer table is sized from
a sample of rows, not every cell; a job's progress ticks repaint at most every 100 ms; tables
sized to their contents measure their cells once per fill, not once per item.
The stall itself is measured by benchmarks/bench_ui_stall.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from PySide6.QtWidgets import QHeaderView, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice
from bitlens.core.results import Progress, SweepEntry, TensorError
from bitlens.core.viewdata import distribution
from bitlens.gui.document import Document
from bitlens.gui.jobs import LayerDetail, SchemeRow
from bitlens.gui.layer_detail import LayerDetailView
from bitlens.gui.layer_table import FIT_ROWS
from bitlens.gui.layer_table_model import LayerTableModel
from bitlens.gui.status_panel import PROGRESS_MS, StatusPanel
from bitlens.gui.sweep_view import SweepView
from bitlens.gui.table_fill import sized_once
from tests.builders import init, model
from tests.gui.conftest import WAIT_MS, open_model, wait_idle

N_LAYERS = 2 * FIT_ROWS + 8


def _deep_mlp(n: int = N_LAYERS) -> onnx.ModelProto:
    """``n`` MatMul layers of 4x4 in a chain (N_LAYERS: more rows than the columns are
    sized from)."""
    rng = np.random.default_rng(0)
    nodes, inits, x = [], [], "x"
    for i in range(n):
        w = f"w{i}"
        inits.append(init(w, (0.5 * rng.standard_normal((4, 4))).astype(np.float32)))
        nodes.append(helper.make_node("MatMul", [x, w], [f"h{i}"], name=f"layer_{i}"))
        x = f"h{i}"
    g = helper.make_graph(
        nodes,
        "deep",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [2, 4])],
        inits,
    )
    return model(g)


def test_columns_are_fitted_from_a_sample_of_rows(qtbot, window, tmp_path: Path, monkeypatch):
    path = tmp_path / "deep.onnx"
    onnx.save(_deep_mlp(), path)
    open_model(qtbot, window, path)
    table = window.table
    asked: set[int] = set()
    text = LayerTableModel.text

    def counting(self, row, col):
        asked.add(row)
        return text(self, row, col)

    monkeypatch.setattr(LayerTableModel, "text", counting)
    table.view.setColumnWidth(0, 5)
    table._fit_columns()
    assert 0 < len(asked) <= FIT_ROWS < table.model.rowCount()
    fm = table.view.fontMetrics()
    # the widest sampled name fits (names here are all short enough not to be capped)
    widest = max(fm.horizontalAdvance(table.model.text(r, 0)) for r in asked)
    assert table.view.columnWidth(0) > widest
    assert table.view.frozen.columnWidth(0) == table.view.columnWidth(0)


def test_progress_shows_the_first_tick_then_the_latest_per_interval(qtbot):
    panel = StatusPanel()
    qtbot.addWidget(panel)
    panel.set_busy("Sweep", quiet=False, cancellable=True)
    panel.show_progress(Progress(1, 50, "layer 1"))
    assert (panel.progress.value(), panel.progress.maximum()) == (1, 50)  # at once
    for i in range(2, 40):
        panel.show_progress(Progress(i, 50, f"layer {i}"))
    assert panel.progress.value() == 1  # the ticks in between wait for the timer
    qtbot.waitUntil(lambda: panel.progress.value() == 39, timeout=20 * PROGRESS_MS)
    assert panel.job_label.text() == "layer 39"


def test_idle_drops_a_pending_tick(qtbot):
    panel = StatusPanel()
    qtbot.addWidget(panel)
    panel.set_busy("Sweep", quiet=False, cancellable=True)
    panel.show_progress(Progress(1, 10, "layer 1"))
    panel.show_progress(Progress(2, 10, "layer 2"))
    panel.set_idle()
    qtbot.wait(3 * PROGRESS_MS)
    assert panel.progress.value() == 1 and panel.job_label.text() == ""


def test_a_filled_table_still_fits_its_contents(qtbot):
    table = QTableWidget(0, 2)
    qtbot.addWidget(table)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
    long_text = "a rather long cell text " * 3
    with sized_once(table):
        table.setRowCount(3)
        for r in range(3):
            table.setItem(r, 0, QTableWidgetItem(long_text if r == 2 else "x"))
            table.setItem(r, 1, QTableWidgetItem("y"))
    assert [header.sectionResizeMode(i) for i in range(2)] == [
        QHeaderView.ResizeMode.ResizeToContents,
        QHeaderView.ResizeMode.Stretch,
    ]
    table.show()
    qtbot.waitExposed(table)
    assert table.columnWidth(0) >= table.fontMetrics().horizontalAdvance(long_text)


def test_detail_stages_redraw_only_what_changed(qtbot, monkeypatch):
    view = LayerDetailView()
    qtbot.addWidget(view)
    drawn: list[str] = []
    draw = LayerDetailView._draw
    monkeypatch.setattr(
        LayerDetailView,
        "_draw",
        lambda self, plot, dist, title, *rest: (
            drawn.append(title),
            draw(self, plot, dist, title, *rest),
        ),
    )
    weights = distribution(np.linspace(-1.0, 1.0, 64, dtype=np.float32), parse_format("int8 sym"))
    first = LayerDetail("fc", LayerChoice(), 256, weights, "fc.w")
    view.show_detail(first)
    assert drawn == ["weights", "input activation"]
    err = TensorError(mse=1e-4, sqnr_db=40.0, cosine=1.0, max_abs=0.01, rel_l2=0.01)
    second = replace(first, schemes=(SchemeRow("int8 sym", err, 64, 4.0),))
    view.show_detail(second)
    assert drawn == ["weights", "input activation"]  # the same histograms: not drawn again
    assert view.sandbox.rowCount() == 1  # the new sandbox rows are shown
    view.show_detail(replace(second, weights=distribution(np.ones(8, np.float32), None)))
    assert drawn[-1] == "weights"  # another distribution is drawn
    view.show_pending("fc2", None)
    drawn.clear()
    view.show_detail(second)  # after the pending state everything is drawn anew
    assert drawn == ["weights", "input activation"] and view.sandbox.rowCount() == 1


def test_a_job_starting_leaves_the_window_layout_alone(qtbot, window):
    """Showing the progress bar must not change the status bar's height: that re-laid out
    and repainted every pane at each job's start and end."""
    bar, central = window.statusBar(), window.centralWidget()
    before = (bar.height(), central.height())
    window.status.set_busy("Sweep", quiet=False, cancellable=True)
    qtbot.waitUntil(lambda: window.status.progress.isVisible(), timeout=WAIT_MS)
    qtbot.wait(50)  # let a pending layout run
    assert (bar.height(), central.height()) == before
    window.status.set_idle()


def test_the_progress_bar_never_paints_the_window_inside_a_job_handler(qtbot):
    """QProgressBar.setRange/setValue repaint() at once, which painted every pending update
    of the window (graph, plots) inside the handler that started a job. They are left to
    the event loop's next ordinary paint."""
    paints: list[str] = []

    class Pane(QWidget):
        def paintEvent(self, _event) -> None:
            paints.append("pane")

    top = QWidget()
    qtbot.addWidget(top)
    pane, panel = Pane(), StatusPanel()
    pane.setMinimumSize(100, 100)
    layout = QVBoxLayout(top)
    layout.addWidget(pane)
    layout.addWidget(panel)
    top.show()
    qtbot.waitExposed(top)
    qtbot.waitUntil(lambda: bool(paints))
    for start in (
        lambda: panel.set_busy("Sweep", quiet=False, cancellable=True),
        lambda: panel.show_progress(Progress(3, 10, "layer 3")),
        lambda: panel.set_busy("Evaluate", quiet=False, cancellable=True),
    ):
        paints.clear()
        pane.update()  # a pending paint, as after a model opened
        start()
        assert paints == []  # not painted inside the handler
        qtbot.waitUntil(lambda: bool(paints))  # but by the event loop (once or more)
    assert panel.progress.maximum() == 0  # the busy indicator is shown


def test_sweep_results_are_listed_lowest_output_sqnr_first(qtbot):
    view = SweepView(Document())
    qtbot.addWidget(view)
    sqnrs = [30.0, 5.0, 20.0, 12.5]
    entries = [
        SweepEntry(f"layer_{i}", "int8 sym ch", TensorError(1e-3, db, 0.99, 0.1, 0.1), 100 * i)
        for i, db in enumerate(sqnrs)
    ]
    view.show_entries(entries)
    shown = [view.table.item(r, 0).text() for r in range(view.table.rowCount())]
    assert shown == ["layer_1", "layer_3", "layer_2", "layer_0"]
    assert view.table.isSortingEnabled()


def test_the_table_answers_the_same_with_its_shortcuts(qtbot, window, cnn_path, monkeypatch):
    """data() returns at once for the roles it never answers (Qt asks every painted cell for
    a dozen): every role of every cell is what the full lookup gives, while an evaluation
    runs (italics) and after it."""
    from PySide6.QtCore import Qt

    from bitlens.gui import layer_table_model

    open_model(qtbot, window, cnn_path)
    model = window.table.model
    roles = range(int(Qt.ItemDataRole.UserRole) + 8)

    def table() -> list[object]:
        cells = [model.index(r, c) for r in range(model.rowCount())
                 for c in range(model.columnCount())]  # fmt: skip
        return [(model.data(i, role), model.flags(i)) for i in cells for role in roles]

    def quick_and_full() -> tuple[list[object], list[object]]:
        quick = table()
        with monkeypatch.context() as every_role:
            every_role.setattr(layer_table_model, "_ROLES", frozenset(roles))
            return quick, table()

    window.document.edit({"conv2": LayerChoice.of("int4 sym ch", "uint8 asym")}, "int4")
    assert not window.document.evaluation_current
    quick, full = quick_and_full()
    assert quick == full
    wait_idle(qtbot, window)
    quick, full = quick_and_full()
    assert quick == full
    assert sum(v is not None for v, _ in quick) > 10 * model.rowCount()
