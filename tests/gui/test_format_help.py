"""Formats explain themselves (tooltips in editors, toolbar and sandbox, Help ▸ Format
Reference) and the error colours are colour-blind safe and scaled to the model."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from PySide6.QtCore import Qt

from bitlens.core.formats.spec import FLOAT_KINDS
from bitlens.core.plan import ACTIVATION_CHOICES, WEIGHT_CHOICES, Plan
from bitlens.gui import colors
from bitlens.gui.layer_table_model import Column
from tests.gui.conftest import WAIT_MS, open_model, wait_idle


def _tips(combo) -> list[str]:
    return [combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())]


def test_every_format_entry_has_a_tooltip(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    table = window.table
    for combo in (table.weight_combo, table.act_combo):
        tips = _tips(combo)[1:]  # the first entry is "(unchanged)"
        assert all(tips), combo.objectName()
    w = [t for t in _tips(table.weight_combo) if t and t.startswith("int4 sym blk32")]
    assert w and "bits per value" in w[0] and "16 levels" in w[0]
    # the editor the delegate opens in a format cell
    view = table.view
    index = view.model().index(0, Column.WEIGHT)
    view.setCurrentIndex(index)
    view.edit(index)
    editor = view.indexWidget(index) or view.findChild(type(table.weight_combo), "formatEditor")
    assert editor is not None and all(_tips(editor))
    assert "bits" in index.data(Qt.ItemDataRole.ToolTipRole) or "float" in index.data(
        Qt.ItemDataRole.ToolTipRole
    )


def test_sandbox_rows_explain_their_format(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    name = window.document.info.layer_names[0]
    window.document.selection.set([name], name)
    qtbot.waitUntil(
        lambda: window.detail.detail is not None and window.detail.detail.complete, timeout=WAIT_MS
    )
    item = window.detail.sandbox.item(0, 0)
    assert "bits per value" in item.toolTip() and "grid:" in item.toolTip()


def test_format_reference_lists_what_the_parser_accepts(qtbot, window) -> None:
    dlg = window.show_format_reference()
    qtbot.addWidget(dlg)
    grammar = {dlg.grammar.item(r, 0).text() for r in range(dlg.grammar.rowCount())}
    assert set(FLOAT_KINDS) <= grammar and "asym" in grammar
    offered = {dlg.offered.item(r, 0).text() for r in range(dlg.offered.rowCount())}
    assert offered == set(WEIGHT_CHOICES) | set(ACTIVATION_CHOICES)
    assert window.show_format_reference() is dlg  # one dialog, raised again
    dlg.close()


def test_error_colours_get_lighter_as_the_error_falls() -> None:
    # lightness alone orders them, so readers without red-green vision see the order
    light = [colors.scale_color(t / 20).lightnessF() for t in range(21)]
    assert all(b >= a for a, b in pairwise(light))
    assert light[-1] - light[0] > 0.25


def test_colour_scale_spans_the_models_range(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    window.document.replace_plan(Plan.preset(window.document.info, "W8A8"), "preset")
    wait_idle(qtbot, window)
    ev = window.document.evaluation
    acc = [r.accumulated.sqnr_db for r in ev.layers.values() if r.accumulated is not None]
    scale = window.document.error_kind.scale(ev)
    assert scale.lo <= min(acc) and scale.hi >= max(acc)
    assert scale.hi - scale.lo >= colors.MIN_SPAN_DB
    assert window.graph.legend.scale == scale
    assert f"{scale.lo:.0f} dB" in window.graph.legend._texts()[0]
    # the worst layer of this model gets the scale's worst colour, wherever it is drawn
    worst = min(ev.layers, key=lambda n: ev.layers[n].accumulated.sqnr_db)
    row = window.table.model.row_of(worst)
    cell = window.table.model.index(row, Column.ACCUMULATED).data(Qt.ItemDataRole.BackgroundRole)
    expected = colors.error_color(ev.layers[worst].accumulated.sqnr_db, scale)
    assert cell.name() == expected.name()
    assert window.graph.view.node_item(worst).fill.name() == expected.name()
