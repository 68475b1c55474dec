"""``bitlens plan MODEL --preset NAME [--layers L ...] -o plan.json``: write a plan."""

from __future__ import annotations

import argparse

from bitlens.cli.common import add_target_argument
from bitlens.core.fileio import atomic_write_text
from bitlens.core.model.loader import load_model
from bitlens.core.plan import PRESET_FORMATS, PRESETS, Plan


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="write a plan JSON from a preset")
    p.add_argument("model", help="ONNX model file")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        required=True,
        help="; ".join(
            f"{k}: W {w or 'float'}, A {a or 'float'}" for k, (w, a) in PRESET_FORMATS.items()
        ),
    )
    p.add_argument("--layers", nargs="+", metavar="L", help="only these layers (default: all)")
    add_target_argument(p)
    p.add_argument(
        "--ort-overrides", action="store_true", help="write ONNX Runtime TensorQuantOverrides"
    )
    p.add_argument("-o", "--output", required=True, help="where to write the JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bitlens.cli.common import dump_json

    model = load_model(args.model)
    plan = Plan.preset(model.info, args.preset, args.layers)
    if args.target is not None:
        plan = plan.with_target(args.target)
    text = dump_json(plan.to_ort_overrides()) if args.ort_overrides else plan.to_json()
    atomic_write_text(args.output, text + "\n")
    print(f"wrote {args.output}: {len(plan.choices)} of {len(plan)} layers at {args.preset}")
    if args.ort_overrides and plan.ort_unrepresentable():
        print("not expressible as ORT overrides: " + "; ".join(plan.ort_unrepresentable()))
    return 0
