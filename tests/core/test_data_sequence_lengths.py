"""Random inputs for an RNN/GRU/LSTM's ``sequence_lens`` given as a graph input.

Random integers below 10 for a 7-step sequence: ONNX Runtime refused the run ("Invalid
value/s in sequence_lens. All values must be >= 0 and <= seq_length"), and `bitlens eval`
stopped on a valid model with no data file. Every sequence now gets its full length.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import FLOAT, init, model, weights


def rnn_with_lengths() -> onnx.ModelProto:
    """x[7,2,6], sl[2] (int32) -> bidirectional RNN(8) -> last states -> Gemm -> y[2,4]."""
    h, d = 8, 6
    mk = helper.make_node
    g = helper.make_graph(
        [mk("RNN", ["x", "W", "R", "B", "sl"], ["", "yh"], name="rnn", hidden_size=h,
            direction="bidirectional"),
         mk("Transpose", ["yh"], ["t"], perm=[1, 0, 2]), mk("Reshape", ["t", "shape"], ["f"]),
         mk("Gemm", ["f", "wo"], ["y"], name="head")],
        "rnn_lengths",
        [helper.make_tensor_value_info("x", FLOAT, [7, 2, d]),
         helper.make_tensor_value_info("sl", TensorProto.INT32, [2])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 4])],
        [init("W", weights((2, h, d), seed=1, channel_axis=1)),
         init("R", weights((2, h, h), seed=2, channel_axis=1)),
         init("B", np.zeros((2, 2 * h), np.float32)),
         init("shape", np.array([2, 2 * h], np.int64)), init("wo", weights((2 * h, 4), seed=3))],
    )  # fmt: skip
    return model(g, opset=17)


def test_random_sequence_lengths_are_the_full_sequence() -> None:
    m = from_proto(rnn_with_lengths())
    data = Dataset.random(m.info, n=4, seed=0)
    lengths = np.concatenate([np.ravel(f["sl"]) for f in data.samples])
    assert lengths.dtype == np.int32 and set(lengths.tolist()) == {7}
    result = Engine(m, data, device="cpu").evaluate(Plan.preset(m.info, "W8A8"))
    assert np.isfinite(result.outputs["y"].error.sqnr_db)
