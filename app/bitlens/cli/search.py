"""``bitlens search MODEL [data] (--max-bytes N | --size-ratio R | --max-error E | --min-metric M)
[--metric mod:fn] [--pin LAYER=FORMAT ...] [--seed S] -o plan.json [--front front.json]``.

Finds a mixed-precision plan within the budget (see :mod:`bitlens.core.search`)
and writes it as a plan JSON that ``eval``, ``export`` and the window load;
``--front`` also writes every Pareto-optimal plan tried, with its file bytes,
output error and metric, and the float model and presets it was compared with.
"""

from __future__ import annotations

import argparse

from bitlens.cli.common import (
    add_data_arguments,
    add_target_argument,
    calibrated_engine,
    dump_json,
    fmt_bytes,
    open_model,
)
from bitlens.cli.names import resolve_layer
from bitlens.cli.outputs import guard_outputs
from bitlens.cli.progress import follow
from bitlens.core.errors import SearchError
from bitlens.core.fileio import atomic_write_text
from bitlens.core.formats import parse_format
from bitlens.core.layer_names import listed
from bitlens.core.limits import parse_size
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import LayerChoice
from bitlens.core.search import (
    DEFAULT_ACTIVATION_FORMATS,
    DEFAULT_BASE_ACTIVATION,
    DEFAULT_RECOVERY,
    DEFAULT_SIZE_RATIO,
    DEFAULT_WEIGHT_FORMATS,
    FLOAT_NAME,
    Budget,
    SearchOptions,
    SearchResult,
    search,
)
from bitlens.core.search.memory import search_memory
from bitlens.core.search.options import AS_W8A8, HALF_W8A8, parse_max_latency
from bitlens.core.search.recovered import parse_methods
from bitlens.core.targets import DEFAULT_TARGET
from bitlens.core.units import format_bytes
from bitlens.core.usermetric import load_metric


def add_metric_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metric",
        metavar="MOD:FN",
        help="your task metric: module:function or file.py:function, called as "
        "f(outputs, reference_outputs, labels) -> float, higher is better "
        "(default: accuracy when the data has labels)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="find a mixed-precision plan within a budget")
    p.add_argument("model", help="ONNX model file")
    add_data_arguments(p)
    p.add_argument("--calibration", default="minmax", help="minmax, percentile, mse or entropy")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--max-bytes", type=int, metavar="N", help="largest exported file size")
    g.add_argument("--size-ratio", type=float, metavar="R",
                   help="largest size as a fraction of float (the default budget: "
                   f"{DEFAULT_SIZE_RATIO:g}, as the window's Find Plan panel, or W8A8's size "
                   "where no plan fits that)")  # fmt: skip
    g.add_argument("--max-error", type=float, metavar="E",
                   help="largest relative L2 error of the outputs (0.01 = 1%%)")  # fmt: skip
    g.add_argument("--min-metric", type=float, metavar="M", help="smallest task metric")
    add_metric_argument(p)
    add_target_argument(p)
    p.add_argument("--pin", action="append", default=[], metavar="LAYER=W[,A]",
                   help="keep LAYER at weight format W (and activation A; 'float' keeps "
                   "float) (repeatable)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="breaks ties reproducibly (0)")
    p.add_argument("--weight-formats", nargs="+", default=list(DEFAULT_WEIGHT_FORMATS),
                   metavar="F", help="candidate weight formats")  # fmt: skip
    p.add_argument("--activation-formats", nargs="+", default=list(DEFAULT_ACTIVATION_FORMATS),
                   metavar="F", help="candidate activation formats ('float' keeps float)")  # fmt: skip
    p.add_argument("--activations", default=DEFAULT_BASE_ACTIVATION, metavar="F",
                   help=f"the base activation format ('{DEFAULT_BASE_ACTIVATION}'; "
                   "'float' searches weights only)")  # fmt: skip
    p.add_argument("--wide-activations", type=int, metavar="N",
                   help="at most N layers keep activations wider than the base "
                   "(default: a tenth of the layers, at least 1)")  # fmt: skip
    p.add_argument("--recovery", nargs="+", default=list(DEFAULT_RECOVERY), metavar="M",
                   help="recovery methods a layer's 2- to 4-bit integer weights may get "
                   f"({' '.join(DEFAULT_RECOVERY)}; 'none': plain rounding)")  # fmt: skip
    p.add_argument("--max-latency", default=HALF_W8A8, metavar="RATIO",
                   help="ONNX Runtime CPU: the deployed time a plan may take, predicted from "
                   f"MACs and integer kernels: '{HALF_W8A8}' (default: keep at least half of "
                   f"W8A8's speed-up over float), '{AS_W8A8}' (as fast as the W8A8 preset), a "
                   "ratio of the float time (0.5), or 'none'; only where W8A8 runs faster "
                   "than float")  # fmt: skip
    p.add_argument("--search-memory", default=None, metavar="SIZE",
                   help="memory the search may keep resident between its steps, e.g. 512M "
                   "(default: 24 times the model's size, at least 384M); above it, it gives "
                   "back what it can rebuild")  # fmt: skip
    p.add_argument("-o", "--output", required=True, help="where to write the plan JSON")
    p.add_argument("--front", help="also write the front (and references) as JSON here")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def parse_pins(items: list[str], info: ModelInfo) -> dict[str, LayerChoice]:
    pins: dict[str, LayerChoice] = {}
    for item in items:
        name, sep, spec = item.rpartition("=")
        if not sep or not name:
            raise SearchError(f"--pin expects LAYER=WEIGHT[,ACTIVATION], got {item!r}")
        full = resolve_layer(name, info)
        if full is None:
            raise SearchError(f"--pin names layer {name!r}, which the model does not have")
        name = full
        w, _, a = (s.strip() for s in spec.partition(","))
        pins[name] = LayerChoice(
            None if w in ("", FLOAT_NAME) else parse_format(w),
            None if a in ("", FLOAT_NAME) else parse_format(a),
        )
    return pins


def _guard_outputs(args: argparse.Namespace) -> None:
    outputs = [(args.output, "json", "plan")]
    if args.front:
        outputs.append((args.front, "json", "Pareto front"))
    guard_outputs(args, outputs)  # no input of the run, no foreign file (cli/outputs.py)


def run(args: argparse.Namespace) -> int:
    _guard_outputs(args)
    limits = (args.max_bytes, args.size_ratio, args.max_error, args.min_metric)
    default = all(v is None for v in limits)
    if default:  # no budget given: the window's default one
        limits = (None, DEFAULT_SIZE_RATIO, None, None)
    budget = Budget(*limits, default=default)
    max_latency = parse_max_latency(args.max_latency)
    metric = load_metric(args.metric) if args.metric else None
    recovery = tuple(m.value for m in parse_methods(args.recovery))  # before the model loads
    memory_limit = None
    if args.search_memory is not None:
        memory_limit = parse_size(args.search_memory, "--search-memory")
    model = open_model(args.model, fold_bn=not args.keep_batchnorm)
    pins = parse_pins(args.pin, model.info)
    engine = calibrated_engine(args, model)
    options = SearchOptions(
        budget,
        weight_formats=tuple(args.weight_formats),
        activation_formats=tuple(args.activation_formats),
        base_activation=None if args.activations == FLOAT_NAME else args.activations,
        wide_activations=args.wide_activations,
        recovery=recovery,
        pins=pins,
        seed=args.seed,
        metric=metric,
        target=args.target or DEFAULT_TARGET,
        max_latency=max_latency,
        memory_limit=memory_limit,
    )
    limit = search_memory(engine, memory_limit)
    result: SearchResult = follow(search(engine, options))
    atomic_write_text(args.output, result.best.plan.to_json() + "\n")
    if args.front:
        atomic_write_text(args.front, dump_json(result.to_dict()) + "\n")
    if args.json:
        d = result.to_dict()
        d.pop("sensitivities")
        d["search_memory"] = limit
        print(dump_json(d))
    else:
        print(render(result, args.output))
        print(f"memory: at most {format_bytes(limit)} kept resident between the search's "
              "steps (--search-memory)")  # fmt: skip
    return 0


def render(r: SearchResult, output: str) -> str:
    b = r.best
    name = r.metric_name
    # a dB figure reads a relative L2 error; with ArgMax outputs the error counts changed labels
    db = "" if r.label_outputs else f" ({b.sqnr_db:.1f} dB)"
    lines = [
        f"budget: {r.budget.describe()}; {r.evaluations} evaluations, seed {r.seed}",
        f"wrote {output}: {fmt_bytes(b.file_bytes)} ({b.file_bytes / r.float_bytes:.3f} of float), "
        f"output error {b.error:.4g}{db}"
        + ("" if b.metric is None else f", {name} {b.metric:.4g}"),
        f"  {b.summary()}",
    ]
    if r.label_outputs:
        lines.append(f"  output error: the fraction of changed labels for {listed(r.label_outputs)}"
                     " (class indices), relative L2 for any other output, root mean square over "
                     "the outputs")  # fmt: skip
    if b.exported_bytes is not None:
        lines.append(f"  checked by a real export: the file is {fmt_bytes(b.exported_bytes)}")
    if b.deployed_error is not None:
        lines.append(f"  its export in a default ONNX Runtime session: output error "
                     f"{b.deployed_error:.4g}")  # fmt: skip
    if b.check_error is not None:
        lines.append(f"  on the {len(r.check_rows)} evaluation row(s) held back from the "
                     f"search: output error {b.check_error:.4g}"
                     + ("" if b.check_metric is None else f", {name} {b.check_metric:.4g}"))  # fmt: skip
    if r.speed is not None:
        lines.append(f"  {r.speed.describe()}")
        warning = r.speed.warning()
        lines += [warning] if warning else []
    if r.steering is not None:
        lines.append(f"  {r.steering.text}")
    lines += [f"note: {n}" for n in r.notes]
    if r.wide_layers:
        lines.append(f"  wider activations kept on: {', '.join(r.wide_layers)}")
    lines.append("references:")
    for p in r.references:
        m = "" if p.metric is None else f", {name} {p.metric:.4g}"
        lines.append(f"  {p.label:<8} {fmt_bytes(p.file_bytes):>10}  error {p.error:.4g}{m}")
    lines.append(f"front ({len(r.front)} plans):")
    for p in r.front:
        m = "" if p.metric is None else f", {name} {p.metric:.4g}"
        lines.append(f"  {fmt_bytes(p.file_bytes):>10}  error {p.error:.4g}{m}")
    return "\n".join(lines)
