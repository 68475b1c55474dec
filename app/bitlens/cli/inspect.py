"""``bitlens inspect MODEL``: each layer's weight error and size at a ladder of formats.

Text output is an aligned table: one row per quantizable layer (name, op,
weight shape, parameters, current size), then for each format the weight
SQNR in dB and the bytes the weights would take, and totals at the bottom
(parameters, bytes now and per format, compression).

``--json`` prints the same as one JSON object with these keys::

    {
      "model": "path/to/model.onnx",        # null for a model without a file
      "opset": 17, "ir_version": 8, "producer": "pytorch 2.5",
      "formats": ["fp16", "int8 sym ch", ...],   # column order
      "layers": [
        {"name": "conv1", "op_type": "Conv", "graph_path": "",
         "weights": [{"name": "conv1.w", "shape": [8, 3, 3, 3], "dtype": "float32",
                      "storage": "initializer", "graph_path": "",
                      "channel_axis": 0, "block_axis": 1}],
         "params": 216, "bytes": 864, "macs": 27648,   # null when shapes are unknown
         "formats": {"fp16": {"sqnr_db": "inf", "bytes": 432}, ...}}
      ],
      "totals": {"layers": 3, "params": 1234, "bytes": 4936, "macs": 51200,
                 "macs_input_shapes": {"x": [1, 3, 8, 8]},   # batch 1, declared sizes
                 "formats": {"fp16": {"bytes": 2468, "compression": 2.0}, ...}}
    }

``sqnr_db`` is a number, or the string ``"inf"`` when the format holds the
weights exactly (``"-inf"`` for an all-zero weight with error).
``compression`` is stored bytes / bytes in the format, null without weights.
Totals count a weight shared by several layers once.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from bitlens.cli.common import add_model_arguments, parse_dims
from bitlens.cli.names import shortened_note, shown_names
from bitlens.core.compute import count_macs, describe_totals, input_shapes
from bitlens.core.errors import DataError
from bitlens.core.formats import INSPECT_LADDER, parse_format
from bitlens.core.model import load_model
from bitlens.core.model.other_tensors import other_float_tensors
from bitlens.core.report import ModelReport, inspect_model, sqnr_json
from bitlens.core.shared_weights import shared_notes
from bitlens.core.units import format_bytes


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "inspect",
        help="list layers with weight error and size at several formats",
        description=(
            "List the quantizable layers of an ONNX model with their weight SQNR and size "
            "at a ladder of formats."
        ),
    )
    p.add_argument("model", help="path to an .onnx file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--formats",
        nargs="+",
        metavar="F",
        default=list(INSPECT_LADDER),
        help='formats to compare, each one argument, e.g. --formats "int8 sym ch" "nf4 blk64" '
        f"(default: {', '.join(INSPECT_LADDER)})",
    )
    p.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a dynamic input dimension for the MAC count, by its name, or "
        "INPUT:AXIS for an unnamed one (repeatable; a dynamic batch axis counts 1)",
    )
    add_model_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = [parse_format(f) for f in args.formats]  # bad names fail before loading
    model = load_model(args.model, fold_bn=not args.keep_batchnorm)
    report = inspect_model(model, formats)
    dims = parse_dims(args.dim)
    compute = count_macs(model.proto, model.info, input_shapes(model.info, dims=dims))
    others, other_bytes = other_float_tensors(model.graph_proto, model.info)
    if args.json:
        d = to_json(report)
        for layer in d["layers"]:
            layer["macs"] = compute.macs.get(layer["name"])
        d["totals"]["macs"] = compute.total_macs
        d["totals"]["macs_unknown_layers"] = list(compute.unknown)
        d["totals"]["macs_input_shapes"] = {k: list(v) for k, v in compute.input_shapes.items()}
        d["totals"]["other_float_tensors"] = {"count": others, "bytes": other_bytes}
        json.dump(d, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(to_text(report))
        if others:
            sys.stdout.write(
                f"not in the table: {human_bytes(other_bytes)} in {others} float tensors that "
                "no layer reads as a weight (biases, norms, tables); they stay as they are\n"
            )
        for note in shared_notes(model.info):  # the table lists each reader's view
            sys.stdout.write(f"shared: {note}; the totals count each weight once\n")
        totals = describe_totals(compute.to_dict(model.info, None), bops=False)
        sys.stdout.write(f"compute: {totals}{_unsized(model.info, dims, compute.unknown)}\n")
    return 0


def _unsized(info, dims: dict[str, int], unknown: tuple[str, ...]) -> str:
    """Which --dim the MAC count lacks, if an input has a dynamic dimension left unsized;
    else, where layers stay unknown, that a run counts them."""
    from bitlens.core.dims import MissingDimension, concrete_shape

    missing: dict[str, str] = {}  # --dim key -> the first input that needs it
    for t in info.inputs:
        while True:  # every size this input lacks, not only its first
            try:
                concrete_shape(t, {**dims, **dict.fromkeys(missing, 1)})
            except MissingDimension as exc:
                missing.setdefault(exc.key, exc.input)
                continue
            except DataError:
                pass
            break
    if missing:
        needs = ", ".join(f"input {i!r} needs --dim {k}=SIZE" for k, i in missing.items())
        return f"; {needs} to count it"
    return "; 'bitlens eval' counts them from a run" if unknown else ""


def to_json(report: ModelReport) -> dict[str, Any]:
    return {
        "model": report.path,
        "opset": report.opset,
        "ir_version": report.ir_version,
        "producer": report.producer,
        "notes": list(report.notes),
        "formats": list(report.formats),
        "layers": [
            {
                "name": layer.name,
                "op_type": layer.op_type,
                "graph_path": layer.graph_path,
                "weights": [
                    {
                        "name": w.name,
                        "shape": list(w.shape),
                        "dtype": w.dtype,
                        "storage": str(w.storage),
                        "graph_path": w.graph_path,
                        "channel_axis": w.channel_axis,
                        "block_axis": w.block_axis,
                    }
                    for w in layer.weights
                ],
                "params": layer.params,
                "bytes": layer.nbytes,
                "formats": {
                    c.format: {"sqnr_db": sqnr_json(c.sqnr_db), "bytes": c.nbytes}
                    for c in layer.costs
                },
            }
            for layer in report.layers
        ],
        "totals": {
            "layers": len(report.layers),
            "params": report.params,
            "bytes": report.nbytes,
            "formats": {
                t.format: {
                    "bytes": t.nbytes,
                    "compression": round(t.compression, 4) if t.compression is not None else None,
                }
                for t in report.totals
            },
        },
    }


def human_bytes(n: int) -> str:
    return format_bytes(n)  # binary units, the same as the window


def _sqnr_text(value: float) -> str:
    if math.isinf(value):
        return "exact" if value > 0 else "-inf dB"
    return f"{value:.1f} dB"


def to_text(report: ModelReport) -> str:
    show_graph = any(layer.graph_path for layer in report.layers)
    head = ["layer", *(["in graph"] if show_graph else []), "op", "weight shape", "params", "now"]
    rows: list[list[str]] = []
    shown = shown_names([layer.name for layer in report.layers])
    for layer in report.layers:
        shape = " + ".join("x".join(str(d) for d in w.shape) for w in layer.weights)
        row = [
            shown[layer.name],
            *([layer.graph_path or "main"] if show_graph else []),
            layer.op_type,
            shape,
            f"{layer.params:,}",
            human_bytes(layer.nbytes),
        ]
        row += [f"{_sqnr_text(c.sqnr_db)}  {human_bytes(c.nbytes)}" for c in layer.costs]
        rows.append(row)
    n_left = len(head)
    head += list(report.formats)
    total = [
        "total",
        *[""] * (n_left - 4),
        _count(len(report.layers), "layer"),
        f"{report.params:,}",
        human_bytes(report.nbytes),
    ]
    total += [human_bytes(t.nbytes) for t in report.totals]
    ratio = ["compression", *[""] * (n_left - 1)]
    ratio += [f"{t.compression:.2f}x" if t.compression is not None else "-" for t in report.totals]

    widths = [max(len(r[i]) for r in [head, *rows, total, ratio]) for i in range(len(head))]
    right = {n_left - 2, n_left - 1} | set(range(n_left, len(head)))  # numbers align right

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    title = report.path or "model"
    meta = f"opset {report.opset}" if report.opset else "no ONNX-domain opset"
    meta += f", {report.producer}" if report.producer else ""
    out = [f"{title} ({meta})", *(f"note: {n}" for n in report.notes)]
    out += ["weight SQNR and bytes per format", "", line(head), rule]
    if rows:
        out += [line(r) for r in rows]
    elif not report.notes:  # a note says why (an already quantized model)
        out.append(
            "(no quantizable layers: no Conv, Gemm, MatMul, Gather or RNN with float weights)"
        )
    out += [rule, line(total), line(ratio)]
    out += [n for n in (shortened_note(shown),) if n]
    return "\n".join(out) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
