"""Tools ▸ Find Plan agrees with ``bitlens search``: its untouched budget is the CLI's default
one, and a plotted plan's error says what it counts and on which rows, during a search too."""

from __future__ import annotations

from pathlib import Path

import onnx
from PySide6.QtCore import Qt

from bitlens.core.search import Budget, Point
from bitlens.gui import jobs
from bitlens.gui.search_panel import DEFAULT_SUFFIX, SearchPanel
from tests.core.test_search_label_outputs import gemm_argmax
from tests.gui.conftest import WAIT_MS, held, open_model, wait_idle


def test_the_untouched_budget_is_the_clis_default_and_a_typed_one_is_hard(qtbot) -> None:
    """OpenCV Zoo's YuNet (233 KiB): ``bitlens search`` with no budget falls back to W8A8's
    size where no plan fits a quarter of the float file (test_cli_search_default_budget.py);
    the panel sent its 0.25 as a typed ratio, a hard budget, and the search failed."""
    panel = SearchPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert panel.options().budget == Budget(size_ratio=0.25, default=True)
    assert panel.value.suffix() == DEFAULT_SUFFIX  # shown as the default
    panel.value.lineEdit().selectAll()
    qtbot.keyClicks(panel.value, "0.35")
    qtbot.keyClick(panel.value, Qt.Key.Key_Return)
    assert panel.options().budget == Budget(size_ratio=0.35)  # typed: a hard budget
    assert panel.value.suffix() == ""
    panel.kind.setCurrentIndex(panel.kind.findData("max_bytes"))
    assert panel.options().budget.default is False and panel.value.suffix() == ""
    panel.kind.setCurrentIndex(panel.kind.findData("size_ratio"))  # back to its default
    assert panel.options().budget == Budget(size_ratio=0.25, default=True)
    panel.value.setValue(0.5)  # set as the arrows set it: a hard budget too
    assert panel.options().budget == Budget(size_ratio=0.5) and panel.value.suffix() == ""


def test_find_plan_with_its_default_budget_runs_on_a_model_no_quarter_fits(
    qtbot, window, cnn_path: Path
) -> None:
    """The window's search of a model too small for a quarter of its size (6.6 KB of
    weights: YuNet's case) stopped with "no plan fits in N bytes"; it searches at W8A8's."""
    open_model(qtbot, window, cnn_path)
    window.show_search()
    with qtbot.waitSignal(window.controller.searchFinished, timeout=WAIT_MS) as blocker:
        window.search.run_button.click()
    result = blocker.args[0]
    assert result is not None, window.message_bar.text.text()
    assert any("searched at the W8A8 preset's size instead" in n for n in result.notes)
    assert "Best within the budget" in window.search.status.text()  # a ⚠ first when slower
    assert "Note: the default budget (at most 0.25 of the float size) fits no plan" in (
        window.search.status.toolTip()
    )
    wait_idle(qtbot, window)


def _hover_note(panel: SearchPanel) -> tuple[str, str]:
    """The panel's line and the plot's tooltip for the last plan plotted."""
    spot = panel.plot.tried.scatter.points()[-1]
    panel.plot.tried.sigPointsHovered.emit(panel.plot.tried, [spot], None)
    return panel.status.text(), panel.plot.plot.toolTip()


def test_a_running_and_a_stopped_search_say_what_their_errors_count_and_where(
    qtbot, window, tmp_path: Path, monkeypatch
) -> None:
    """An ArgMax model: a hovered plan's error read "(0.0 dB)", a relative L2's reading of
    an error that counts changed labels; and while the search ran, or once stopped, nothing
    said it was measured on the rows the search fits (a finished search's point did)."""
    search, release = held(
        jobs.find_plan, at=lambda item: isinstance(item, Point) and item.label == "search"
    )
    monkeypatch.setattr(jobs, "find_plan", search)
    path = tmp_path / "argmax.onnx"
    onnx.save(gemm_argmax(), path)
    open_model(qtbot, window, path)
    panel = window.search
    window.show_search()
    with qtbot.waitSignal(window.controller.searchPoint, timeout=WAIT_MS,
                          check_params_cb=lambda p: p.label == "search"):  # fmt: skip
        panel.run_button.click()
    assert panel.running
    for line, tip in (_hover_note(panel),):
        assert "dB" not in line and "dB" not in tip, (line, tip)
        assert "(the fraction of changed labels of y)" in tip
        assert "evaluation rows it fits" in line, line
    with qtbot.waitSignal(window.runner.cancelled, timeout=WAIT_MS):
        panel.cancel_button.click()
        release.set()
    qtbot.waitUntil(lambda: not window.runner.busy, timeout=WAIT_MS)
    assert panel.status.text().startswith("Stopped")
    line, tip = _hover_note(panel)
    assert "evaluation rows it fits" in line and "dB" not in line, line
    assert "(the fraction of changed labels of y)" in tip
    wait_idle(qtbot, window)
