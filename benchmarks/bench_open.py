"""Open + calibrate + first W8A8 evaluation by phase, and ONNX Runtime's own floor for it.

For each model: a plain float run of all feeds (ONNX Runtime's threads not spinning, so its
process CPU is its work), then OPENS opens, each after such a run, with wall and process CPU
(every thread) of each phase: the load, the float reference and calibration, the first W8A8
evaluation; medians, and the whole open against the float run. Then the floor: a session of
the file, and a session of the file with every float tensor an output (what the engine's
float reference fetches at most) running all feeds. Compare branches by running it with
each one's ``app`` on PYTHONPATH in turn (process CPU is the figure to compare on a loaded
machine: docs/benchmarks.md, "openfast").

Run: ``PYTHONPATH=app python benchmarks/bench_open.py crnn /path/to/ppocrv4_rec.onnx
--dim '?=48' --dim p2o.DynamicDimension.1=320 --opens 4``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import SAMPLES, drain, plain_session, settle
from bench_models import per_model
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan


def clocked(fn, into: dict[str, list[tuple[float, float]]], label: str):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    into.setdefault(label, []).append((time.perf_counter() - w, time.process_time() - c))
    return out


def one_open(path: Path, dims: dict[str, int], samples: int, into: dict) -> None:
    w, c = time.perf_counter(), time.process_time()
    model = clocked(lambda: load_model(path), into, "load")
    data = Dataset.random(model.info, n=samples, dims=dims, seed=1)
    engine = Engine(model, data, device="cpu")
    clocked(lambda: drain(engine.calibrate("minmax")), into, "float reference + calibration")
    plan = Plan.preset(model.info, "W8A8")
    clocked(lambda: engine.evaluate(plan), into, "first W8A8 evaluation")
    into.setdefault("whole open", []).append((time.perf_counter() - w, time.process_time() - c))
    engine.close()


def every_tensor(path: Path, tmp: Path) -> Path:
    """The file with every float tensor shape inference knows of as an output."""
    model = onnx.load(str(path))
    known = {v.name for v in model.graph.output}
    inferred = onnx.shape_inference.infer_shapes(model)
    for v in inferred.graph.value_info:
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and v.name not in known:
            model.graph.output.append(v)
            known.add(v.name)
    out = tmp / "every_tensor.onnx"
    onnx.save(model, out)
    return out


def _run_all(sess, feeds) -> None:
    for feed in feeds:
        sess.run(None, feed)


def report(label: str, path: Path, dims: dict[str, int], samples: int, opens: int) -> None:
    data = Dataset.random(load_model(path).info, n=samples, dims=dims, seed=1)
    quiet = plain_session(path, spin=False)
    float_all = lambda: [quiet.run(None, s) for s in data.samples]  # noqa: E731
    float_all()  # warm
    phases: dict[str, list[tuple[float, float]]] = {}
    for _ in range(opens):
        settle()
        clocked(float_all, phases, "float run of all feeds")
        settle()
        one_open(path, dims, samples, phases)
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
           for k, v in phases.items()}  # fmt: skip
    fw, fc = med["float run of all feeds"]
    print(f"\n== {label}: {opens} opens, medians (load average {os.getloadavg()[0]:.1f})")
    print(f"   {'phase':32s} {'wall ms':>8s} {'CPU ms':>8s} {'wall/float':>10s} {'CPU/float':>10s}")
    for name, (w, c) in med.items():
        print(f"   {name:32s} {1000 * w:8.0f} {1000 * c:8.0f} {w / fw:10.2f} {c / fc:10.2f}")
    floor: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        exposed = every_tensor(path, Path(tmp))
        for _ in range(2):
            settle()
            clocked(lambda: plain_session(path, spin=False), floor, "session of the file")
            settle()
            sess = clocked(
                lambda: plain_session(exposed, spin=False), floor, "session, every tensor out"
            )
            settle()
            run_all = partial(_run_all, sess, data.samples)
            clocked(run_all, floor, "every tensor out, all feeds")
            del sess, run_all
    print("   ONNX Runtime alone (the better of 2):")
    for name, rows in floor.items():
        w, c = min(rows, key=lambda x: x[1])
        print(f"   {name:32s} {1000 * w:8.0f} {1000 * c:8.0f} {w / fw:10.2f} {c / fc:10.2f}")


def main() -> None:
    per_model(__doc__.splitlines()[0], SAMPLES, "opens per model (3)", report)

if __name__ == "__main__":
    main()
