"""An ArgMax output (class indices) is judged by how many labels stay the float model's,
not by an SQNR of the indices (core/output_kind.label_outputs).

sudachi-b-imitator's only output is ArgMax's int64 [1, 256] part-of-speech ids; eval printed
"SQNR 38.1 dB, cosine 0.99992, max abs 1" for it: numbers about label ids 11 and 12 being
close, which says nothing about how many characters got another part of speech.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.builders import FLOAT, init, model, weights


def tagger() -> helper.ModelProto:
    """x[1,32,8] -> MatMul(w[8,5]) -> ArgMax(axis -1) -> Cast -> tags int64 [1, 32]."""
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["scores"], name="head"),
            helper.make_node("ArgMax", ["scores"], ["ids"], axis=-1, keepdims=0),
            helper.make_node("Cast", ["ids"], ["tags"], to=TensorProto.INT64),
        ],
        "tagger",
        [helper.make_tensor_value_info("x", FLOAT, [1, 32, 8])],
        [helper.make_tensor_value_info("tags", TensorProto.INT64, [1, 32])],
        [init("w", weights((8, 5), seed=3, fan_in=8, channel_axis=1))],
    )
    return model(g)


def test_argmax_output_gets_the_fraction_of_unchanged_labels() -> None:
    proto = tagger()
    loaded = from_proto(proto)
    engine = Engine(loaded, Dataset.random(loaded.info, n=8, seed=0), device="cpu")
    plan = Plan.preset(loaded.info, "binary")
    out = engine.evaluate(plan).outputs["tags"]
    # independent reference: the file's float labels in plain ONNX Runtime
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    want = [sess.run(None, engine.data.samples[i])[0] for i in engine.data.evaluation]
    got = engine.run_outputs(plan)["tags"]
    same = np.mean(np.concatenate([(w == g).ravel() for w, g in zip(want, got, strict=True)]))
    assert out.top1_agreement is not None and out.kl is None
    assert 0 < same < 1 and out.top1_agreement == same  # binary weights move some labels
