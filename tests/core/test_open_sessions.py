"""Open + calibrate + first evaluation builds each session once (issue 11's open row)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, reuse
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.engine_models import IR_VERSION


def constants_first_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> Conv(W1) -> Relu -> Add(shift) -> Conv(W2) -> Relu -> GAP -> Flatten ->
    Gemm(W3) -> y[N,10], where ``shift`` is a Constant node ahead of the first conv (as
    paddle2onnx writes PP-OCRv4 rec: 135 Constant nodes before its first conv)."""
    rng = np.random.default_rng(seed)
    inits = {
        "W1": rng.normal(0, 0.3, (8, 3, 3, 3)),
        "W2": rng.normal(0, 0.2, (16, 8, 3, 3)),
        "W3": rng.normal(0, 0.3, (10, 16)),
    }
    shift = numpy_helper.from_array(np.full((1, 8, 1, 1), 0.25, np.float32), "shift_value")
    nodes = [
        helper.make_node("Constant", [], ["shift"], name="shift", value=shift),
        helper.make_node("Conv", ["x", "W1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Add", ["r1", "shift"], ["a1"], name="add1"),
        helper.make_node("Conv", ["a1", "W2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["p"], name="gap"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W3"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "constants_first_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def test_first_evaluation_builds_the_whole_graph_once(monkeypatch) -> None:
    """The first layer's part starts after a Constant node and needs no kept value: the
    first W8A8 evaluation runs the whole graph's session (built on the side thread), not a
    second session of the same nodes; its numbers equal those of the straightforward runs
    (no kept values, every plan on the whole graph)."""
    built: list[object] = []
    real = reuse.make_session

    def make_session(*args, **kwargs):
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(reuse, "make_session", make_session)
    loaded = from_proto(constants_first_cnn())
    data = Dataset.random(loaded.info, n=4, seed=2)
    plan = Plan.preset(loaded.info, "W8A8")
    results = []
    for reuse_prefix in (True, False):
        engine = Engine(loaded, data, device="cpu")
        engine.reuse_prefix = reuse_prefix
        for _ in engine.calibrate("minmax"):
            pass
        cuts = next(c for c in engine._cuts.values() if c is not None) if reuse_prefix else None
        results.append(engine.evaluate(plan))
        if reuse_prefix:
            assert cuts is not None and cuts.start[cuts.order[0]] > 0  # the Constant first
            assert not engine._tails and not built  # no session of its own for the part
        engine.close()
    assert results[0] == results[1]
