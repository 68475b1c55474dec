"""Find Plan's Speed field: the request carries the deployed-time limit as the CLI's
--max-latency reads it, a wrong value is reported, not raised, and after a search the line
under it says whether the search steered for speed."""

from __future__ import annotations

from bitlens.core.search import Budget
from bitlens.gui.search_panel import SearchPanel
from tests.core.test_search import _engine, _run
from tests.core.test_search_not_steered import depthwise_net


def test_speed_field_sets_the_requests_max_latency(qtbot) -> None:
    panel = SearchPanel()
    qtbot.addWidget(panel)
    assert panel.options().max_latency == "half"  # the default: half of W8A8's speed-up
    panel.speed.setCurrentText("none")
    assert panel.options().max_latency is None
    panel.speed.setCurrentText("0.6")
    assert panel.options().max_latency == 0.6
    panel.speed.setCurrentText("fast")
    with qtbot.waitSignal(panel.failed, timeout=1000) as blocker:
        panel.request_run()
    assert "max latency" in str(blocker.args[1])


def test_the_panel_says_when_the_search_did_not_steer(qtbot) -> None:
    """Under the Speed field after a search: "not steered" with W8A8's predicted ratio
    (a depthwise-heavy net, tests/core/test_search_not_steered.py), the whole line in its
    tooltip and the status tooltip; a new search clears it."""
    engine = _engine(depthwise_net())
    result, _ = _run(engine, Budget(size_ratio=0.5))
    steer = result.steering
    assert steer is not None and steer.limit is None
    panel = SearchPanel()
    qtbot.addWidget(panel)
    panel.show()
    assert panel.speed_note.isHidden()
    panel.started()
    panel.finished(result)
    assert not panel.speed_note.isHidden()
    assert panel.speed_note.text() == steer.short()
    assert panel.speed_note.text().startswith("not steered")
    assert "W8A8 predicted x" in panel.speed_note.text()
    assert f"x{steer.w8a8:.2f}" in panel.speed_note.text()
    assert steer.text in panel.speed_note.toolTip() and steer.text in panel.status.toolTip()
    panel.started()
    assert panel.speed_note.isHidden() and panel.speed_note.text() == ""
