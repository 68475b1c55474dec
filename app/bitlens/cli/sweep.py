"""``bitlens sweep MODEL [--data D] [--formats F ...] [--json]``: per-layer sensitivity.

Quantizes one layer's weights at a time in each format and ranks the
(layer, format) pairs by the model-output SQNR, worst first, so the few
fragile layers stand out.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict

from bitlens.cli.common import (
    add_data_arguments,
    dump_json,
    fmt_bytes,
    fmt_db,
    load_data,
    open_model,
)
from bitlens.core.engine import Engine
from bitlens.core.results import SweepEntry

DEFAULT_LADDER = ("int8 sym ch", "int4 sym ch", "int2 sym ch", "bin ch")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="sensitivity sweep: each layer alone at each format")
    p.add_argument("model", help="ONNX model file")
    add_data_arguments(p)
    p.add_argument("--formats", nargs="+", default=list(DEFAULT_LADDER), metavar="F")
    p.add_argument("--top", type=int, default=20, help="rows to print (20; 0 for all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = open_model(args.model)
    engine = Engine(model, load_data(args, model.info), device=args.device)
    gen = engine.sweep(args.formats)
    try:
        while True:
            prog = next(gen)
            if not args.json and sys.stderr.isatty():
                print(f"\r{prog.done}/{prog.total} {prog.message}", end="", file=sys.stderr)
    except StopIteration as stop:
        entries: list[SweepEntry] = stop.value
    if not args.json and sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print(
            dump_json(
                {"providers": list(engine.providers), "entries": [asdict(e) for e in entries]}
            )
        )
    else:
        print(render(entries, args.top))
    return 0


def render(entries: list[SweepEntry], top: int) -> str:
    shown = entries if top <= 0 else entries[:top]
    rows = [("layer", "format", "output SQNR", "cosine", "bytes")]
    rows += [
        (
            e.layer,
            e.format,
            fmt_db(e.output.sqnr_db),
            f"{e.output.cosine:.5f}",
            fmt_bytes(e.bytes_after),
        )
        for e in shown
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(shown) < len(entries):
        lines.append(f"... {len(entries) - len(shown)} more (--top 0 shows all)")
    return "\n".join(lines)
