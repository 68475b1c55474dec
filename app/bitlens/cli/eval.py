"""``bitlens eval MODEL --plan P [--data D] [--json]``: errors and sizes of a plan.

The JSON form is :meth:`bitlens.core.results.Evaluation.to_dict` with
non-finite numbers as the strings "inf"/"-inf"/"nan".
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bitlens.cli.common import (
    add_data_arguments,
    add_target_argument,
    calibrated_engine,
    dump_json,
    fmt_bytes,
    fmt_db,
)
from bitlens.core.errors import PlanError
from bitlens.core.model.loader import load_model
from bitlens.core.plan import PRESETS, Plan
from bitlens.core.results import Evaluation


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a quantization plan: per-layer and output error")
    p.add_argument("model", help="ONNX model file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--plan", help="plan JSON (from 'bitlens plan' or the window)")
    g.add_argument("--preset", choices=PRESETS, help="evaluate a preset plan instead")
    add_data_arguments(p)
    add_target_argument(p)
    p.add_argument("--calibration", default="minmax", help="minmax, percentile, mse or entropy")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--deployed",
        action="store_true",
        help="also run the plan as deployed (exported, default ONNX Runtime session: the "
        "integer kernels' numbers) and compare it with the simulation",
    )
    p.set_defaults(func=run)


def load_plan(args: argparse.Namespace, model) -> Plan:
    plan = _read_plan(args, model)
    target = getattr(args, "target", None)
    return plan if target is None else plan.with_target(target)


def _read_plan(args: argparse.Namespace, model) -> Plan:
    if getattr(args, "preset", None):
        return Plan.preset(model.info, args.preset)
    path = Path(args.plan)
    if not path.is_file():
        raise PlanError(f"{path}: no such plan file")
    return Plan.from_json(model.info, path.read_text(encoding="utf-8"))


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    plan = load_plan(args, model)
    engine = calibrated_engine(args, model)
    ev = engine.evaluate(plan)
    rows = _deployed(engine, plan) if args.deployed else None
    if args.json:
        data = ev.to_dict()
        if rows is not None:
            data["deployed"] = [r.to_dict() for r in rows]
        print(dump_json(data))
        return 0
    print(render(ev))
    if rows is not None:
        print("\nas deployed (exported, default ONNX Runtime session) vs simulated:")
        for r in rows:
            same = "bit-exact" if r.exact else f"max |deployed - simulated| {r.max_abs_difference:.3g}"
            print(f"  {r.name}: SQNR simulated {fmt_db(r.simulated.sqnr_db)}, deployed "
                  f"{fmt_db(r.deployed.sqnr_db)}; {same}")  # fmt: skip
    return 0


def _deployed(engine, plan: Plan):
    from bitlens.core.export.asdeployed import DeployedRunner

    runner = DeployedRunner(engine)
    try:
        return runner.compare(plan)
    finally:
        runner.close()


def render(ev: Evaluation) -> str:
    rows = [("layer", "weight", "activation", "w SQNR", "local", "accum", "bytes")]
    for r in ev.layers.values():
        rows.append(
            (
                r.name,
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
    lines.append("")
    for o in ev.outputs.values():
        extra = ""
        if o.top1_agreement is not None:
            extra = f", top-1 agreement {100 * o.top1_agreement:.1f}%, KL {o.kl:.4g}"
        lines.append(
            f"output {o.name}: SQNR {fmt_db(o.error.sqnr_db)} dB, cosine {o.error.cosine:.5f}, "
            f"max abs {o.error.max_abs:.4g}, rel L2 {o.error.rel_l2:.4g}{extra}"
        )
    for k, v in ev.task_metric.items():
        lines.append(f"{k}: {100 * v:.2f}%")
    lines.append(
        f"size {fmt_bytes(ev.bytes_before)} -> {fmt_bytes(ev.bytes_after)} "
        f"({ev.compression:.2f}x, {ev.avg_bits:.2f} bits/weight); ran on {', '.join(ev.providers)}"
    )
    diverged = [d for d in ev.first_divergence if d]
    if diverged:
        lines.append(
            f"{len(diverged)} of {len(ev.first_divergence)} samples diverge; first at: "
            + ", ".join(sorted(set(diverged)))
        )
    return "\n".join(lines)
