"""A plan's deployed speed against the float model and W8A8, and where its time goes.

Exports PLAN (a plan JSON, e.g. from ``bitlens search``) and the W8A8 preset with the
default options, then times the float model and both files in plain ONNX Runtime sessions
(default graph optimizations, one intra-op thread: on a shared machine more threads only
add noise), runs interleaved, and prints the fastest and median time of each with its
ratio to float. ``--profile`` adds each file's time per operator type and its slowest
nodes (ONNX Runtime's profiler, ``SessionOptions.enable_profiling``; per node the fastest
of the profiled runs, the load of other processes left out).

Run: ``PYTHONPATH=app python benchmarks/bench_plan_speed.py MODEL PLAN.json --calib-data C
--eval-data E [--seconds 20] [--profile]``.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import export
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.results import drain

PROFILED_RUNS = 20


def session(path: str, profile: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.enable_profiling = profile
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def profile(path: str, feed: dict[str, np.ndarray]) -> None:
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("plan")
    p.add_argument("--calib-data", required=True)
    p.add_argument("--eval-data", required=True)
    p.add_argument("--seconds", type=float, default=20.0, help="timing, all sessions (20)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    model = load_model(args.model)
    data = Dataset.separate(
        Dataset.from_npz(args.calib_data, model.info),
        Dataset.from_npz(args.eval_data, model.info),
    )
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    plan = Plan.from_json(model.info, Path(args.plan).read_text())
    plans = {"plan": plan, "W8A8": Plan.preset(model.info, "W8A8").with_target(plan.target)}
    feed = data.samples[next(iter(data.evaluation))]
    with tempfile.TemporaryDirectory(prefix="bench-plan-speed-") as tmp:
        paths = {"float": args.model}
        for label, plan in plans.items():
            paths[label] = str(Path(tmp) / f"{label}.onnx")
            drain(export(engine, plan, paths[label]))
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
        print(f"{Path(args.model).name}: 1 thread, {len(times['float'])} interleaved rounds")
        for k, t in times.items():
            print(f"  {k:6s} fastest {min(t):9.3f} ms (x{min(t) / f_min:.2f} float)  "
                  f"median {statistics.median(t):9.3f} ms (x{statistics.median(t) / f_med:.2f})")  # fmt: skip
        if args.profile:
            for k in plans:
                profile(paths[k], feed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
