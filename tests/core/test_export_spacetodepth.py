"""A stride-2 stem conv on a few input channels, exported as SpaceToDepth + a stride-1 conv
(bitlens.core.export.spacetodepth): the deployed outputs equal, bit for bit, those of
ONNX Runtime's QLinearConv on the source layout, and the fidelity check passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.export import spacetodepth
from bitlens.core.export.deployed import optimized_model
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def stem_net(k: int, pads: list[int], h: int, w: int, cin: int = 3, dim: str | None = None):
    """x[1,cin,h,w] -> Conv k x k stride 2 (8 ch) -> Relu -> Conv 3x3 (4 ch) -> y."""
    rng = np.random.default_rng(k)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, cin, k, k)).astype(np.float32), "s.w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "s.b"),
        numpy_helper.from_array(rng.normal(0, 0.2, (4, 8, 3, 3)).astype(np.float32), "c.w"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "s.w", "s.b"], ["s.c"], name="stem", pads=pads,
                         strides=[2, 2], kernel_shape=[k, k]),
        helper.make_node("Relu", ["s.c"], ["s.r"]),
        helper.make_node("Conv", ["s.r", "c.w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
    ]  # fmt: skip
    shape = [1, cin, h, dim or w]
    out = [
        1,
        4,
        (h + pads[0] + pads[2] - k) // 2 + 1,
        "Wo" if dim else (w + pads[1] + pads[3] - k) // 2 + 1,
    ]
    g = helper.make_graph(
        nodes, "stem", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)], inits,
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _engine(proto: onnx.ModelProto, dims: dict[str, int] | None = None) -> Engine:
    model = from_proto(proto)
    return Engine(model, random_feeds(model.info, 4, dims), device="cpu")


def _deployed(path: Path, engine: Engine) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [sess.run(["y"], engine.data.samples[i])[0] for i in engine.data.evaluation]


NEEDS_ORT = pytest.mark.skipif(
    not spacetodepth.available(),
    reason=f"uint8 SpaceToDepth needs onnxruntime {spacetodepth.MIN_ORT}",
)


@NEEDS_ORT
@pytest.mark.parametrize(
    ("k", "pads", "h", "w"),
    [(3, [1, 1, 1, 1], 16, 16), (7, [3, 3, 3, 3], 16, 12), (3, [0, 0, 0, 0], 12, 16),
     (5, [2, 1, 1, 2], 16, 12)],
)  # fmt: skip
def test_stem_is_space_to_depth_and_bit_identical(
    k: int, pads: list[int], h: int, w: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(stem_net(k, pads, h, w))
    plan = Plan.preset(engine.info, "W8A8")
    result, report = run(engine, plan, tmp_path / "s2d.onnx")
    assert report.passed, report.failures
    assert all(o.as_written_exact for o in report.outputs)
    assert result.layers["stem"].space_to_depth is not None
    assert result.min_ort == spacetodepth.MIN_ORT  # uint8 SpaceToDepth on the CPU
    assert {la.name: la.kernel for la in report.layers}["stem"] == "QLinearConv"
    assert result.accounted_bytes == result.file_bytes
    ops = [
        n.op_type for n in optimized_model(str(result.path), ["CPUExecutionProvider"]).graph.node
    ]
    assert "SpaceToDepth" in ops and "Pad" not in ops  # the weight chain folded at load
    # the same plan without the rewrite: ONNX Runtime's QLinearConv on the source layout
    monkeypatch.setattr(spacetodepth, "MAX_CHANNELS", 0)
    plain, _ = run(engine, plan, tmp_path / "plain.onnx")
    assert plain.layers["stem"].space_to_depth is None
    for a, b in zip(_deployed(result.path, engine), _deployed(plain.path, engine), strict=True):
        np.testing.assert_array_equal(a, b)


def test_not_rewritten_on_an_onnx_runtime_without_uint8_space_to_depth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ort, "__version__", "1.27.0")
    assert not spacetodepth.available()
    engine = _engine(stem_net(3, [1] * 4, 16, 16))
    result, report = run(engine, Plan.preset(engine.info, "W8A8"), tmp_path / "old.onnx")
    assert report.passed, report.failures
    assert result.layers["stem"].space_to_depth is None
    assert result.min_ort != spacetodepth.MIN_ORT


def test_not_rewritten_where_it_was_not_measured(tmp_path: Path) -> None:
    # a dynamic width (SpaceToDepth needs an even size), 8 input channels, other targets
    dyn = _engine(stem_net(3, [1] * 4, 16, 16, dim="W"), {"W": 16})
    wide = _engine(stem_net(3, [1] * 4, 16, 16, cin=8))
    for i, (engine, target) in enumerate(
        [(dyn, "ort-cpu"), (wide, "ort-cpu"), (_engine(stem_net(3, [1] * 4, 16, 16)), "none")]
    ):
        plan = Plan.preset(engine.info, "W8A8").with_target(target)
        result, report = run(engine, plan, tmp_path / f"m{i}.onnx")
        assert report.passed, report.failures
        assert result.layers["stem"].space_to_depth is None
        assert "SpaceToDepth" not in {n.op_type for n in onnx.load(str(result.path)).graph.node}


def test_source_weight_inverts_the_layout() -> None:
    """The fidelity check's inverse against an independent numpy rearrangement."""
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (5, 3, 3, 3)).astype(np.float32)
    new = np.zeros((5, 12, 2, 2), np.float32)
    taps = {0: (0, 1), 1: (1, 0), 2: (1, 1)}  # 3x3 pad 1: kernel row -> (new row, block row)
    for kh, (ki, bh) in taps.items():
        for kw, (kj, bw) in taps.items():
            for c in range(3):
                new[:, (bh * 2 + bw) * 3 + c, ki, kj] = w[:, c, kh, kw]
    rec = spacetodepth.SpaceToDepthRecord("n", "w", "c", "a", "b", (), (), (5, 3, 3, 3), (1, 1))
    np.testing.assert_array_equal(spacetodepth.source_weight(rec, new), w)
    new[0, 0, 0, 0] = 1.0  # a tap the rewrite adds as zero
    assert spacetodepth.source_weight(rec, new) is None


@NEEDS_ORT
def test_as_deployed_mode_runs_the_rewritten_stem(tmp_path: Path) -> None:
    from bitlens.core.export.asdeployed import DeployedRunner

    engine = _engine(stem_net(3, [1, 1, 1, 1], 16, 16))
    plan = Plan.preset(engine.info, "W8A8")
    runner = DeployedRunner(engine)
    try:
        got = runner.outputs(plan)["y"]
    finally:
        runner.close()
    result, _ = run(engine, plan, tmp_path / "s2d.onnx")
    assert result.layers["stem"].space_to_depth is not None
    for a, b in zip(got, _deployed(result.path, engine), strict=True):
        np.testing.assert_array_equal(a, b)  # bit-exact with a fresh default session
