"""Small models shaped like scikit-learn conversions (skl2onnx, onnxmltools): ai.onnx.ml
operators, a ZipMap whose output is a sequence of maps, and a file that declares only the
ai.onnx.ml domain, as ONNX Runtime's own ``logreg_iris.onnx`` does."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.builders import FLOAT, bias, init, weights

ML = "ai.onnx.ml"


def _zipmap_outputs(probs: str, classes: int) -> tuple[onnx.NodeProto, onnx.ValueInfoProto]:
    zipmap = helper.make_node(
        "ZipMap", [probs], ["probabilities"], domain=ML, classlabels_int64s=list(range(classes))
    )
    seq = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(FLOAT, []))
    )
    return zipmap, helper.make_value_info("probabilities", seq)


def _ml_model(graph: onnx.GraphProto, opsets: list[tuple[str, int]], ir: int) -> onnx.ModelProto:
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
        producer_name="bitlens-tests",
    )
    m.ir_version = ir
    onnx.checker.check_model(m)
    return m


def mlp_classifier(
    features: int = 6, hidden: int = 16, classes: int = 3, opset: int = 13
) -> onnx.ModelProto:
    """skl2onnx's MLPClassifier: MatMul/Add/Relu, Softmax, ArgMax label, and a ZipMap whose
    ``probabilities`` output is a sequence of {class: probability} maps."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["z0"], name="fc2"),
        helper.make_node("Add", ["z0", "b2"], ["z1"]),
        helper.make_node("Softmax", ["z1"], ["probs"], axis=1),
        helper.make_node("ArgMax", ["probs"], ["label"], axis=1, keepdims=0),
    ]
    zipmap, seq_out = _zipmap_outputs("probs", classes)
    graph = helper.make_graph(
        [*nodes, zipmap],
        "mlp_classifier",
        [helper.make_tensor_value_info("x", FLOAT, ["N", features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]), seq_out],
        initializer=[
            init("w1", weights((features, hidden), seed=1, channel_axis=1)),
            init("b1", bias(hidden, seed=2)),
            init("w2", weights((hidden, classes), seed=3, channel_axis=1)),
            init("b2", bias(classes, seed=4)),
        ],
    )
    return _ml_model(graph, [("", opset), (ML, 1)], ir=8 if opset >= 13 else 4)


def _stumps(trees: int, features: int) -> dict[str, list]:
    """``trees`` stumps: a split on feature t % features at t / trees, then two leaves."""
    t = np.arange(trees)
    ids = np.repeat(t, 3).tolist()
    return dict(
        nodes_treeids=ids, nodes_nodeids=[0, 1, 2] * trees,
        nodes_featureids=np.repeat(t % features, 3).tolist(),
        nodes_values=np.repeat(t / trees, 3).astype(np.float32).tolist(),
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * trees, nodes_truenodeids=[1, 0, 0] * trees,
        nodes_falsenodeids=[2, 0, 0] * trees, nodes_missing_value_tracks_true=[0, 0, 0] * trees,
        nodes_hitrates=[1.0, 1.0, 1.0] * trees,
    )  # fmt: skip


def tree_classifier(features: int = 4, trees: int = 1) -> onnx.ModelProto:
    """onnxmltools' LightGBM classifier at opset 9 (luscinia's P3_0017_full.onnx): one
    TreeEnsembleClassifier (stumps here), Cast of the label, Identity, ZipMap; IR 4."""
    leaves = np.repeat(np.arange(trees), 2).tolist()
    tree = helper.make_node(
        "TreeEnsembleClassifier", ["x"], ["label0", "probs0"], domain=ML,
        classlabels_int64s=[0, 1], **_stumps(trees, features), class_treeids=leaves,
        class_nodeids=[1, 2] * trees, class_ids=[1, 1] * trees,
        class_weights=[-1.0, 1.0] * trees, post_transform="LOGISTIC",
    )  # fmt: skip
    cast = helper.make_node("Cast", ["label0"], ["label"], to=TensorProto.INT64)
    ident = helper.make_node("Identity", ["probs0"], ["probs"])
    zipmap, seq_out = _zipmap_outputs("probs", 2)
    graph = helper.make_graph(
        [tree, cast, ident, zipmap],
        "tree_classifier",
        [helper.make_tensor_value_info("x", FLOAT, [None, features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]), seq_out],
    )
    return _ml_model(graph, [("", 9), (ML, 1)], ir=4)


def tree_regressor(features: int = 4, trees: int = 1, targets: int = 2) -> onnx.ModelProto:
    """skl2onnx's tree regressors: one TreeEnsembleRegressor of ``targets`` outputs."""
    leaves = np.repeat(np.arange(trees), 2).tolist()
    tree = helper.make_node(
        "TreeEnsembleRegressor", ["x"], ["y"], domain=ML, n_targets=targets,
        **_stumps(trees, features), target_treeids=leaves, target_nodeids=[1, 2] * trees,
        target_ids=(np.arange(2 * trees) % targets).tolist(),
        target_weights=[-0.5, 0.5] * trees,
    )  # fmt: skip
    graph = helper.make_graph(
        [tree],
        "tree_regressor",
        [helper.make_tensor_value_info("x", FLOAT, [None, features])],
        [helper.make_tensor_value_info("y", FLOAT, [None, targets])],
    )
    return _ml_model(graph, [("", 13), (ML, 3)], ir=8)


def ml_only_classifier(features: int = 4, classes: int = 3) -> onnx.ModelProto:
    """onnxmltools' LogisticRegression as in ``logreg_iris.onnx``: LinearClassifier,
    Normalizer, ZipMap, and no ONNX-domain opset declared (none is needed); IR 3."""
    rng = np.random.default_rng(5)
    coefs = rng.standard_normal(features * classes).astype(np.float32).tolist()
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "scores"],
            domain=ML,
            coefficients=coefs,
            intercepts=[0.1] * classes,
            classlabels_ints=list(range(classes)),
            multi_class=1,
        ),
        helper.make_node("Normalizer", ["scores"], ["probs"], domain=ML, norm="L1"),
    ]
    zipmap, seq_out = _zipmap_outputs("probs", classes)
    graph = helper.make_graph(
        [*nodes, zipmap],
        "ml_only_classifier",
        [helper.make_tensor_value_info("x", FLOAT, [2, features])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [2]), seq_out],
    )
    return _ml_model(graph, [(ML, 1)], ir=3)
