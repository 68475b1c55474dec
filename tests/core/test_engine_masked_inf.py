"""A float model whose attention mask is filled with -inf by design (PyTorch's
``masked_fill(~mask, float('-inf'))`` before a Softmax, as trueocr's reading-order
transformer exports it): the infinities are in tensors the engine only measures, never in a
layer's input or output, and the outputs are finite. The float reference refused the model
("the float model computes NaN or infinite values in '/Constant_12_output_0'")."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import FLOAT, init, model, weights


def masked_scores() -> onnx.ModelProto:
    """x[2,6] -> MatMul(w[6,5]) -> Add(Where(mask[2,5], 0, Constant -inf)) -> Softmax -> y"""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["s"], name="scores"),
        helper.make_node(
            "Constant", [], ["neg_inf"],
            value=numpy_helper.from_array(np.array(-np.inf, np.float32)),
        ),
        helper.make_node(
            "Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0, np.float32))
        ),
        helper.make_node("Where", ["mask", "zero", "neg_inf"], ["fill"]),
        helper.make_node("Add", ["s", "fill"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["y"], axis=-1),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes, "masked_scores",
        [helper.make_tensor_value_info("x", FLOAT, [2, 6]),
         helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 5])],
        [helper.make_tensor_value_info("y", FLOAT, [2, 5])],
        [init("w", weights((6, 5), seed=3))],
    )  # fmt: skip
    return model(g, opset=17)


def test_a_minus_inf_mask_fill_does_not_stop_the_float_reference() -> None:
    m = masked_scores()
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((4, 2, 6)).astype(np.float32),
        "mask": np.array([[True, False, True, True, False]] * 8).reshape(4, 2, 5),
    }
    loaded = from_proto(m)
    data = Dataset.from_arrays(
        loaded.info, {k: v.reshape(8, *v.shape[2:]) for k, v in feeds.items()}
    )
    engine = Engine(loaded, data, device="cpu")
    ev = engine.evaluate(Plan.preset(loaded.info, "W8A8"))
    assert np.isfinite(ev.outputs["y"].error.sqnr_db)
    # the float outputs the engine compares with are plain ONNX Runtime's
    ref = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = engine.run_outputs(Plan(loaded.info)).values()
    i = data.evaluation[0]
    (want,) = ref.run(None, {k: v for k, v in data.samples[i].items()})
    np.testing.assert_allclose(got[0], want, rtol=1e-6, atol=1e-7)
    assert np.all(want[:, 1] == 0) and np.isfinite(want).all()  # masked columns: exactly 0
