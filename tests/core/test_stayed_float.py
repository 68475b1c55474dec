"""Layers planned as integer kernels that ONNX Runtime ran in float: one line per layer where
that is a problem (ort-cpu, none), one folded line where it is expected (tensorrt on ORT CPU,
4-bit weights on targets other than ort-cpu), each naming the plan's real weight format."""

from __future__ import annotations

from pathlib import Path

from bitlens.core.engine import Engine
from bitlens.core.export.deployed import INTEGER_KERNELS
from bitlens.core.export.stayedfloat import stayed_float_notes
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests.core.export_models import random_feeds
from tests.core.test_export_models import run
from tests.core.test_targets import silu_net


def test_tensorrt_target_folds_float_layers_into_one_line(tmp_path: Path) -> None:
    """Before: a warning per conv (83 on a YOLO-style detector) for what the target expects."""
    model = from_proto(silu_net())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.uniform(engine.info, "int8 sym narrow ch", "int8 sym").with_target("tensorrt")
    _, report = run(engine, plan, tmp_path / "trt.onnx")
    floats = [la.name for la in report.layers if not any(k in la.kernel for k in INTEGER_KERNELS)]
    assert len(floats) >= 2  # the convs have no output quantizer: ORT CPU runs them float
    assert not any("stayed float" in n for n in report.notes)
    (line,) = [n for n in report.notes if "as expected for target 'tensorrt'" in n]
    assert line.startswith(f"{len(floats)} layer(s) planned as int8 ran in float")
    assert not line.startswith("warning: ") and repr(floats[0]) in line


INT8 = parse_format("int8 sym ch")


def test_other_targets_keep_one_warning_per_layer() -> None:
    stayed = [(f"conv{i}", "Conv", INT8) for i in range(5)]
    ort_cpu = stayed_float_notes("ort-cpu", stayed)
    assert len(ort_cpu) == 5 and all(n.startswith("warning: layer 'conv") for n in ort_cpu)
    assert stayed_float_notes("none", stayed[:1]) == [
        "warning: layer 'conv0' stayed float although its plan asked for int8: ONNX Runtime "
        "ran Conv (target 'none': its output is not requantized)"
    ]
    (trt,) = stayed_float_notes("tensorrt", stayed)
    assert trt.startswith("5 layer(s)") and "'conv0', 'conv1', 'conv2' and 2 more" in trt
    assert stayed_float_notes("tensorrt", []) == []


def test_4bit_layers_name_their_format(tmp_path: Path) -> None:
    """Before: a W4A8 plan exported for target 'none' (or 'tensorrt'), whose 4-bit weights the
    export folds to float by design, was told its layers "asked for int8"."""
    model = from_proto(silu_net())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.uniform(engine.info, "int4 sym ch", "int8 sym").with_target("none")
    _, report = run(engine, plan, tmp_path / "w4a8_none.onnx")
    assert not any("int8" in n and "stayed float" in n for n in report.notes), report.notes
    (line,) = [n for n in report.notes if "with int4 weights ran in float" in n]
    assert "for target 'none' the export writes them folded to float" in line
    assert "'conv0'" in line
    # on ort-cpu a 4-bit layer is an integer-kernel layer: one that ran float is a warning
    # with its own format; tensorrt folds 8-bit and 4-bit layers into their own lines
    uint4 = parse_format("uint4 asym")
    assert stayed_float_notes("ort-cpu", [("mm", "MatMul", uint4)]) == [
        "warning: layer 'mm' stayed float although its plan asked for uint4: ONNX Runtime "
        "ran MatMul (target 'ort-cpu')"
    ]
    four, eight = stayed_float_notes(
        "tensorrt", [("a", "Conv", parse_format("int4 sym")), ("b", "Conv", INT8)]
    )
    assert four.startswith("1 layer(s) with int4 weights ran in float ('a')")
    assert eight.startswith("1 layer(s) planned as int8 ran in float on this ONNX Runtime")
