"""``bitlens inspect MODEL [--json] [--formats F ...]``: layers, sizes, weight error per format.

The JSON form is :meth:`bitlens.core.report.InspectReport.to_dict`: ``model``,
``opset``, ``producer``, ``formats``, ``rows`` (name, op_type, shapes, dtype,
params, bytes, graph_path, cells: format, sqnr_db, bytes) and ``totals``
(params, bytes, per format bytes and compression). Non-finite SQNR values are
the strings "inf"/"-inf".
"""

from __future__ import annotations

import argparse

from bitlens.cli.common import dump_json, fmt_bytes, fmt_db
from bitlens.core.formats import INSPECT_LADDER
from bitlens.core.model.loader import load_model
from bitlens.core.report import InspectReport, inspect_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="list layers with size and weight error at each format")
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--formats", nargs="+", default=list(INSPECT_LADDER), metavar="F")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report = inspect_model(load_model(args.model), args.formats)
    print(dump_json(report.to_dict()) if args.json else render(report))
    return 0


def render(r: InspectReport) -> str:
    head = ["layer", "op", "weight shape", "params", "size"]
    head += [f"{f} dB/bytes" for f in r.formats]
    rows = [head]
    for row in r.rows:
        name = row.name if not row.graph_path else f"{row.name} (in {row.graph_path})"
        cells = [
            name,
            row.op_type,
            " + ".join("x".join(map(str, s)) for s in row.shapes),
            f"{row.params:,}",
            f"{fmt_bytes(row.bytes)} {row.dtype}",
        ]
        cells += [f"{fmt_db(c.sqnr_db)} / {fmt_bytes(c.bytes)}" for c in row.cells]
        rows.append(cells)
    total = ["total", "", f"{len(r.rows)} layers", f"{r.params:,}", fmt_bytes(r.bytes)]
    total += [
        f"{fmt_bytes(r.format_bytes(i))} ({r.bytes / max(1, r.format_bytes(i)):.1f}x)"
        for i in range(len(r.formats))
    ]
    widths = [max(len(x[i]) for x in [*rows, total]) for i in range(len(head))]
    sep = "  ".join("-" * w for w in widths)

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    title = f"{r.model}: opset {r.opset}" + (f", {r.producer}" if r.producer else "")
    if not r.rows:
        return f"{title}\nno quantizable layers (Conv, Gemm, MatMul with a constant, Gather, LSTM/GRU/RNN)"
    return "\n".join([title, line(rows[0]), sep, *map(line, rows[1:]), sep, line(total)])
