"""The fidelity check's latency comparison interleaves the export's and the float model's
runs, so load from other processes on a shared machine hits both alike."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.export import latency
from bitlens.core.export.latency import (
    MIN_RUNS,
    PRECISE_RUNS,
    WARMUP,
    median_latencies,
    ratio_spread,
)
from tests import builders


class Recorded:
    """An ONNX Runtime session that logs its name at every run."""

    def __init__(self, name: str, log: list[str]):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
        self._sess = ort.InferenceSession(
            builders.model(g).SerializeToString(), providers=["CPUExecutionProvider"]
        )
        self.name, self.log = name, log

    def get_outputs(self) -> list:
        return self._sess.get_outputs()

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list:
        self.log.append(self.name)
        return self._sess.run(outputs, feed)


def test_runs_interleave(monkeypatch) -> None:
    monkeypatch.setattr(latency, "PRECISION", -1.0)  # never precise enough: MIN_RUNS rounds
    log: list[str] = []
    a, b = Recorded("a", log), Recorded("b", log)
    t_a, t_b = median_latencies([a, b], {"x": np.ones(4, np.float32)}, budget_s=0.0)  # type: ignore[list-item]
    assert t_a.runs == t_b.runs == MIN_RUNS and t_a.median_ms > 0
    timed = log[2 * WARMUP :]
    assert len(timed) == 2 * MIN_RUNS
    # every round runs both, the order reversed every other round: a b b a a b ...
    rounds = [timed[i : i + 2] for i in range(0, len(timed), 2)]
    assert all(sorted(r) == ["a", "b"] for r in rounds)
    assert rounds[0] != rounds[1]


class Clock:
    """A fake clock: sessions advance it by set durations, so stopping is deterministic."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class Timed:
    """A session whose runs take the next of ``durations`` (seconds, cycled) on ``clock``."""

    def __init__(self, clock: Clock, durations: list[float]):
        self.clock, self.durations, self.k = clock, durations, 0

    def get_outputs(self) -> list:
        return []

    def run(self, outputs, feed) -> list:
        self.clock.now += self.durations[self.k % len(self.durations)]
        self.k += 1
        return []


def test_steady_ratio_stops_early(monkeypatch) -> None:
    """Every round gives the same ratio: known after PRECISE_RUNS rounds, long before the
    budget (200 s on the fake clock) or MIN_RUNS."""
    clock = Clock()
    monkeypatch.setattr(latency, "time", clock)
    a, b = Timed(clock, [0.002]), Timed(clock, [0.001])
    t_a, t_b = median_latencies([a, b], {}, budget_s=100.0)  # type: ignore[list-item]
    assert t_a.runs == t_b.runs == PRECISE_RUNS
    assert abs(t_a.median_ms - 2.0) < 1e-9 and abs(t_b.median_ms - 1.0) < 1e-9
    assert t_b.ratio_spread < 1e-9


def test_noisy_ratio_runs_the_budget(monkeypatch) -> None:
    """Ratios of 2 and 1 in turn are never within 5%: the old rule (MIN_RUNS rounds, the
    budget) decides, and the spread says how loose the figure is."""
    clock = Clock()
    monkeypatch.setattr(latency, "time", clock)
    a, b = Timed(clock, [0.002]), Timed(clock, [0.001, 0.002])
    t_a, t_b = median_latencies([a, b], {}, budget_s=0.0)  # type: ignore[list-item]
    assert t_a.runs == t_b.runs == MIN_RUNS
    assert abs(t_b.ratio_spread - 0.5 / 1.5) < 1e-9  # median ratio 1.5, interval [1, 2]


def test_ratio_spread_uses_the_median_interval() -> None:
    assert ratio_spread([1.0, 1.02, 1.0, 0.98]) == float("inf")  # too few
    # five ratios: the interval is the lowest and the highest (coverage 1 - 2/32)
    assert abs(ratio_spread([1.0, 1.02, 1.0, 0.97, 1.01]) - 0.03) < 1e-12
    # ten: the 2nd and 9th of the sorted ratios (coverage 97.9%): the outliers do not count
    r = [0.5, 0.99, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.04, 3.0]
    assert abs(ratio_spread(r) - 0.04) < 1e-12
