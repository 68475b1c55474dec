"""Fidelity report values built in code, for the checklist and the report dialog tests."""

from __future__ import annotations

import dataclasses

from bitlens.core.export import verdict
from bitlens.core.export.report import (
    FidelityReport,
    LatencyCheck,
    LayerCheck,
    OutputCheck,
    WeightCheck,
)


def slow_and_large_report() -> FidelityReport:
    """A report that passes, over an export 1.7x slower than float and 26.6% larger than
    its accounting, with one int8 layer ONNX Runtime ran in float (issue 15, item 10)."""
    w = WeightCheck("W1", "int8 sym ch", "qdq", "int8 codes + float32 scale", 100, 100, True)
    layers = (
        LayerCheck("conv1", "Conv", "int8 sym ch", "uint8 asym", "qdq", "qdq", "QLinearConv",
                   True, 100, 100, (w,)),
        LayerCheck("conv2", "Conv", "int8 sym ch", "uint8 asym", "qdq", "qdq", "Conv",
                   True, 100, 100, (dataclasses.replace(w, weight="W2"),)),
    )  # fmt: skip
    out = OutputCheck("y", True, 0.0, False, 2e-6, 1e-6, level=verdict.REASSOCIATION,
                      tolerance=1e-4, top1_agreement=1.0)  # fmt: skip
    return FidelityReport(
        model="m.onnx", export="/tmp/out/m.quant.onnx", opset=17, source_opset=17,
        ir_version=9, min_ort="1.20", ort_version="1.31.1", options={}, layers=layers,
        outputs=(out,), quantizers=(), weights_planned=200, weights_stored=200,
        file_bytes=12660, file_expected=10000,
        latency=LatencyCheck(("CPUExecutionProvider",), 1.7, 1.0, 20), samples=4,
        failures=(),
        notes=("warning: layer 'conv2' stayed float although its plan asked for int8",),
        compute={
            "input_shapes": {"x": [1, 3, 8, 8]},
            "layers": {"conv1": {"macs": 1000, "bops": 64_000},
                       "conv2": {"macs": 2000, "bops": 128_000}},
            "total_macs": 3000, "total_bops": 192_000, "total_bops_float": 3_072_000,
        },
    )  # fmt: skip


def failed_report() -> FidelityReport:
    r = slow_and_large_report()
    out = dataclasses.replace(r.outputs[0], level=verdict.DIFFERENT, deployed_max_abs=0.5,
                              top1_agreement=0.9, top1_changes=3)  # fmt: skip
    bad = dataclasses.replace(r.layers[1], problems=("stored as float32",))
    return dataclasses.replace(
        r, outputs=(out,), layers=(r.layers[0], bad),
        failures=("output 'y': deployed run differs by 0.5",),
        latency=LatencyCheck(("CPUExecutionProvider",), 0.5, 1.0, 20),
        file_bytes=10100,
    )  # fmt: skip
