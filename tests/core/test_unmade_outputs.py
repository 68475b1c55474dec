"""Graph outputs no node makes: an initializer listed as an output (a constant an exporter
returns alongside the result), and a graph input listed as an output.

`bitlens eval` stopped with a traceback (KeyError 'k' in engine/reuse.py): a whole run
fetched only outputs some node makes, and the part chain the search runs had no part
giving them ("ONNX Runtime failed to run the model: 'k'"). They are now fetched or given
as they are, and their error is 0.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from bitlens.core.plan import Plan
from bitlens.core.search import Budget
from tests.builders import FLOAT, init, model, weights
from tests.core.test_search import _engine, _run


def unmade_outputs() -> onnx.ModelProto:
    """x[4,16] -> MatMul -> Relu -> MatMul -> Relu -> MatMul -> y; outputs y, k (an
    initializer) and x itself."""
    mk = helper.make_node
    g = helper.make_graph(
        [mk("MatMul", ["x", "w1"], ["a"], name="fc1"), mk("Relu", ["a"], ["r"]),
         mk("MatMul", ["r", "w2"], ["b"], name="fc2"), mk("Relu", ["b"], ["s"]),
         mk("MatMul", ["s", "w3"], ["y"], name="fc3")],
        "unmade", [helper.make_tensor_value_info("x", FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", FLOAT, [4, 8]),
         helper.make_tensor_value_info("k", FLOAT, [3]),
         helper.make_tensor_value_info("x", FLOAT, [4, 16])],
        [init("w1", weights((16, 32), seed=1, channel_axis=1)),
         init("w2", weights((32, 32), seed=2, channel_axis=1)),
         init("w3", weights((32, 8), seed=3, channel_axis=1)),
         init("k", np.array([1.0, 2.0, 3.0], np.float32))],
    )  # fmt: skip
    return model(g, opset=17)


def test_outputs_no_node_makes_evaluate_and_search() -> None:
    engine = _engine(unmade_outputs())
    result = engine.evaluate(Plan.preset(engine.info, "W8A8"))
    assert result.outputs["k"].error.max_abs == 0 and result.outputs["x"].error.max_abs == 0
    assert np.isfinite(result.outputs["y"].error.sqnr_db)
    found, _ = _run(engine, Budget(max_error=0.05))
    assert found.best.plan.choices and len(found.tried) > 1
