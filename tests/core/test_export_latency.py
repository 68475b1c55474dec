"""The fidelity check's latency comparison interleaves the export's and the float model's
runs, so load from other processes on a shared machine hits both alike."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.export.latency import MIN_RUNS, WARMUP, median_latencies
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


def test_runs_interleave() -> None:
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
