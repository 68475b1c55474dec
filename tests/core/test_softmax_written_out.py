"""A softmax written out as Exp / ReduceSum (tf2onnx's channels-last softmax before opset 13)
is read as class scores over its axis, as a Softmax op is (core/softmax_pattern.py).

Before: napari-czann-segment's nucleus U-Net (tf2onnx 1.9, opset 12) ends in such a softmax,
[N, 1024, 1024, 2] per-pixel class probabilities, and `eval` gave them SQNR and cosine only:
no per-pixel top-1 (the segmentation itself) and no KL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import verdict
from bitlens.core.model.loader import from_proto
from bitlens.core.output_kind import class_score_axes
from bitlens.core.plan import Plan
from tests import builders as b
from tests.core.test_export_models import run


def _segmenter(opset: int = 12, same_exp: bool = True) -> onnx.ModelProto:
    """x[1,3,6,6] -> Conv(3->4) -> Relu -> Conv(4->2) -> c, then as tf2onnx writes it:

        c - ReduceMax(c, axis 1) -> Exp -> Transpose(0,2,3,1) ------------\\
                                    `-> ReduceSum(axis 1) -> Reshape [1,6,6,1] -> Div -> mask

    mask [1, 6, 6, 2]: two classes per pixel, on axis 3. ``same_exp=False`` sums another
    Exp (of c itself), which is no softmax."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["h"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Conv", ["r", "w2", "b2"], ["c"], name="conv2"),
        helper.make_node("ReduceMax", ["c"], ["mx"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["c", "mx"], ["s"]),
        helper.make_node("Exp", ["s"], ["e"]),
        helper.make_node("Exp", ["c"], ["e2"]),
        helper.make_node("Transpose", ["e"], ["et"], perm=[0, 2, 3, 1]),
    ]
    summed = "e" if same_exp else "e2"
    inits = [b.init("w1", b.weights((4, 3, 3, 3), seed=1)), b.init("b1", b.bias(4, seed=2)),
             b.init("w2", b.weights((2, 4, 1, 1), seed=3)), b.init("b2", b.bias(2, seed=4)),
             b.init("shape", np.array([1, 6, 6, 1], np.int64))]  # fmt: skip
    if opset >= 13:  # ReduceSum's axes became an input at opset 13
        inits.append(b.init("axes", np.array([1], np.int64)))
        nodes.append(helper.make_node("ReduceSum", [summed, "axes"], ["sum"], keepdims=1))
    else:
        nodes.append(helper.make_node("ReduceSum", [summed], ["sum"], axes=[1], keepdims=1))
    nodes += [
        helper.make_node("Reshape", ["sum", "shape"], ["sum_t"]),
        helper.make_node("Div", ["et", "sum_t"], ["mask"]),
    ]
    graph = helper.make_graph(
        nodes, "segmenter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 6, 6, 2])],
        inits,
    )  # fmt: skip
    return b.model(graph, opset=opset)


def test_written_out_softmax_is_read_over_its_axis() -> None:
    assert class_score_axes(_segmenter(12), ["mask"]) == {"mask": 3}
    assert class_score_axes(_segmenter(13), ["mask"]) == {"mask": 3}
    # an Exp divided by the sum of another Exp is not a softmax: judged by SQNR and cosine
    assert class_score_axes(_segmenter(12, same_exp=False), ["mask"]) == {}


def test_segmentation_gets_top1_per_pixel(tmp_path: Path) -> None:
    """A neutral name (no "prob" or "score" in it) on purpose. The per-pixel top-1 agreement equals float64 numpy's over the classes' axis, on the
    float model in plain ONNX Runtime against the engine's W4A8 values; the export's
    verdict reads the output as classes too."""
    proto = _segmenter(12)
    model = from_proto(proto)
    engine = Engine(model, Dataset.random(model.info, n=6, seed=0), device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    plan = Plan.preset(engine.model.info, "W4A8")
    out = engine.evaluate(plan).outputs["mask"]
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    idx = engine.data.evaluation
    ref = np.concatenate([sess.run(["mask"], engine.data.samples[i])[0] for i in idx])
    got = np.concatenate(engine.run_outputs(plan, idx)["mask"])
    r, g = ref.astype(np.float64), got.astype(np.float64)
    want = np.mean(np.argmax(r, axis=3) == np.argmax(g, axis=3))
    assert out.top1_agreement is not None and out.top1_agreement == want
    assert out.kl is not None
    assert verdict.looks_like_classes(ref, "mask" in engine.class_score_axes, 3)
    _, report = run(engine, Plan.preset(engine.model.info, "W8A8"), tmp_path / "s.onnx")
    assert report.outputs[0].top1_agreement is not None
