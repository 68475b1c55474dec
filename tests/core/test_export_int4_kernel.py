"""4-bit integer weights next to 8-bit activations run as ONNX Runtime's integer kernels.

Before, only 8-bit weights made an integer-kernel layer: an int4 layer was written as a
float Conv/MatMul/Gemm on dequantized weights, so int4 plans ran slower than W8A8 (and
sometimes than float), and on this net the deployed file differed from the simulation by
3 LSB (its MatMul reading a quantized input was fused by ONNX Runtime anyway). Now the
codes are stored as INT4/UINT4 and Cast to int8/uint8 before the DequantizeLinear; ONNX
Runtime folds the Cast when the session starts and fuses QLinearConv / QGemm, and the
engine simulates the layer exactly like an 8-bit one (int32 bias, output requantization).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper

from bitlens.core.engine import Engine
from bitlens.core.errors import ExportError
from bitlens.core.export import opsets
from bitlens.core.export.exporter import ExportOptions, export, integer_kernel_layers, preflight
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.targets import TENSORRT, kernel_format, placement
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_sim_equals_export import _assert_sim_equals_file, linear_conv_net

LAYERS = {"conv", "linear", "head"}  # Conv, MatMul (+ bias Add), Gemm


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(linear_conv_net())  # opset 17: INT4 needs 21
    return Engine(model, random_feeds(model.info, 4), device="cpu")


def _plan(engine: Engine, weights: str) -> Plan:
    w8a8 = Plan.preset(engine.info, "W8A8")
    fmt = parse_format(weights)
    return w8a8.with_choices(
        {n: dataclasses.replace(c, weight=fmt) for n, c in w8a8.choices.items()}
    )


def _optimized_ops(path: Path, tmp: Path) -> list[str]:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]


def _as_int8_codes(path: Path, out: Path) -> None:
    """The file with each Cast of 4-bit codes replaced by the codes stored as int8/uint8
    (numpy's cast of the same values): what an 8-bit export of these codes holds."""
    m = onnx.load(str(path))
    inits = {t.name: t for t in m.graph.initializer}
    keep = []
    for node in m.graph.node:
        src = inits.get(node.input[0]) if node.op_type == "Cast" else None
        if src is not None and src.data_type in (TensorProto.INT4, TensorProto.UINT4):
            wide = np.int8 if src.data_type == TensorProto.INT4 else np.uint8
            codes = numpy_helper.to_array(src).astype(wide)
            m.graph.initializer.append(numpy_helper.from_array(codes, node.output[0]))
        else:
            keep.append(node)
    del m.graph.node[:]
    m.graph.node.extend(keep)
    onnx.save(m, str(out))


def _fused_and_faithful(engine: Engine, plan: Plan, result, out: Path, tmp: Path) -> None:
    """ONNX Runtime folds the Casts (and unpacking) and fuses every layer into an integer
    kernel; the simulation is the file as written, bit for bit; the fidelity check passes."""
    ops = _optimized_ops(out, tmp)
    assert "QLinearConv" in ops and ops.count("QGemm") == 2
    assert not {"Conv", "MatMul", "Gemm", "Cast"} & set(ops)
    _assert_sim_equals_file(engine, plan, out)
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0))
    assert report.passed, report.to_dict()


def _run(path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(["y"], feed)[0]


@pytest.mark.parametrize("weights", ["int4 sym ch", "uint4 asym ch"])
def test_int4_layers_run_as_integer_kernels_exactly_as_simulated(
    engine: Engine, weights: str, tmp_path: Path
) -> None:
    plan = _plan(engine, weights)
    assert integer_kernel_layers(engine.info, plan, engine.placement(plan)) == LAYERS
    out = tmp_path / "w4a8.onnx"
    result = drain(export(engine, plan, out))
    assert (result.source_opset, result.opset) == (17, 21)  # upgraded for INT4
    assert {n for n, r in result.layers.items() if r.integer_kernel and r.bias} == LAYERS
    m = onnx.load(str(out))
    four = TensorProto.INT4 if weights.startswith("int") else TensorProto.UINT4
    eight = TensorProto.INT8 if weights.startswith("int") else TensorProto.UINT8
    codes = {t.name for t in m.graph.initializer if t.data_type == four}
    casts = [n for n in m.graph.node if n.op_type == "Cast" and n.input[0] in codes]
    assert len(casts) >= 3 and all(n.attribute[0].i == eight for n in casts)
    # 4 bits a code in the file: the accounting's bytes are the stored ones
    conv = result.layers["conv"]
    assert sum(s.nbytes for s in conv.weights[0].stored if s.role == "codes") == 8 * 4 * 9 // 2
    assert conv.bytes_stored == conv.bytes_planned
    _fused_and_faithful(engine, plan, result, out, tmp_path)
    # deployed, the 4-bit file computes exactly what the same codes stored as 8 bits do
    _as_int8_codes(out, tmp_path / "w8codes.onnx")
    feed = engine.data.samples[engine.data.evaluation[0]]
    np.testing.assert_array_equal(_run(out, feed), _run(tmp_path / "w8codes.onnx", feed))


def test_the_simulation_requantizes_an_int4_conv_like_an_int8_one(engine: Engine) -> None:
    """The target's output quantizers (and so the simulated graph) are those of W8A8."""
    w8a8 = Plan.preset(engine.info, "W8A8")
    assert placement(_plan(engine, "int4 sym ch")) == placement(w8a8)
    assert "cr" in placement(w8a8)  # the conv's output (after its Relu) is requantized


def test_other_widths_and_targets_stay_float_layers(engine: Engine) -> None:
    """Blocked codes have no integer kernel, 16-bit ones no 8-bit one; TensorRT gets no Cast
    from 4 bits: those layers keep float weights (2- to 7-bit widths:
    test_export_kernel_widths.py)."""
    layer = engine.info.layer("conv")
    act = parse_format("uint8 asym")
    for weights in ("int16 sym ch", "int4 sym blk32", "int3 sym blk16"):
        assert not kernel_format(layer, parse_format(weights), act, False), weights
    assert kernel_format(layer, parse_format("int4 sym ch"), act, False)
    trt = _plan(engine, "int4 sym ch").with_target(TENSORRT)
    assert integer_kernel_layers(engine.info, trt) == set()


def test_a_float_matmul_behind_a_float_cast_keeps_its_int3_weights(
    engine: Engine, tmp_path: Path
) -> None:
    """Blocked int3 weights stay a float layer; the MatMul's Cast(to float) before its bias Add
    (as tf2onnx and open_nsfw write it) hid the MatMul + Add -> Gemm fusion from the guard,
    so ONNX Runtime re-quantized the folded int3 weights to int8 in a QGemm and the
    deployed file moved by 3 LSB from the simulation (the fidelity check failed)."""
    plan = _plan(engine, "int3 sym blk16")
    out = tmp_path / "w3a8.onnx"
    result = drain(export(engine, plan, out))
    assert not any(r.integer_kernel for r in result.layers.values())
    assert "QGemm" not in _optimized_ops(out, tmp_path)
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0))
    assert report.passed, report.to_dict()


@pytest.mark.parametrize("weights", ["int4 sym ch", "uint4 asym ch"])
def test_below_opset_21_the_codes_are_stored_packed_and_still_run_as_kernels(
    engine: Engine, weights: str, tmp_path: Path
) -> None:
    """Where the model cannot be upgraded to opset 21 (ONNX INT4), the export keeps its
    opset and stores the 4-bit codes as a packed stream that opset-13 operators unpack and
    Cast to int8, which ONNX Runtime folds at load: the same kernels, values and bytes, said
    in a note (an ExportError before: no upgrade kept the model's outputs; PP-OCRv4 rec)."""
    plan = _plan(engine, weights)
    out = tmp_path / "w4a8_17.onnx"
    result = drain(export(engine, plan, out, ExportOptions(opset=17)))
    assert result.opset == 17
    assert any("stored as packed codes" in n for n in result.notes)
    m = onnx.load(str(out))
    assert not [t for t in m.graph.initializer if t.data_type == TensorProto.INT4]
    assert {n for n, r in result.layers.items() if r.integer_kernel} == LAYERS
    assert (
        sum(s.nbytes for s in result.layers["conv"].weights[0].stored if s.role == "codes")
        == 8 * 4 * 9 // 2
    )
    ops = _optimized_ops(out, tmp_path)
    assert "QLinearConv" in ops and ops.count("QGemm") == 2
    _assert_sim_equals_file(engine, plan, out)
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0))
    assert report.passed, report.to_dict()


def test_an_upgrade_to_21_that_changes_outputs_keeps_the_lower_opset(monkeypatch) -> None:
    real = opsets.convert

    def convert(model, target, feeds, source=None):
        if target >= 21:  # as the version converter does for some models (PP-OCRv4 rec)
            raise ExportError(f"upgrading the model to opset {target} changed output 'y'")
        return real(model, target, feeds, source)

    monkeypatch.setattr(opsets, "convert", convert)
    model = from_proto(builders.opset12_constant_weights())
    engine = Engine(model, random_feeds(model.info, 2), device="cpu")
    w4a8 = Plan.preset(engine.info, "W4A8")
    assert integer_kernel_layers(engine.info, w4a8, engine.placement(w4a8))
    prepared = preflight(engine, w4a8)
    assert prepared.opset == 13
    assert any("stored as packed codes" in n for n in prepared.notes)
