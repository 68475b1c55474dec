"""Issue 11's time rows next to the design's floor: how much of each row is work the engine
cannot skip, and how much is slack.

Per model, in one process:

- the baselines: a plain float ONNX Runtime run (threads not spinning, so that its process
  CPU is its work) of all feeds and of the evaluation feeds, medians of runs taken before,
  between and after the steps below;
- measured, as ``bench_engine.py`` measures them: OPENS opens (load_model, calibrate
  "minmax", first W8A8 evaluation), each after a float run of all feeds, then in each
  opened engine the 16 one-layer changes of ``bench_engine.py`` (8 layers spread through
  the model, int4 then int2 weights), each after a float run of the evaluation feeds;
  medians over the opens;
- the floor: the same open and changes in an engine that does its work in turn on one
  thread, every session build, run, comparison with the float reference and output-error
  computation made twice alone right before it (``floor_record.py``), plus ``load_model``
  alone. A row's floor is the sum of its pieces: for the open, the load, the float session
  build, the float reference's runs of every feed (what it fetches: every layer's input and
  output, the calibration ranges' tensors), the min and max of those values, the W8A8
  simulation session build and its runs of the evaluation feeds, the local errors' session
  build and runs, measuring, the output errors; for a change, its runs (the part of the
  graph after the change), measuring, its local error and the output errors (session builds
  shown apart: a new structure's sessions can be built ahead). What the engine does besides
  (graphs built in Python, quantizing the weights, feeds, reading spilled values, the
  arena, extra sessions and runs) is the slack, listed where it is a recorded call;
- for the first layer's change, the floor the issue names: the simulation graph's whole
  run of the evaluation feeds with every layer output fetched, measuring, output errors.

Every figure is printed against the float run (CPU to CPU, wall to wall). Process CPU is
the figure to read on a loaded machine; the targets are wall on a quiet one. Columns of the
open: "step CPU", a piece's process CPU inside the recorded step (right after its calls
alone, so warm); "alone" and "CPU", the cheaper of its two calls alone (its floor); "cold
CPU", the first of them: the first run of a session faults in the arena's new buffers and
reorders the fed filters for NCHWc (nchwc.py), work a warm run does not do. Below them the
recorded open's own CPU (less the calls made alone), the part of it inside the pieces, and
the named work outside them (floor_record.NAMED: reference values spilled and read, graphs
built in Python, the plan's feeds, the arena given back); per change, its CPU outside the
pieces ("-" where part sessions were built: two at a time, their figures overlap).

Run: ``PYTHONPATH=app python benchmarks/bench_floors.py crnn /path/to/ppocrv4_rec.onnx
--dim '?=48' --dim p2o.DynamicDimension.1=320`` (``--opens 3``).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import SAMPLES, drain, plain_session, settle
from bench_models import per_model
from bitlens.core import metrics
from bitlens.core.data import Dataset, batch_of
from bitlens.core.engine import Engine
from bitlens.core.engine.session import make_session
from bitlens.core.model.loader import load_model
from bitlens.core.plan import LayerChoice, Plan
from floor_record import Piece, Recorder, alone

# Pieces of the open that are not in its floor: a second build of a session, runs of part
# of a feed (row_cap's first unit) and of sessions the floor does not name.
OPEN_FLOOR = ("float session", "W8A8 simulation session", "local errors session")


def clocked(fn) -> tuple[object, float, float]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def changes(plan: Plan, names: list[str]) -> list[tuple[str, Plan]]:
    """bench_engine.py's 16 changes: 8 layers spread through the model, int4 then int2."""
    step = max(1, len(names) // 8)
    return [
        (
            f"{name} int{bits}",
            plan.with_choices({name: LayerChoice.of(f"int{bits} sym ch", "uint8 asym")}),
        )
        for name in names[::step][:8]
        for bits in (4, 2)
    ]


class Baseline:
    """Non-spinning float runs of all feeds and of the evaluation feeds, (wall, CPU) each."""

    def __init__(self, path: Path, data: Dataset) -> None:
        sess = plain_session(path, spin=False)
        self._all = lambda: [sess.run(None, s) for s in data.samples]
        self._eval = lambda: [sess.run(None, data.samples[i]) for i in data.evaluation]
        self._all()  # warm
        self.all: list[tuple[float, float]] = []
        self.eval: list[tuple[float, float]] = []

    def run_all(self) -> None:
        self.all.append(alone(self._all))

    def run_eval(self) -> None:
        self.eval.append(alone(self._eval))

    @staticmethod
    def median(rows) -> tuple[float, float]:
        return statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)


def open_engine(path: Path, dims: dict, samples: int, *, in_turn: bool) -> tuple:
    model = load_model(path)
    data = Dataset.random(model.info, n=samples, dims=dims, seed=1)
    engine = Engine(model, data, device="cpu")
    if in_turn:
        engine.overlap = False
        engine.run_workers = 1
    return model, engine


def measured(path: Path, dims: dict, samples: int, opens: int, base: Baseline) -> dict:
    """Wall and CPU of each open and, in each opened engine, of each of the 16 changes:
    medians over the opens."""
    rows = []
    per_change: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _ in range(opens):
        base.run_all()
        settle()

        def step():
            m, e = open_engine(path, dims, samples, in_turn=False)
            drain(e.calibrate("minmax"))
            p = Plan.preset(m.info, "W8A8")
            e.evaluate(p)
            return m, e, p

        (model, engine, plan), w, c = clocked(step)
        rows.append((w, c))
        for label, p in changes(plan, [la.name for la in model.info.layers]):
            base.run_eval()
            settle()
            _, w, c = clocked(lambda p=p, e=engine: e.evaluate(p))
            per_change[label].append((w, c))
        engine.close()
    return {
        "open": Baseline.median(rows),
        "changes": {k: Baseline.median(v) for k, v in per_change.items()},
    }


def floors(path: Path, dims: dict, samples: int, base: Baseline) -> dict:
    """The recorded open and changes, their pieces timed alone, and the whole-graph floor of
    the first layer's change."""
    load = min((alone(lambda: load_model(path)) for _ in range(2)), key=lambda x: x[1])
    model, engine = open_engine(path, dims, samples, in_turn=True)
    plan = Plan.preset(model.info, "W8A8")
    todo = changes(plan, [la.name for la in model.info.layers])
    with Recorder() as rec:

        def own(fn) -> tuple[float, float]:
            """(wall, CPU) of ``fn()`` in turn, less the pieces' calls made alone."""
            before = rec.spent
            _, w, c = clocked(fn)
            return w - (rec.spent[0] - before[0]), c - (rec.spent[1] - before[1])

        def first() -> None:
            drain(engine.calibrate("minmax"))
            engine.evaluate(plan)

        rec.samples = engine.data.samples
        settle()
        turn = own(first)
        opened = (rec.take(), turn)
        per_change = {}
        for label, p in todo:
            base.run_eval()
            settle()
            turn = own(lambda p=p: engine.evaluate(p))
            per_change[label] = (rec.take(), turn)
    whole = whole_graph(engine, todo[0][1])
    engine.close()
    return {"load": load, "open": opened, "changes": per_change, "whole": (todo[0][0], whole)}


def whole_graph(engine: Engine, plan: Plan) -> dict[str, tuple[float, float]]:
    """The first layer's change as the issue floors it, each piece alone (the better of 2):
    the simulation graph's run of the evaluation feeds with every layer output fetched, those
    outputs measured against the float reference, the output errors."""
    sim, feeds = engine.simulation(plan)
    sess = make_session(sim.model, "cpu")
    ref = engine._ensure_ref()
    data = engine.data
    outs = list(engine._output_fetch)
    layer_out = [t for t in sim.layer_outputs.values() if t not in outs]
    fetch = [*outs, *layer_out]
    got: dict[int, list[np.ndarray]] = {}

    def run() -> None:
        got.clear()  # held, the last outputs would make the run map new buffers
        for i in data.evaluation:
            got[i] = sess.run(fetch, {**data.samples[i], **feeds})

    def measure() -> None:
        for i in data.evaluation:
            rows = batch_of(data.samples[i])
            for name, value in zip(fetch, got[i], strict=True):
                if name in layer_out:
                    metrics.SampleErrors().add(ref.value(name, i), value, rows)

    def output_errors() -> None:
        values = {n: [got[i][k] for i in data.evaluation] for k, n in enumerate(outs)}
        engine._scores_of = None  # computed again, as the first evaluation does
        engine._output_results(ref, values, data.evaluation)

    out = {}
    for label, fn in (("run, every layer output", run), ("measuring", measure),
                      ("output errors", output_errors)):  # fmt: skip
        out[label] = min((alone(fn) for _ in range(2)), key=lambda x: x[1])
    return out


def in_open_floor(pieces: list[Piece]) -> list[tuple[Piece, bool]]:
    """Each piece of the open and whether its floor counts it (one build per session role
    but every local-errors build, runs of whole feeds on those sessions, the numpy work)."""
    built: set[str] = set()
    out = []
    for p in pieces:
        if p.build:
            keep = p.role in OPEN_FLOOR and (p.role not in built or p.role.startswith("local"))
            built.add(p.role)
        elif p.role.startswith("run: "):
            keep = p.role[5:] in OPEN_FLOOR
        else:
            keep = True
        out.append((p, keep))
    return out


def sums(pieces) -> dict[str, list[float]]:
    """role -> [count, in-step CPU, alone wall, alone CPU, the first call alone's CPU]."""
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0, 0.0, 0.0])
    for p in pieces:
        row = out[p.role]
        row[0] += 1
        row[1] += p.step_cpu
        row[2] += p.wall
        row[3] += p.cpu
        row[4] += p.cold_cpu
    return out


def report(label: str, path: Path, dims: dict, samples: int, opens: int) -> None:
    data = Dataset.random(load_model(path).info, n=samples, dims=dims, seed=1)
    base = Baseline(path, data)
    meas = measured(path, dims, samples, opens, base)
    fl = floors(path, dims, samples, base)
    for _ in range(3):
        base.run_all()
        base.run_eval()
    aw, ac = Baseline.median(base.all)
    ew, ec = Baseline.median(base.eval)
    print(f"\n== {label} (load average {os.getloadavg()[0]:.1f}): float run of all feeds "
          f"{1000 * aw:.0f} ms wall / {1000 * ac:.0f} ms CPU, of the evaluation feeds "
          f"{1000 * ew:.0f} / {1000 * ec:.0f} ms")  # fmt: skip
    head = f"   {'piece':46s} {'n':>3s} {'step CPU':>8s} {'alone':>7s} {'CPU':>7s} {'wall x':>7s} {'CPU x':>6s} {'cold CPU':>8s}"

    print("-- open + calibrate + first W8A8 evaluation (x the float run of all feeds); ms")
    print(head)
    lw, lc = fl["load"]
    print(f"   {'load_model':46s} {1:3d} {'':8s} {1000 * lw:7.0f} {1000 * lc:7.0f} "
          f"{lw / aw:7.2f} {lc / ac:6.2f}")  # fmt: skip
    (opened, named), (_turn_w, turn_c) = fl["open"]
    marked = in_open_floor(opened)
    floor_w, floor_c = lw, lc
    for keep in (True, False):
        if not keep:
            print("   not in the floor (the engine's own choice):")
        for role, (n, step, w, c, cold) in sums([p for p, k in marked if k is keep]).items():
            print(f"   {role:46s} {n:3d} {1000 * step:8.0f} {1000 * w:7.0f} {1000 * c:7.0f} "
                  f"{w / aw:7.2f} {c / ac:6.2f} {1000 * cold:8.0f}")  # fmt: skip
            if keep:
                floor_w, floor_c = floor_w + w, floor_c + c
    ow, oc = meas["open"]
    print(f"   {'FLOOR (sum of the pieces above)':46s} {'':3s} {'':8s} {1000 * floor_w:7.0f} "
          f"{1000 * floor_c:7.0f} {floor_w / aw:7.2f} {floor_c / ac:6.2f}")  # fmt: skip
    print(f"   {'OPEN measured, median of ' + str(opens):46s} {'':3s} {'':8s} {1000 * ow:7.0f} "
          f"{1000 * oc:7.0f} {ow / aw:7.2f} {oc / ac:6.2f}   (target 5x wall)")  # fmt: skip
    print(f"   the open over its floor: wall +{100 * (ow / floor_w - 1):.0f}%, "
          f"CPU +{100 * (oc / floor_c - 1):.0f}%")  # fmt: skip
    in_pieces = sum(p.step_cpu for p in opened)
    print(f"   the open in turn on one thread (its calibration and evaluation; the floor's "
          f"engine): {1000 * turn_c:.0f} ms CPU, {1000 * in_pieces:.0f} in the pieces above "
          f"(their step CPU), {1000 * (turn_c - in_pieces):.0f} outside them (Python graphs, "
          f"weights, feeds, spilled values, the arena), of which:")  # fmt: skip
    for label, (n, w, c) in sorted(named.items(), key=lambda x: -x[1][2]):
        print(f"     {label:44s} {n:3d} {'':8s} {1000 * w:7.0f} {1000 * c:7.0f} "
              f"{w / aw:7.2f} {c / ac:6.2f}")  # fmt: skip

    print("-- re-evaluation after one change (x the float run of the evaluation feeds)")
    print(f"   {'change':22s} {'wall x':>7s} {'CPU x':>6s} {'floor w':>7s} {'floor c':>7s} "
          f"{'CPU over':>8s}  floor CPU: runs / measuring / local / outputs; builds apart")  # fmt: skip
    rows = []
    for name, (w, c) in meas["changes"].items():
        (pieces, named), (_tw, tc) = fl["changes"][name]
        parts = {"runs": 0.0, "measuring": 0.0, "local": 0.0, "outputs": 0.0, "builds": 0.0}
        fw = fc = 0.0
        for p in pieces:
            if p.build:
                parts["builds"] += p.cpu
                continue
            key = ("local" if "local" in p.role else "runs" if p.role.startswith("run")
                   else "outputs" if p.role == "output errors" else "measuring")  # fmt: skip
            parts[key] += p.cpu
            fw, fc = fw + p.wall, fc + p.cpu
        rows.append((name, w, c, fw, fc))
        detail = " / ".join(
            f"{1000 * parts[k]:.0f}" for k in ("runs", "measuring", "local", "outputs")
        )
        # a new structure's part sessions are built two at a time (chain.build_chain), each
        # made alone on its thread too: the in-turn figures overlap there
        outside = None if parts["builds"] else tc - sum(p.step_cpu for p in pieces)
        top = max(named.items(), key=lambda x: x[1][2], default=("", (0, 0.0, 0.0)))
        print(f"   {name:22s} {w / ew:7.2f} {c / ec:6.2f} {fw / ew:7.2f} {fc / ec:7.2f} "
              f"{100 * (c / fc - 1):+7.0f}%  {detail} ms; builds {1000 * parts['builds']:.0f}; "
              f"outside the pieces " + ("-" if outside is None else f"{1000 * outside:.0f}") +
              f" (most: {top[0]} {1000 * top[1][2]:.0f})")  # fmt: skip
    by_cpu = sorted(rows, key=lambda r: r[2])
    for what, r in (("median", by_cpu[len(by_cpu) // 2]), ("worst", by_cpu[-1])):
        name, w, c, fw, fc = r
        print(f"   {what} change (by CPU) {name}: {w / ew:.2f}x wall / {c / ec:.2f}x CPU against "
              f"a floor of {fw / ew:.2f}x / {fc / ec:.2f}x (targets 1.5x median, 2.5x worst)")  # fmt: skip
    first, whole = fl["whole"]
    tw = sum(v[0] for v in whole.values())
    tc = sum(v[1] for v in whole.values())
    pieces = ", ".join(f"{k} {1000 * v[0]:.0f}/{1000 * v[1]:.0f}" for k, v in whole.items())
    print(f"   {first} as the issue floors it (wall/CPU ms, each alone): {pieces}; "
          f"sum {tw / ew:.2f}x wall / {tc / ec:.2f}x CPU")  # fmt: skip


def main() -> None:
    per_model(__doc__.splitlines()[0], SAMPLES, "measured opens per model (3)", report)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
