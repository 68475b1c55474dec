"""Find Plan's Speed field: the request carries the deployed-time limit as the CLI's
--max-latency reads it, and a wrong value is reported, not raised."""

from __future__ import annotations

from bitlens.gui.search_panel import SearchPanel


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
