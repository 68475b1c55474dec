"""Models older than opset 11 evaluate with 8-bit activations (core/model/old_opset.py).

Microsoft's AECMOS models (speechmos wheel, PyTorch 1.9/1.11 exports at opset 9) showed their
weights, then every W8A8 evaluation failed with "layer 'Conv_0': int activations need opset 11,
the model is opset 9", in the window and the CLI alike.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.model.old_opset import MIN_OPSET, default_opset
from bitlens.core.plan import Plan
from tests import builders, exported_shapes
from tests.builders_ml import mlp_classifier, tree_classifier


def test_opset9_model_is_raised_and_evaluates_w8a8() -> None:
    proto = exported_shapes.two_convs(3, opset=9, crop=True)  # Slice in its opset-9 form
    model = from_proto(proto)
    assert default_opset(model.proto) == MIN_OPSET
    assert any("opset 9 raised to 11" in n for n in model.info.notes), model.info.notes
    assert model.info.layer_names == ("conv1", "conv2")  # names kept through the converter
    # the reference is still the file's model: same float outputs, bit for bit
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    file_y = ort.InferenceSession(proto.SerializeToString(), so).run(None, {"x": x})[0]
    ours_y = ort.InferenceSession(model.proto.SerializeToString(), so).run(None, {"x": x})[0]
    assert np.array_equal(file_y, ours_y)
    engine = Engine(model, Dataset.random(model.info, n=4, seed=0), device="cpu")
    ev = engine.evaluate(Plan.preset(model.info, "W8A8"))
    sqnr = ev.outputs["y"].error.sqnr_db
    assert 20 < sqnr < math.inf  # quantized, and close


def test_opset11_model_is_left_as_it_is() -> None:
    proto = builders.conv_net()
    model = from_proto(proto)
    assert default_opset(model.proto) == default_opset(proto)
    assert not any("raised to" in n for n in model.info.notes)


def test_opset9_classifier_with_a_zipmap_output_is_raised() -> None:
    """onnxmltools writes opset 9; its ZipMap output is a list of dicts in ONNX Runtime, and
    comparing the upgraded model's outputs raised AttributeError ('list' object has no
    attribute 'shape'): luscinia's LightGBM model could not be opened at all."""
    model = from_proto(mlp_classifier(opset=9))
    assert default_opset(model.proto) == MIN_OPSET
    assert any("opset 9 raised to 11" in n for n in model.info.notes), model.info.notes
    assert model.info.layer_names == ("fc1", "fc2")


def test_opset9_model_without_a_layer_op_is_not_upgraded() -> None:
    """Nothing in a tree ensemble can take 8-bit activations, so the upgrade (which runs the
    model twice to check it: minutes for luscinia's 194 MB of trees) is skipped."""
    proto = tree_classifier()
    model = from_proto(proto)
    assert default_opset(model.proto) == 9
    assert model.info.layers == ()
    assert not any("opset" in n for n in model.info.notes), model.info.notes
    assert any("TreeEnsembleClassifier" in n and "has none" in n for n in model.info.notes)
