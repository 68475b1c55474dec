"""Conv layers the plan keeps off integer kernels keep their planned weights in ONNX Runtime,
also when they read a quantizer written for another layer's sake.

ONNX Runtime's WeightBiasQuantization quantizes the float weight of a Conv whose input comes
from a DequantizeLinear to int8 per tensor (and fuses it into QLinearConv when its output
reaches a QuantizeLinear). The exporter guarded the layers whose own input quantizer it
wrote, but not a layer reading the quantizer the ort-cpu target puts on the previous Conv's
output: one with int4 weights, one the plan keeps float, or a one-output-channel Conv whose
W8A8 preset no longer quantizes its input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import targets
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests import builders
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run


def three_convs(mid_out: int = 8) -> onnx.ModelProto:
    """x[1,4,8,8] -> first (Conv 8) -> Relu -> mid (Conv ``mid_out``) -> Relu -> last (Conv 4)
    -> y: last's input quantizer follows mid, so ONNX Runtime would fuse mid."""
    rng = np.random.default_rng(1)
    shapes = {"first": (8, 4, 3, 3), "mid": (mid_out, 8, 3, 3), "last": (4, mid_out, 3, 3)}
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, s).astype(np.float32), f"{k}_w")
             for k, s in shapes.items()]  # fmt: skip
    nodes, t = [], "x"
    for k in shapes:
        out = "y" if k == "last" else f"{k}_c"
        nodes.append(helper.make_node("Conv", [t, f"{k}_w"], [out], name=k, pads=[1] * 4))
        if k != "last":
            nodes.append(helper.make_node("Relu", [out], [f"{k}_r"], name=f"{k}_relu"))
            t = f"{k}_r"
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 8, 8]) for n in ("x", "y")]
    return builders.model(helper.make_graph(nodes, "three", io[:1], io[1:], inits))


def _export(tmp_path: Path, model: onnx.ModelProto, plan_of):
    loaded = from_proto(model)
    engine = Engine(loaded, random_feeds(loaded.info, 4), device="cpu")
    plan = plan_of(engine.info)
    assert "first_r" in engine.placement(plan)  # the first Conv's output is requantized
    result, report = run(engine, plan, tmp_path / "o.onnx")
    return engine, plan, result, report


def _reads_a_dequantize(path: Path, layer_output: str) -> bool:
    g = onnx.load(path).graph
    producer = {o: n for n in g.node for o in n.output}
    conv = producer[layer_output]
    return producer[conv.input[0]].op_type == "DequantizeLinear"


def _qlinear_convs(path: Path, tmp_path: Path) -> int:
    """QLinearConv nodes in the graph a default ONNX Runtime session makes of the file."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sum(n.op_type == "QLinearConv" for n in onnx.load(so.optimized_model_filepath).graph.node)


W8A8 = LayerChoice.of("int8 sym ch", "uint8 asym")
MID = {
    # (every width per tensor or channel is an integer kernel since session 10: blocks are not)
    "int3 weights reading the target's quantizer": LayerChoice.of("int3 sym blk16", "uint8 asym"),
    "kept float": LayerChoice(),
    "int8 weights, float input": LayerChoice.of("int8 sym ch"),
}


@pytest.mark.parametrize("mid", MID)
def test_a_float_conv_reading_a_quantized_tensor_keeps_its_weights(
    tmp_path: Path, mid: str
) -> None:
    def plan_of(info):
        return Plan(info, {"first": W8A8, "mid": MID[mid], "last": W8A8})

    _, _, result, report = _export(tmp_path, three_convs(), plan_of)
    kernels = {la.name: la.kernel for la in report.layers}
    assert kernels["first"] == "QLinearConv"  # (last's output is the model's: float)
    assert _qlinear_convs(result.path, tmp_path) == 1  # first's alone
    assert not _reads_a_dequantize(result.path, "mid_c")
    # the deployed file computes what the engine simulated (ORT's own rounding aside)
    assert report.passed, report.failures


def test_w8a8_leaves_a_one_channel_convs_input_float_and_guards_it(tmp_path: Path) -> None:
    """The preset does not quantize the input of a Conv the ort-cpu target keeps float (it
    would cost a Q/DQ and its rounding for no integer kernel); the target's quantizer on
    the previous Conv's output is still read, through the guard."""
    model = three_convs(mid_out=1)
    info = from_proto(model).info
    plan = Plan.preset(info, "W8A8")
    assert targets.slower_as_integer(info.layer("mid"))
    assert plan["mid"].weight is not None and plan["mid"].activation is None
    assert plan["first"].activation is not None and plan["last"].activation is not None
    tensorrt = Plan.preset(info, "W8A8", target=targets.TENSORRT)  # only ort-cpu keeps it float
    assert tensorrt["mid"].activation is not None
    _, _, result, report = _export(tmp_path, model, lambda i: Plan.preset(i, "W8A8"))
    kernels = {la.name: la.kernel for la in report.layers}
    assert "QLinear" not in kernels["mid"] and kernels["first"] == "QLinearConv"
    assert result.layers["mid"].quantizers == ()  # no input quantizer of its own
    assert not _reads_a_dequantize(result.path, "mid_c")
    assert report.passed, report.failures
