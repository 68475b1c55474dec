"""``bitlens eval``'s comparison and report options: ``--compare-plan``, ``--compare-model``
and ``--report``, the headless twins of the window's Pin as A, File ▸ Compare With Model
and File ▸ Save Report. The numbers come from :mod:`bitlens.core.compare` and the page
from :mod:`bitlens.core.htmlreport`, as in the window."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bitlens.core.compare import (
    ModelComparison,
    PlanComparison,
    compare_evaluations,
    compare_models,
)
from bitlens.core.compute import compute_of
from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError, PlanError
from bitlens.core.fileio import check_output
from bitlens.core.htmlreport import ReportContent, render_html, write_report
from bitlens.core.model.loader import LoadedModel
from bitlens.core.plan import Plan
from bitlens.core.results import Evaluation
from bitlens.core.usermetric import Metric, evaluate_with


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--compare-plan",
        metavar="B.json",
        help="also evaluate plan B on the same data and print its per-layer deltas against "
        "the --plan/--preset plan (A): error (dB, B - A) and bytes",
    )
    p.add_argument(
        "--compare-model",
        metavar="OTHER.onnx",
        help="compare the weights of another model (a fine-tuned version, another export) "
        "layer by layer, matched by name, and each one's weight SQNR in the plan's formats",
    )
    p.add_argument(
        "--report",
        metavar="OUT.html",
        help="write a self-contained HTML report (plan, per-layer table, charts, output "
        "metrics, data provenance); with --compare-plan it reports plan B against A",
    )


def plan_comparison(
    args: argparse.Namespace, model: LoadedModel, engine: Engine, plan_a: Plan,
    ev_a: Evaluation, metric: Metric | None,
) -> tuple[Plan, Evaluation, PlanComparison] | None:  # fmt: skip
    """Plan B (``--compare-plan``; ``--target``, when given, applies to both plans) evaluated
    on the same engine and compared with A; None without the option."""
    if not args.compare_plan:
        return None
    from bitlens.cli.eval import read_plan  # eval imports this module

    try:
        plan_b = read_plan(Path(args.compare_plan), model.info)
    except PlanError as exc:
        raise PlanError(f"--compare-plan {args.compare_plan}: {exc}") from None
    target = getattr(args, "target", None)
    if target is not None:
        plan_b = plan_b.with_target(target)
    ev_b = evaluate_with(engine, plan_b, metric)
    return plan_b, ev_b, compare_evaluations(plan_a, ev_a, plan_b, ev_b)


def model_comparison(
    args: argparse.Namespace, model: LoadedModel, plan: Plan
) -> ModelComparison | None:
    if not args.compare_model:
        return None
    from bitlens.core.model.dequantized import dequantized
    from bitlens.core.model.loader import load_model

    # an export has no float layer: its weights are compared dequantized
    return compare_models(model, dequantized(load_model(args.compare_model)), plan)


def _inputs(args: argparse.Namespace) -> list[str | None]:
    return [args.model, getattr(args, "plan", None), args.compare_plan, args.compare_model,
            args.data, args.calib_data, args.eval_data]  # fmt: skip


def check_report_target(args: argparse.Namespace) -> None:
    """Refuse a bad ``--report`` path before any work is done (it is checked again when
    written)."""
    if args.report:
        check_output(args.report, "html", _inputs(args), what="report")
        folder = Path(args.report).expanduser().parent
        if not folder.is_dir():
            raise BitlensError(f"cannot write {args.report}: folder {folder} does not exist")


def report(
    args: argparse.Namespace, model: LoadedModel, engine: Engine, plan: Plan, ev: Evaluation,
    comparison: PlanComparison | None, models: ModelComparison | None = None,
) -> None:  # fmt: skip
    """Write ``--report`` (never over the model, a plan or the data read)."""
    if not args.report:
        return
    data = engine.data
    content = ReportContent(
        info=model.info,
        model=Path(args.model).name,
        plan=plan,
        evaluation=ev,
        data=None if data is None else data.summary(),
        calibration=args.calibration,
        comparison=comparison,
        models=models,
        compute=compute_of(engine).to_dict(model.info, plan),
    )
    path = write_report(args.report, render_html(content), _inputs(args))
    print(f"report written to {path}", file=sys.stderr if args.json else sys.stdout)
