"""Min-max calibration takes each activation's range from the float reference run, which
merges every float tensor's min and max over the calibration feeds as it goes
(reference._finite), instead of reading the kept values back (ranges.Ranges.calibrate): the
same statistics, ranges and evaluations as reading them, spilled or not."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine.store import ActivationStore
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import conv_net, lstm_recognizer


def _engines(build, budget: int | None, n: int = 2) -> list[Engine]:
    loaded = from_proto(build())
    data = Dataset.random(loaded.info, n=6, seed=4)
    return [Engine(loaded, data, device="cpu", memory_budget=budget) for _ in range(n)]


def _calibrated(engine: Engine, *, from_values: bool) -> dict[str, tuple[float, float]]:
    for _ in engine.prepare():
        pass
    if from_values:  # the straightforward way: min and max of the kept values
        engine._minmax = {}
    for _ in engine.calibrate("minmax"):
        pass
    return {a: (s.lo, s.hi) for a, s in engine._stats.items()}


@pytest.mark.parametrize("build", [conv_net, lstm_recognizer])
@pytest.mark.parametrize("budget", [0, None])  # 0: every kept value spilled to the scratch file
def test_ranges_from_the_float_run_equal_those_from_the_kept_values(build, budget) -> None:
    fast, slow = _engines(build, budget)
    got, want = _calibrated(fast, from_values=False), _calibrated(slow, from_values=True)
    assert got == want and got
    # the model input (the first layer's activation) against numpy directly
    name = fast.info.inputs[0].name
    values = [np.asarray(fast.data.samples[i][name], np.float64) for i in fast.data.calibration]
    assert got[name] == (min(v.min() for v in values), max(v.max() for v in values))
    for preset in ("W8A8", "W4A8"):
        plan = Plan.preset(fast.info, preset)
        assert fast.evaluate(plan) == slow.evaluate(plan)


def test_min_max_calibration_reads_no_kept_value(monkeypatch) -> None:
    (engine,) = _engines(conv_net, 0, 1)
    for _ in engine.prepare():
        pass
    reads: list[tuple[str, int]] = []
    real = ActivationStore.get

    def counting(self, name, index):
        reads.append((name, index))
        return real(self, name, index)

    monkeypatch.setattr(ActivationStore, "get", counting)
    for _ in engine.calibrate("minmax"):
        pass
    assert engine._stats and not reads
    # a method that needs more than min and max still reads them
    for _ in engine.calibrate("percentile"):
        pass
    engine.activation_range("r1", Plan.preset(engine.info, "W8A8")["conv2"].activation)
    assert reads
