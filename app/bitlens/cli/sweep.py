"""``bitlens sweep MODEL [--data D] [--formats F ...] [--json]``: per-layer sensitivity.

Quantizes one layer's weights at a time in each format and ranks the
(layer, format) pairs by the model-output SQNR, worst first, so the few
fragile layers stand out.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict

from bitlens.cli.common import (
    add_data_arguments,
    dump_json,
    engine_on_data,
    fmt_bytes,
    fmt_db,
    open_model,
)
from bitlens.cli.names import shortened_note, shown_names
from bitlens.cli.progress import follow
from bitlens.core.engine.output_metrics import FLOAT_TYPES
from bitlens.core.formats import SWEEP_LADDER
from bitlens.core.results import SweepEntry
from bitlens.core.shared_weights import shared_notes
from bitlens.core.unrun_layers import sweep_note, unrun_in_sweep


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="sensitivity sweep: each layer alone at each format")
    p.add_argument("model", help="ONNX model file")
    add_data_arguments(p)
    p.add_argument("--formats", nargs="+", default=list(SWEEP_LADDER), metavar="F",
                   help=f"weight formats (default: {', '.join(SWEEP_LADDER)})")  # fmt: skip
    p.add_argument("--activation-formats", nargs="+", default=[], metavar="F",
                   help="also each layer's input activation alone in these formats")  # fmt: skip
    p.add_argument("--metric", metavar="MOD:FN",
                   help="also your task metric f(outputs, reference_outputs, labels) -> float "
                   "(higher is better) for each entry")  # fmt: skip
    p.add_argument("--calibration", default="minmax", help="minmax, percentile, mse or entropy")
    p.add_argument("--top", type=int, default=20, help="rows to print (20; 0 for all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.activation_formats or args.metric:
        return run_sensitivities(args)
    model = open_model(args.model, fold_bn=not args.keep_batchnorm)
    engine = engine_on_data(args, model)
    entries: list[SweepEntry] = follow(engine.sweep(args.formats))
    for note in shared_notes(model.info, {e.layer for e in entries}):
        print(f"note: {note}; swept once for all", file=sys.stderr)
    unrun = unrun_in_sweep(model.info, entries)
    if unrun:
        print(f"note: {sweep_note(unrun)}", file=sys.stderr)
    if args.json:
        print(
            dump_json(
                {"providers": list(engine.providers), "entries": [asdict(e) for e in entries]}
            )
        )
    else:
        floats = [t.name for t in model.info.outputs if t.dtype in FLOAT_TYPES]
        print(render(entries, args.top, floats[0] if floats else "first", model.info.layer_names))
    return 0


def render(
    entries: list[SweepEntry], top: int, first_output: str = "first", among: Sequence[str] = ()
) -> str:
    """The ranked table; ``among``: the model's layer names, which short names tell apart."""
    top_entries = entries if top <= 0 else entries[:top]
    shown = shown_names(
        list(dict.fromkeys(e.layer for e in top_entries)), [*among, *(e.layer for e in entries)]
    )
    rows = [("layer", "format", "output SQNR", "cosine", "bytes")]
    rows += [
        (
            shown[e.layer],
            e.format,
            fmt_db(e.output.sqnr_db),
            f"{e.output.cosine:.5f}",
            fmt_bytes(e.bytes_after),
        )
        for e in top_entries
    ]
    # layers that do not reach the first output (a detector's other heads) are read at
    # the first output they reach: say which, only when some are
    if any(e.at_output for e in entries):
        rows = [(*rows[0], "at output")] + [
            (*r, e.at_output or first_output) for r, e in zip(rows[1:], top_entries, strict=True)
        ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(top_entries) < len(entries):
        lines.append(f"... {len(entries) - len(top_entries)} more (--top 0 shows all)")
    lines += [n for n in (shortened_note(shown),) if n]
    return "\n".join(lines)


def run_sensitivities(args: argparse.Namespace) -> int:
    """Weights and activations, with the task metric: :func:`bitlens.core.search.sensitivities`."""
    from bitlens.cli.common import calibrated_engine
    from bitlens.core.search import sensitivities
    from bitlens.core.usermetric import load_metric

    metric = load_metric(args.metric) if args.metric else None
    model = open_model(args.model, fold_bn=not args.keep_batchnorm)
    engine = calibrated_engine(args, model)
    entries = follow(sensitivities(engine, args.formats, args.activation_formats, metric=metric))
    if args.json:
        print(
            dump_json({"providers": list(engine.providers), "entries": [vars(e) for e in entries]})
        )
        return 0
    shown = entries if args.top <= 0 else entries[: args.top]
    names = shown_names(list(dict.fromkeys(e.layer for e in shown)), model.info.layer_names)
    rows = [("layer", "kind", "format", "output error", "SQNR", "metric", "bytes saved")]
    for e in shown:
        sqnr = -20 * math.log10(e.error) if e.error > 0 else math.inf
        rows.append((names[e.layer], e.kind, e.format, f"{e.error:.4g}", fmt_db(sqnr),
                     "-" if e.metric is None else f"{e.metric:.4g}", fmt_bytes(e.bytes_saved)))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if len(shown) < len(entries):
        lines.append(f"... {len(entries) - len(shown)} more (--top 0 shows all)")
    lines += [n for n in (shortened_note(names),) if n]
    print("\n".join(lines))
    return 0
