"""Random inputs for a model whose input's axis 0 is fixed above 1 and is no batch.

silero-vad's LSTM state is ``state: [2, batch, 128]`` next to ``input: [batch, samples]``;
random data once replaced the fixed 2 by the sample count and refused the model
("inputs hold different numbers of samples: {'input': 8, 'state': 4, ...}").
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.model.loader import from_proto
from tests.core.engine_models import _model


def stateful() -> onnx.ModelProto:
    """x[N, 4] -> MatMul(W) -> y[N, 4];  state[2, N, 4] -> ReduceSum(axis 0) -> s[N, 4]"""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "W")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"),
            helper.make_node("ReduceSum", ["state", "axes"], ["s"], keepdims=0, name="sum"),
        ],
        "stateful",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "B", 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, ["B", 4]),
        ],
        [w, axes],
    )
    return _model(g)


def test_a_fixed_leading_axis_above_one_is_kept_whole_in_every_feed() -> None:
    proto = stateful()
    info = from_proto(proto).info
    data = Dataset.random(info, n=6, dims={"B": 1})
    assert data.generated and len(data.samples) == 6
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for feed in data.samples:
        assert feed["state"].shape == (2, 1, 4) and feed["x"].shape == (1, 4)
        sess.run(None, feed)  # the model runs on every feed as generated
    states = np.stack([data.samples[i]["state"] for i in range(6)])
    assert len({s.tobytes() for s in states}) == 6  # one random state per sample


def rate_switch() -> onnx.ModelProto:
    """sr[] -> Equal(16000) -> If: then y = x @ W; else Reshape(x, [3, 3]) (cannot run on [1, 4]),
    as silero-vad branches on its sample rate."""
    w = numpy_helper.from_array(np.eye(4, dtype=np.float32), "W")
    then = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["t"], name="mm")], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    shape = numpy_helper.from_array(np.array([3, 3], np.int64), "s33")
    other = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s33"], ["e"], name="bad")], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [3, 3])], [shape],
    )  # fmt: skip
    rate = numpy_helper.from_array(np.array(16000, np.int64))
    g = helper.make_graph(
        [
            helper.make_node("Constant", [], ["rate"], value=rate),
            helper.make_node("Equal", ["sr", "rate"], ["is16k"]),
            helper.make_node("If", ["is16k"], ["y"], then_branch=then, else_branch=other),
        ],
        "rate_switch",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("sr", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["a", "b"])],
        [w],
    )
    return _model(g)


def test_an_integer_input_compared_with_a_constant_gets_that_value() -> None:
    from bitlens.core.input_values import compared_constants

    proto = rate_switch()
    info = from_proto(proto).info
    assert compared_constants(proto) == {"sr": 16000}
    data = Dataset.random(info, n=4, values=compared_constants(proto))
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for feed in data.samples:
        assert feed["sr"].shape == () and int(feed["sr"]) == 16000
        np.testing.assert_array_equal(sess.run(None, feed)[0], feed["x"])  # the 16 kHz branch
    assert any(int(f["sr"]) != 16000 for f in Dataset.random(info, n=4).samples)  # a guess


def test_the_cli_random_data_fixes_compared_integer_inputs_too(tmp_path) -> None:
    """`bitlens eval` on random inputs takes the 16 kHz branch, as the window does."""
    from tests.core.test_cli_inspect import run_cli

    path = tmp_path / "rate.onnx"
    path.write_bytes(rate_switch().SerializeToString())
    res = run_cli("eval", str(path), "--preset", "W8A8", "--samples", "4", "--json")
    assert res.returncode == 0, res.stderr
