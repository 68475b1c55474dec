"""``bitlens export MODEL --plan P -o OUT.onnx``: a deployable quantized model and its fidelity report.

Writes the export, then checks it (stored formats, the file run as written
against the engine, the file in a default ONNX Runtime session, sizes,
latency) and writes the report as JSON next to it (``OUT.fidelity.json``
unless ``--report`` says otherwise). Exits with 1 when the fidelity check
fails, 2 on an error.
"""

from __future__ import annotations

import argparse
import sys

from bitlens.cli.common import (
    add_data_arguments,
    add_target_argument,
    engine_on_data,
    open_model,
)
from bitlens.cli.eval import load_plan
from bitlens.cli.outputs import guard_outputs
from bitlens.cli.progress import follow
from bitlens.core.errors import ExportError
from bitlens.core.export.checklist import verdict_lines
from bitlens.core.export.exporter import ExportOptions, preflight
from bitlens.core.export.fidelity import default_report_path, export_and_check
from bitlens.core.export.report import FidelityReport, render
from bitlens.core.plan import PRESETS
from bitlens.core.plan_checks import check_plan, deployment_warnings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a quantized ONNX model that runs as simulated, with a fidelity report"
    )
    p.add_argument("model", help="ONNX model file (never modified)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--plan", help="plan JSON (from 'bitlens plan' or the window)")
    g.add_argument("--preset", choices=PRESETS, help="export a preset plan instead")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="the export to write")
    p.add_argument(
        "--report", metavar="OUT.json", help="fidelity report (default: OUT.fidelity.json)"
    )
    add_data_arguments(p)
    add_target_argument(p)
    p.add_argument("--calibration", default="minmax", help="minmax, percentile, mse or entropy")
    p.add_argument(
        "--weights",
        choices=("fold", "qdq"),
        default="fold",
        help="fold: compact codes rebuilt to float when the session starts (exact, default); "
        "qdq: DequantizeLinear on native int8/int4/fp8 types, for other runtimes",
    )
    p.add_argument(
        "--matmulnbits",
        action="store_true",
        help="MatMul weights in 2/4/8-bit blocks along K as com.microsoft.MatMulNBits",
    )
    p.add_argument(
        "--int2-qdq",
        action="store_true",
        help="with --weights qdq, store int2 natively (opset 25, ONNX Runtime 1.24 or later)",
    )
    p.add_argument(
        "--no-int32-bias",
        action="store_true",
        help="keep Conv/Gemm biases float (ONNX Runtime then cannot use QGemm)",
    )
    p.add_argument(
        "--opset",
        type=int,
        help="export at this opset (default: the model's own, or the lowest the plan needs, "
        "trying newer ones up to 21 when an upgrade would change the outputs)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report_path = args.report or default_report_path(args.output)
    if not str(args.output).lower().endswith(".onnx"):
        raise ExportError(f"{args.output}: the export must be an .onnx file")
    guard_outputs(args, [(args.output, "onnx", "export"), (report_path, "json", "fidelity report")])
    model = open_model(args.model, fold_bn=not args.keep_batchnorm)
    plan = load_plan(args, model)
    engine = engine_on_data(args, model)
    options = ExportOptions(
        weights=args.weights,
        matmulnbits=args.matmulnbits,
        int2_qdq=args.int2_qdq,
        int32_bias=not args.no_int32_bias,
        opset=args.opset,
    )
    # Before the (possibly long) export: layers that will not get ONNX Runtime integer kernels.
    for text in deployment_warnings(plan) + check_plan(plan):
        print(f"warning: {text}", file=sys.stderr)
    # Everything that can fail without activation ranges fails now, not after calibrating.
    prepared = preflight(engine, plan, options, args.output)
    follow(engine.calibrate(args.calibration))
    report: FidelityReport = follow(
        export_and_check(engine, plan, args.output, options, report_path, prepared=prepared)
    )
    print(report.to_json() if args.json else render(report))
    if not args.json:
        print("\n".join(verdict_lines(report)))
        print(f"report written to {report_path}")
    return 0 if report.passed else 1
