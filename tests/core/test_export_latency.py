"""The fidelity report's latency row: the export and the float model timed in turn."""

from __future__ import annotations

import time
from types import SimpleNamespace

from bitlens.core.export.latency import MIN_PAIRS, paired_latency


class _Fake:
    """A session stand-in that takes ``seconds`` per run and logs its runs."""

    def __init__(self, name: str, seconds: float, log: list[str]):
        self.name, self.seconds, self.log = name, seconds, log

    def get_outputs(self):
        return [SimpleNamespace(name="y")]

    def run(self, names, feed):
        self.log.append(self.name)
        time.sleep(self.seconds)
        return [None]


def test_paired_latency_alternates_and_times_each_model() -> None:
    log: list[str] = []
    fast, slow = _Fake("a", 0.002, log), _Fake("b", 0.008, log)
    ta, tb = paired_latency(fast, slow, {}, budget_s=0.0)
    assert ta.runs == tb.runs == MIN_PAIRS  # no budget: the minimum, in pairs
    assert log == ["a", "b"] * (MIN_PAIRS + 1)  # one warm-up each, then in turn
    log.clear()
    paired_latency(fast, slow, {}, budget_s=0.0, a_warm=True)
    assert log == ["b", *(["a", "b"] * MIN_PAIRS)]  # a ran already: no warm-up
    assert 2.0 <= ta.median_ms < tb.median_ms and tb.median_ms >= 8.0


def test_paired_latency_spends_its_budget_on_both() -> None:
    log: list[str] = []
    ta, tb = paired_latency(_Fake("a", 0.001, log), _Fake("b", 0.001, log), {}, budget_s=0.1)
    assert ta.runs == tb.runs > MIN_PAIRS
    assert len(log) == 2 * (ta.runs + 1)
