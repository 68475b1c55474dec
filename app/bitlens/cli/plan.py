"""``bitlens plan MODEL --preset NAME [--layers L ...] -o plan.json``: write a plan."""

from __future__ import annotations

import argparse
from pathlib import Path

from bitlens.cli.common import add_model_arguments, add_target_argument
from bitlens.cli.eval import read_plan
from bitlens.cli.outputs import guard_outputs
from bitlens.core.fileio import atomic_write_text
from bitlens.core.plan import PRESET_FORMATS, PRESETS, Plan
from bitlens.core.recovery import RECOVERY_CHOICES, parse_recovery
from bitlens.core.recovery.support import with_recovery


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="write a plan JSON from a preset")
    p.add_argument("model", help="ONNX model file")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument(
        "--from-ort",
        metavar="OVERRIDES.json",
        help="read ONNX Runtime TensorQuantOverrides (or a plan) instead of a preset",
    )
    g.add_argument(
        "--preset",
        choices=PRESETS,
        help="; ".join(
            f"{k}: W {w or 'float'}, A {a or 'float'}" for k, (w, a) in PRESET_FORMATS.items()
        ),
    )
    p.add_argument("--layers", nargs="+", metavar="L", help="only these layers (default: all)")
    p.add_argument(
        "--recovery",
        choices=RECOVERY_CHOICES,
        help="an accuracy-recovery method for the weights of every layer it applies to "
        "(computed from the calibration data when the plan is evaluated or exported)",
    )
    add_target_argument(p)
    add_model_arguments(p)
    p.add_argument(
        "--ort-overrides",
        action="store_true",
        help="write ONNX Runtime TensorQuantOverrides that make quantize_static compute the "
        "same codes and scales (explicit scale/zero_point where ONNX Runtime's own rule differs)",
    )
    p.add_argument("-o", "--output", required=True, help="where to write the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitlens.cli.common import dump_json, open_model

    guard_outputs(args, [(args.output, "json", "plan")])
    model = open_model(args.model, fold_bn=not args.keep_batchnorm)
    if args.from_ort:
        plan = read_plan(Path(args.from_ort), model.info)
        source = args.from_ort
    else:
        plan = Plan.preset(model.info, args.preset, args.layers)
        source = args.preset
    if args.target is not None:
        plan = plan.with_target(args.target)
    skipped: list[str] = []
    if args.recovery:
        plan, skipped = with_recovery(plan, parse_recovery(args.recovery))
    if args.ort_overrides:
        text = dump_json(plan.to_ort_overrides(weights=model.weight))
    else:
        text = plan.to_json()
    atomic_write_text(args.output, text + "\n")
    print(f"wrote {args.output}: {len(plan.choices)} of {len(plan)} layers from {source}")
    for line in skipped:
        print(f"no recovery: {line}")
    left_out = plan.ort_unrepresentable(with_weights=True) if args.ort_overrides else []
    if left_out:
        print("not expressible as ORT overrides: " + "; ".join(left_out))
    return 0
