"""2-, 3-, 5-, 6- and 7-bit integer weights, and ternary and binary ones, next to 8-bit
activations run as ONNX Runtime's integer kernels, at their own file size.

Before, only 8- and 4-bit weights made an integer-kernel layer: a layer with int3 (or int2,
int5, int6, int7, ternary, binary) weights was written as a float Conv/MatMul/Gemm on weights folded at load,
with Q/DQ work around it, so plans using those widths ran slower than W8A8. Now the codes are
stored as an n-bit packed stream that opset-13 operators unpack and Cast to int8/uint8 before
the DequantizeLinear (zero points likewise; ternary codes -1/0/+1 and binary signs -1/+1 with
alpha as the scale); ONNX Runtime folds that constant subgraph when the
session starts and fuses QLinearConv / QGemm, and the engine simulates the layer exactly like
an 8-bit one (int32 bias, output requantization).

The reference for the deployed numbers is independent of the export's unpacking: the same file
with every weight's DequantizeLinear reading the codes stored plainly as int8/uint8, computed
by numpy from the plan's quantized weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from bitlens.core.engine import Engine, bind
from bitlens.core.export.exporter import export, integer_kernel_layers
from bitlens.core.formats import Family, parse_format, quantize
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.plan_checks import deployment_warnings
from bitlens.core.results import drain
from bitlens.core.search.latency import plan_kernels
from bitlens.core.targets import TENSORRT, placement
from tests.core.export_models import random_feeds
from tests.core.test_export_int4_kernel import _fused_and_faithful, _optimized_ops, _plan, _run
from tests.core.test_sim_equals_export import _assert_sim_equals_file, linear_conv_net

LAYERS = {"conv", "linear", "head"}  # Conv, MatMul (+ bias Add), Gemm


@pytest.fixture(scope="module")
def engine() -> Engine:
    model = from_proto(linear_conv_net())  # opset 17
    return Engine(model, random_feeds(model.info, 4), device="cpu")


def _with_plain_codes(engine: Engine, plan: Plan, path: Path, out: Path) -> None:
    """``path`` with each weight's DequantizeLinear reading numpy's codes stored as int8/uint8
    (and int8/uint8 zero points), the export's unpacking subgraph left unused."""
    m = onnx.load(str(path))
    by_out = {n.output[0]: n for n in m.graph.node}
    for name in LAYERS:
        w = engine.info.layer(name).weights[0]
        q = quantize(engine.model.weight(w.name), bind(plan[name].weight, w))
        wide = np.int8 if q.fmt.signed else np.uint8
        codes = q.codes.astype(wide)
        if q.fmt.family is Family.BINARY:  # signs: -alpha / +alpha
            codes = np.where(q.codes.astype(bool), 1, -1).astype(np.int8)
        dq = by_out[w.name]
        assert dq.op_type == "DequantizeLinear"
        dq.input[0] = f"{w.name}_plain_codes"
        m.graph.initializer.append(numpy_helper.from_array(codes, dq.input[0]))
        if len(dq.input) > 2:
            dq.input[2] = f"{w.name}_plain_zp"
            zp = np.zeros(q.scale.shape, wide) if q.zero_point is None else q.zero_point
            zp = np.asarray(zp).astype(wide)
            m.graph.initializer.append(numpy_helper.from_array(zp, dq.input[2]))
    onnx.save(m, str(out))


@pytest.mark.parametrize(
    "weights", ["int3 sym ch", "uint3 asym ch", "int2 sym ch", "int5 asym", "uint7 asym ch",
                "tern ch", "bin ch"],
)  # fmt: skip
def test_every_width_runs_as_integer_kernels_exactly_as_simulated(
    engine: Engine, weights: str, tmp_path: Path
) -> None:
    plan = _plan(engine, weights)
    bits = parse_format(weights).bits
    assert integer_kernel_layers(engine.info, plan, engine.placement(plan)) == LAYERS
    assert plan_kernels(engine, plan) == LAYERS  # the search's latency model counts them
    assert placement(plan) == placement(Plan.preset(engine.info, "W8A8"))
    assert not deployment_warnings(plan)
    out = tmp_path / "wna8.onnx"
    result = drain(export(engine, plan, out))
    assert result.opset == 17  # packed codes need no upgrade to opset 21
    assert {n for n, r in result.layers.items() if r.integer_kernel and r.bias} == LAYERS
    # n bits a code in the file: the accounting's bytes are the stored ones
    conv = result.layers["conv"]
    codes = [s for s in conv.weights[0].stored if s.role == "codes"]
    assert [s.nbytes for s in codes] == [-(-8 * 4 * 9 // 8) * bits]
    assert conv.bytes_stored == conv.bytes_planned
    for name in LAYERS:
        for s in result.layers[name].weights[0].stored:
            assert s.role != "codes" or s.bits == bits, (name, s)
    _fused_and_faithful(engine, plan, result, out, tmp_path)
    # deployed, the file computes exactly what the same codes stored as 8 bits do
    _with_plain_codes(engine, plan, out, tmp_path / "plain.onnx")
    for i in engine.data.evaluation[:2]:
        feed = engine.data.samples[i]
        np.testing.assert_array_equal(_run(out, feed), _run(tmp_path / "plain.onnx", feed))


def test_blocked_widths_and_tensorrt_stay_float_layers(engine: Engine) -> None:
    trt = _plan(engine, "int3 sym ch").with_target(TENSORRT)
    assert integer_kernel_layers(engine.info, trt) == set()
    assert any("folded to float" in w for w in deployment_warnings(trt))
    blk = _plan(engine, "int3 sym blk32")
    assert integer_kernel_layers(engine.info, blk, engine.placement(blk)) == set()


def test_int2_codes_cast_from_onnx_int2_where_asked(engine: Engine, tmp_path: Path) -> None:
    """``int2_qdq`` (opset 25, ONNX Runtime 1.24+): the codes are stored as ONNX INT2 and Cast,
    which ONNX Runtime folds and fuses like INT4."""
    from bitlens.core.export.exporter import ExportOptions

    plan = _plan(engine, "int2 sym ch")
    out = tmp_path / "w2a8.onnx"
    result = drain(export(engine, plan, out, ExportOptions(int2_qdq=True)))
    assert result.opset == 25
    m = onnx.load(str(out))
    assert [t for t in m.graph.initializer if t.data_type == TensorProto.INT2]
    ops = _optimized_ops(out, tmp_path)
    assert "QLinearConv" in ops and ops.count("QGemm") == 2
    _assert_sim_equals_file(engine, plan, out)
