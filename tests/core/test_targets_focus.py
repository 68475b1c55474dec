"""A layer input's quantizer moves up through data-movement ops (ort-cpu target).

YOLOv5's Focus stem (ddddocr's detector) slices the image into four pixel phases and
concatenates them before the first conv. Quantized only at the conv's input, ONNX Runtime
slices and concatenates float32 and quantizes the result; on the same grid above the
Slices it slices uint8 codes and runs the Concat as a QLinearConcat of equal scales, with
the same codes (the values reaching the conv are a selection of the image's). The export
then writes the four phases as one SpaceToDepth of those codes (bitlens.core.export.focus).
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.export import focus as focus_export
from bitlens.core.export import spacetodepth
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.as_written import plain_convs  # noqa: F401 (a fixture)
from tests.core.export_models import random_feeds
from tests.core.test_engine import plain_run, rewritten
from tests.core.test_export_models import run

# bit for bit against ORT_DISABLE_ALL's plain Conv (as_written.plain_convs)
pytestmark = pytest.mark.usefixtures("plain_convs")


def focus(shared: bool = False, inner: bool = False) -> onnx.ModelProto:
    """x[1,3,16,16] -> Slice rows 0::2 / 1::2 -> Slice cols 0::2 / 1::2 -> Concat(4 phases)
    -> conv(12->8) -> Sigmoid/Mul (SiLU) -> conv2(8->4) -> y

    ``shared``: the Concat's output is also a graph output ``cat`` (read by a float
    consumer), so no quantizer may move above the conv input. ``inner``: the Slices read
    Sigmoid(x), a float tensor inside the network, which stays where it is."""
    rng = np.random.default_rng(0)
    mk = helper.make_node
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 12, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32), "w2"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([1 << 30], np.int64), "end"),
        numpy_helper.from_array(np.array([2], np.int64), "two"),
        numpy_helper.from_array(np.array([3], np.int64), "three"),
    ]
    nodes = [mk("Sigmoid", ["x"], ["sx"])] if inner else []
    for r, r0 in (("r0", "zero"), ("r1", "one")):
        nodes.append(mk("Slice", ["sx" if inner else "x", r0, "end", "two", "two"], [r]))
        for c, c0 in (("c0", "zero"), ("c1", "one")):
            nodes.append(mk("Slice", [r, c0, "end", "three", "two"], [f"{r}{c}"]))
    nodes += [
        mk("Concat", ["r0c0", "r1c0", "r0c1", "r1c1"], ["cat"], axis=1),
        mk("Conv", ["cat", "w1"], ["a"], name="conv1", pads=[1] * 4),
        mk("Sigmoid", ["a"], ["s"]),
        mk("Mul", ["a", "s"], ["m"]),
        mk("Conv", ["m", "w2"], ["y"], name="conv2", pads=[1] * 4),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])]
    if shared:
        outputs.append(helper.make_tensor_value_info("cat", TensorProto.FLOAT, [1, 12, 8, 8]))
    g = helper.make_graph(
        nodes, "focus", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        outputs, inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def test_focus_stem_runs_on_codes(tmp_path: Path) -> None:
    model = from_proto(focus())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    placed = engine.placement(plan)
    above = {"x", "r0", "r1", "r0c0", "r0c1", "r1c0", "r1c1", "cat"}
    assert above <= set(placed)
    assert {placed[t].range_of for t in above} == {"cat"}  # one grid, the conv input's
    # the simulation equals real QuantizeLinear/DequantizeLinear at the same tensors
    feeds = [engine.data.samples[i] for i in engine.data.evaluation]
    got = engine.run_outputs(plan)["y"]
    for g, r in zip(got, plain_run(rewritten(engine, plan), feeds), strict=True):
        np.testing.assert_array_equal(g, r)
    # and moving the quantizer up changes no value: the same as quantizing at the conv alone
    alone = Engine(model, engine.data, device="cpu")
    alone_placed = dict(placed)
    for t in above - {"cat"}:
        del alone_placed[t]
    alone._placements[plan] = alone_placed  # the placement before this change
    for g, r in zip(got, alone.run_outputs(plan)["y"], strict=True):
        np.testing.assert_array_equal(g, r)

    result, report = run(engine, plan, tmp_path / "focus.onnx")
    assert report.passed, report.failures
    # conv2 writes a graph output (never requantized): only conv1 can run QLinearConv
    assert {la.name: la.kernel for la in report.layers}["conv1"] == "QLinearConv"
    ops = collections.Counter(
        n.op_type for n in optimized_model(str(result.path), ["CPUExecutionProvider"]).graph.node
    )
    assert ops["QuantizeLinear"] == 1  # the image, once
    assert result.accounted_bytes == result.file_bytes
    if not spacetodepth.available():  # ONNX Runtime < 1.28: the Slices run on the codes
        assert ops["QLinearConcat"] == 1 and ops["Concat"] == 0
        return
    # the four phases as one SpaceToDepth of the image's codes (bitlens.core.export.focus)
    assert ops["SpaceToDepth"] == 1 and ops["Slice"] == 0 and "Concat" not in str(ops)
    assert result.layers["conv1"].focus is not None


@pytest.mark.skipif(not spacetodepth.available(), reason="uint8 SpaceToDepth: onnxruntime 1.28+")
def test_focus_as_space_to_depth_deploys_the_same_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    model = from_proto(focus())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, tmp_path / "s2d.onnx")
    assert report.passed, report.failures
    monkeypatch.setattr(focus_export, "_rewrite_one", lambda *a: None)
    plain, _ = run(engine, plan, tmp_path / "slices.onnx")  # Slices + QLinearConcat
    assert plain.layers["conv1"].focus is None
    a, b = (ort.InferenceSession(str(r.path), providers=["CPUExecutionProvider"])
            for r in (result, plain))  # fmt: skip
    for i in engine.data.evaluation:
        np.testing.assert_array_equal(
            a.run(["y"], engine.data.samples[i])[0], b.run(["y"], engine.data.samples[i])[0]
        )


@pytest.mark.parametrize("kind", ["shared", "inner"])
def test_quantizer_stays_at_the_layer_input(kind: str) -> None:
    # a float op reads the Concat's output; or the chain starts inside the network
    model = from_proto(focus(shared=kind == "shared", inner=kind == "inner"))
    engine = Engine(model, random_feeds(model.info, 2), device="cpu")
    placed = engine.placement(Plan.preset(engine.info, "W8A8"))
    assert not {"x", "sx", "r0", "r1", "r0c0", "cat"} & set(placed)


@pytest.mark.skipif(not spacetodepth.available(), reason="uint8 SpaceToDepth: onnxruntime 1.28+")
def test_focus_rewrite_leaves_no_unread_initializer(tmp_path: Path) -> None:
    """The Slices' starts, ends, axes and steps and the identity quantizers' scales go with
    the nodes that read them (CapSpot's YOLOX stem: ONNX Runtime warned of 21 unused
    initializers in the export at load)."""
    model = from_proto(focus())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "focus.onnx")
    assert report.passed, report.failures
    assert result.layers["conv1"].focus is not None
    out = onnx.load(str(result.path))
    read = {i for n in out.graph.node for i in n.input}
    assert [t.name for t in out.graph.initializer if t.name not in read] == []
    assert {"zero", "one", "end", "two", "three"}.isdisjoint(t.name for t in out.graph.initializer)
    assert result.accounted_bytes == result.file_bytes
