"""``bitlens eval MODEL --plan P [--data D] [--json]``: errors and sizes of a plan.

The JSON form is :meth:`bitlens.core.results.Evaluation.to_dict` with
non-finite numbers as the strings "inf"/"-inf"/"nan".
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from bitlens.cli import compare_report
from bitlens.cli.common import (
    add_data_arguments,
    add_target_argument,
    calibrated_engine,
    dump_json,
    fmt_bytes,
    fmt_db,
    open_model,
)
from bitlens.cli.names import shortened_note, shown_names
from bitlens.cli.progress import follow
from bitlens.cli.search import add_metric_argument
from bitlens.core.compare import render_model_comparison, render_plan_comparison
from bitlens.core.compute import compute_of, describe_totals
from bitlens.core.engine.engine import DIVERGENCE_DB
from bitlens.core.export import accounting
from bitlens.core.model.selected_outputs import picked_text
from bitlens.core.nonfinite import nonfinite_warning
from bitlens.core.plan import PRESETS, Plan
from bitlens.core.plan_schema import read_json_file
from bitlens.core.results import Evaluation
from bitlens.core.usermetric import evaluate_with, load_metric
from bitlens.core.weights import file_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a quantization plan: per-layer and output error")
    p.add_argument("model", help="ONNX model file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--plan",
        help="plan JSON (from 'bitlens plan' or the window) or ONNX Runtime TensorQuantOverrides",
    )
    g.add_argument("--preset", choices=PRESETS, help="evaluate a preset plan instead")
    add_data_arguments(p)
    add_target_argument(p)
    p.add_argument("--calibration", default="minmax", help="minmax, percentile, mse or entropy")
    add_metric_argument(p)
    p.add_argument(
        "--export-size",
        action="store_true",
        help="also build the export in memory and print its file size, layer by layer",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--deployed",
        action="store_true",
        help="also run the plan as deployed (exported, default ONNX Runtime session: the "
        "integer kernels' numbers) and compare it with the simulation",
    )
    compare_report.add_arguments(p)
    p.set_defaults(func=run)


def load_plan(args: argparse.Namespace, model) -> Plan:
    plan = _read_plan(args, model)
    target = getattr(args, "target", None)
    return plan if target is None else plan.with_target(target)


def _read_plan(args: argparse.Namespace, model) -> Plan:
    if getattr(args, "preset", None):  # in the formats of --target where they differ
        return Plan.preset(model.info, args.preset, target=getattr(args, "target", None))
    return read_plan(Path(args.plan), model.info)


def read_plan(path: Path, info) -> Plan:
    """A Bitlens plan, or ONNX Runtime TensorQuantOverrides (bare, or under an
    ``extra_options``/``TensorQuantOverrides`` key), told apart by their keys. Read
    through the plan schema's safe reader (regular file, size cap, UTF-8, bounded nesting)."""
    data = read_json_file(path, "plan")
    plan = None
    if isinstance(data, dict) and "bitlens_plan" not in data:
        inner = data.get("extra_options", data)
        inner = inner.get("TensorQuantOverrides", inner) if isinstance(inner, dict) else inner
        if isinstance(inner, dict):
            plan = Plan.from_ort_overrides(info, inner)
    plan = Plan.from_dict(info, data) if plan is None else plan
    for note in plan.notes:  # readers of a shared weight given one format (as the window)
        print(f"note: {path.name}: {note}", file=sys.stderr)
    return plan


def _no_saving_lines(flags: list[str], plan: Plan, shown: int = 4) -> list[str]:
    """One line per layer, or per format when many layers share it (a W4A16 preset on a
    mobile net's depthwise convs flagged 37 layers, one line each)."""
    why = "(its codes and scales alone take as much as the float weights)"
    by_format: dict[str, list[str]] = {}
    for name in flags:
        by_format.setdefault(plan[name].weight.name, []).append(name)
    lines = []
    for fmt, names in by_format.items():
        if len(names) <= shown:
            lines += [f"layer {n}: {fmt} cannot save bytes on this layer {why}" for n in names]
        else:
            more = f" and {len(names) - shown} more (--json lists all)"
            lines.append(
                f"{len(names)} layers where {fmt} cannot save bytes {why}: "
                f"{', '.join(names[:shown])}{more}"
            )
    return lines


def run(args: argparse.Namespace) -> int:
    compare_report.check_report_target(args)
    metric = load_metric(args.metric) if args.metric else None
    model = open_model(args.model, fold_bn=not args.keep_batchnorm)
    plan = load_plan(args, model)
    other = compare_report.model_comparison(args, model, plan)  # before the long part
    engine = calibrated_engine(args, model)
    ev = evaluate_with(engine, plan, metric)
    flags = no_saving(model.info, plan)
    stored = file_bytes(model.info)  # the file's own int8 codes, when it has them
    size = None
    if args.export_size:
        size = follow(accounting.predict(engine, plan))
    deployed = _deployed(engine, plan) if args.deployed else None
    b = compare_report.plan_comparison(args, model, engine, plan, ev, metric)
    if args.json:
        d = ev.to_dict()
        d["compute"] = compute_of(engine).to_dict(model.info, plan)
        d["cannot_save_bytes"] = flags
        d["file_weight_bytes"] = stored
        if size is not None:
            d["export_size"] = dataclasses.asdict(size)
        if deployed is not None:
            d["deployed"] = [r.to_dict() for r in deployed.outputs]
            d["deployed_layers"] = [la.to_dict() for la in deployed.layers]
            d["deployed_layers_verified"] = deployed.layers_verified
        if b is not None:
            d["compare_plan"] = b[2].to_dict()
        if other is not None:
            d["compare_model"] = other.to_dict()
        print(dump_json(d))
    else:
        print(render(ev))
        print(render_compute(compute_of(engine), model.info, plan))
        if stored is not None:  # the window's status bar says the same
            print(
                f"the file stores its weights (int8 codes) in {fmt_bytes(stored)}: "
                f"{stored / ev.bytes_after:.2f}x against this plan"
            )
        for line in _no_saving_lines(flags, plan):
            print(line)
        if size is not None:
            print(render_size(size))
        if deployed is not None:
            print(render_deployed(deployed))
        if b is not None:
            print("\n" + render_plan_comparison(b[2], _kind(ev)))
        if other is not None:
            print("\n" + render_model_comparison(other))
    if b is not None:
        compare_report.report(args, model, engine, b[0], b[1], b[2], other)
    else:
        compare_report.report(args, model, engine, plan, ev, None, other)
    warning = nonfinite_warning(engine, plan)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _kind(ev: Evaluation) -> str:
    """The error kind the deltas show: accumulated when measured (there are data), else weight."""
    return "accumulated" if any(r.accumulated for r in ev.layers.values()) else "weight"


def no_saving(info, plan: Plan) -> list[str]:
    """Layers whose planned weight format cannot make them smaller."""
    return [n for n, c in plan.choices.items() if accounting.cannot_save(info.layer(n), c.weight)]


def render_size(size: accounting.ExportSize) -> str:
    lines = [
        f"export at opset {size.opset}: file {fmt_bytes(size.file_bytes)} ({size.file_bytes} B, "
        f"everything included) from {fmt_bytes(size.source_bytes)}"
    ]
    for la in size.layers:
        if la.float_bytes and not la.saves:
            lines.append(
                f"  layer {la.name}: adds {la.file_bytes:+d} B to the file for "
                f"{la.float_bytes} B of float weights (saves nothing)"
            )
    return "\n".join(lines)


def _deployed(engine, plan: Plan):
    from bitlens.core.export.asdeployed import DeployedRunner

    runner = DeployedRunner(engine)
    try:
        return follow(runner.run(plan))
    finally:
        runner.close()


def render_deployed(rep) -> str:
    """The as-deployed run: per output, then per layer, deployed vs simulated."""
    lines = ["", "as deployed (exported, default ONNX Runtime session) vs simulated:"]
    for r in rep.outputs:
        same = "bit-exact" if r.exact else f"max |Δ| {r.max_abs_difference:.3g}"
        lines.append(f"  output {r.name}: SQNR simulated {fmt_db(r.simulated.sqnr_db)}, "
                     f"deployed {fmt_db(r.deployed.sqnr_db)}; {same}")  # fmt: skip
    lines.append("per layer output, deployed vs simulated"
                 + ("" if rep.layers_verified else " (UNVERIFIED: ONNX Runtime's optimized graph "
                    "re-run as saved did not reproduce the deployed outputs)"))  # fmt: skip
    for la in rep.layers:
        lines.append(f"  {la.layer} ({la.tensor}): {la.describe()}")
    return "\n".join(lines)


def render_compute(compute, info, plan: Plan) -> str:
    return "compute: " + describe_totals(compute.to_dict(info, plan))


def render(ev: Evaluation) -> str:
    rows = [("layer", "weight", "activation", "w SQNR", "local", "accum", "bytes")]
    shown = shown_names(list(ev.layers))
    for r in ev.layers.values():
        rows.append(
            (
                shown[r.name],
                r.weight_format or "float",
                r.activation_format or "float",
                fmt_db(r.weight.sqnr_db if r.weight else None),
                fmt_db(r.local.sqnr_db if r.local else None),
                fmt_db(r.accumulated.sqnr_db if r.accumulated else None),
                f"{fmt_bytes(r.bytes_before)} -> {fmt_bytes(r.bytes_after)}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [n for n in (shortened_note(shown),) if n]
    lines.append("")
    for o in ev.outputs.values():
        extra = ""
        if o.top1_agreement is not None:
            extra = f", top-1 agreement {100 * o.top1_agreement:.1f}%"
            extra += f", KL {o.kl:.4g}" if o.kl is not None else ""  # none for class indices
        lines.append(
            f"output {o.name}: SQNR {fmt_db(o.error.sqnr_db)} dB, cosine {o.error.cosine:.5f}, "
            f"max abs {o.error.max_abs:.4g}, rel L2 {o.error.rel_l2:.4g}{extra}"
        )
        if o.measured_on:
            lines.append(f"  {picked_text(o.measured_on)}")
        if o.shape_differs:
            lines.append(
                f"  its shape depends on the data and differs from float's on "
                f"{o.shape_differs}; compared zero-padded (what one side lacks counts as error)"
            )
    for k, v in ev.task_metric.items():
        builtin = k in ("accuracy", "accuracy_float")
        lines.append(f"{k}: {100 * v:.2f}%" if builtin else f"{k}: {v:.6g}")
    lines.append(
        f"size {fmt_bytes(ev.bytes_before)} -> {fmt_bytes(ev.bytes_after)} "
        f"({ev.compression:.2f}x, {ev.avg_bits:.2f} bits/weight); ran on {', '.join(ev.providers)}"
    )
    diverged = [d for d in ev.first_divergence if d]
    if diverged:
        lines.append(
            f"{len(diverged)} of {len(ev.first_divergence)} samples diverge (a layer's "
            f"accumulated SQNR falls below {DIVERGENCE_DB:g} dB on them); first at: "
            + ", ".join(sorted({shown.get(d, d) for d in diverged}))
        )
    return "\n".join(lines)
