"""Tree ensembles hold one list entry per tree node (luscinia 1.0.0's LightGBM model: 4.8
million nodes, 195 MB). Shape inference ran on a skeleton that copied every list, then
serialized and parsed it twice: 3.4 GB and a minute to open that file. The skeleton now
keeps one entry of each per-node list, which is all ONNX's inference of those ops reads
(bitlens/core/model/shapes.py); what it infers must not change.

    x [N, 4] -> TreeEnsembleClassifier (600 stumps) -> label0, probs0 -> Cast, Identity, ZipMap
    x [N, 4] -> TreeEnsembleRegressor (600 stumps, 2 targets) -> y [N, 2]
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.core.model.shapes import (
    STRIP_MIN_ELEMENTS,
    collect_value_info,
    infer_value_info,
    skeleton,
)
from bitlens.core.model.types import TensorInfo
from tests.builders_ml import tree_classifier, tree_regressor

TREES = 600  # 1800 nodes and 1200 leaf entries: each list past STRIP_MIN_ELEMENTS


def _reference(proto: onnx.ModelProto) -> dict[str, TensorInfo]:
    """What ONNX infers on the whole model, lists and all (the independent reference)."""
    out: dict[str, TensorInfo] = {}
    full = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False)
    collect_value_info(full.graph, out)
    return out


@pytest.mark.parametrize("build", [tree_classifier, tree_regressor])
def test_skeleton_drops_the_trees_and_inference_reads_the_same_types(build) -> None:
    proto = build(trees=TREES)
    assert STRIP_MIN_ELEMENTS <= 2 * TREES  # each leaf list: 2 entries per stump
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    got = sess.run(None, {"x": x})  # a real ensemble: ONNX Runtime runs it
    assert np.shape(got[0])[0] == 5

    sk = skeleton(proto)
    (tree,) = [n for n in sk.graph.node if n.op_type.startswith("TreeEnsemble")]
    lists = {a.name: len(a.floats) + len(a.ints) + len(a.strings) for a in tree.attribute}
    # every attribute stays, set (inference checks which are); the skeleton copied all
    # 1800 entries of each list before
    (orig,) = [n for n in proto.graph.node if n.op_type.startswith("TreeEnsemble")]
    assert set(lists) == {a.name for a in orig.attribute}
    assert all(k <= 2 for n, k in lists.items() if not n.startswith("classlabels_")), lists
    assert sk.ByteSize() < proto.ByteSize() / 20

    info = infer_value_info(proto)
    assert info == _reference(proto)
    if build is tree_classifier:  # ai.onnx.ml 1 (as luscinia's): the label's type only
        assert info["label0"].dtype == "int64"
    else:  # ai.onnx.ml 3: [N, n_targets]
        assert info["y"].shape is not None and info["y"].shape[1] == 2
        assert info["y"].dtype == "float32"
