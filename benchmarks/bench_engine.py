"""Engine speed and memory at real scale (issue 11), each row a ratio against a baseline
measured in the same run.

Rows, per model:

- re-evaluate after changing one layer's weight format (median and worst over layers
  spread through the model), against ONE plain float ONNX Runtime run of the same
  evaluation feeds (session built beforehand), and against ``quantize_static`` + a new
  session + that run (the route without Bitlens);
- open (from the file) + calibrate + first W8A8 evaluation, against one plain float run
  over all the data (calibration and evaluation feeds);
- sensitivity sweep over every layer x 4 formats, against L x F plain float runs of the
  evaluation feeds;
- the open and sweep rows again in CPU time (every thread of the process, user and
  system) against the same baselines on a session whose threads do not spin: on a
  loaded machine wall ratios move with the load, CPU ratios much less;
- peak RSS of the engine part, in a process of its own doing only that work, above the
  RSS of the interpreter and the libraries, against 4 x the model's size + 2 x the float
  activations of one feed (every float tensor the model computes for one batch).

Models: ``crnn`` (generated CRNN-like recognizer, ~11 MB, 44 convs, 8 samples of
3x48x320, see bench_models.py), ``mlp100`` (generated 25 x 1024-wide MatMul stack,
100 MB), ``external`` (generated 10 x 8192-wide MatMul stack, 2.7 GB of weights in an
external data file, written to a temporary folder: its rows are the RSS after opening
to the table with per-layer weight statistics, and after calibration and a first W8A8
evaluation, against the weight size), ``depth`` (256-wide MatMul stacks of 10, 100 and 200 layers, 256 rows), or any
ONNX file (random data; ``--dim NAME=SIZE`` for its dynamic dimensions). Each model runs
in a fresh process so that its peak RSS is its own.

Run: ``PYTHONPATH=app python benchmarks/bench_engine.py crnn /path/to/common.onnx
--dim image_width=128`` (default: crnn). ``--memory-only``: only the RSS row;
``--overlap-ab N``: only the open row, N opens with the engine's side thread on and N with
it off, alternated in one process; ``--memory-detail``: also the RSS per phase of the engine work (load, float reference,
calibration, first W8A8 evaluation, re-evaluations, sweep); ``--memory-budget 512M``: the
memory budget the engine plans with (stated on the first line).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn, mlp_stack, write_external_mlp
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.limits import ENV_BUDGET, memory_budget
from bitlens.core.model.loader import load_model
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.units import format_bytes

FORMATS = ("int8 sym ch", "int4 sym ch", "int2 sym ch", "bin ch")
SAMPLES = 8


def plain_session(path: Path, *, spin: bool = True) -> ort.InferenceSession:
    """``spin=False``: ORT's threads sleep between runs instead of spinning, so the CPU time
    of a run is its work (the CPU-time baselines; the engine's sessions do not spin either)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def settle(limit: float = 1.0) -> None:
    """Wait until no thread of this process uses the CPU: a plain session's ORT threads
    spin on after its run returns (ORT's default, ``session.intra_op.allow_spinning``), on
    the CRNN about 45 ms of one core within 100 ms. A timed engine step started right after
    a float baseline run shared the two cores with that spin, and its CPU-time figures
    counted it (every thread of the process). ``limit``: the most seconds to wait."""
    end = time.perf_counter() + limit
    while time.perf_counter() < end:
        c0 = time.process_time()
        time.sleep(0.01)
        if time.process_time() - c0 < 0.0005:
            return


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def cpu_timed(fn) -> float:
    """CPU seconds of the whole process (every thread, user and system) while ``fn`` ran:
    less sensitive than wall time to other processes on the cores, so ratios of it stay
    meaningful on a loaded machine (wall ratios there flatter or punish by the load)."""
    c0 = time.process_time()
    fn()
    return time.process_time() - c0


def timed_cpu(fn, cpu: list[float]) -> float:
    """Wall seconds of ``fn()``; its process CPU seconds (every thread) go to ``cpu``: on a
    machine others load, CPU-time ratios measured in the same run wander far less than wall.
    Starts once the threads of earlier runs have stopped spinning (settle)."""
    settle()
    c0 = time.process_time()
    wall = timed(fn)
    cpu.append(time.process_time() - c0)
    return wall


def drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def batch_activations(path: Path, feed: dict[str, np.ndarray]) -> int:
    """Bytes of every float tensor the model's nodes compute for one feed (one batch): the
    model run with each node output of the main graph exposed, graph optimizations off."""
    model = onnx.load(str(path))
    known = {v.name for v in model.graph.output}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    inferred = onnx.shape_inference.infer_shapes(model)
    types.update({v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info})
    for node in model.graph.node:
        for o in node.output:
            if o and o not in known and types.get(o) in floats:
                model.graph.output.append(onnx.helper.make_tensor_value_info(o, types[o], None))
                known.add(o)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with tempfile.TemporaryDirectory() as tmp:
        exposed = Path(tmp) / "exposed.onnx"
        onnx.save(model, exposed)
        del model, inferred
        sess = ort.InferenceSession(str(exposed), so, providers=["CPUExecutionProvider"])
    outs = sess.run(None, feed)
    return sum(v.nbytes for v in outs if v.dtype.kind == "f")


def today_route(path: Path, weight: str, data: Dataset, out: Path) -> float:
    """W8A8 through quantize_static with one layer's weights at int4 (a TensorQuantOverrides
    entry), then a new session and a run of the evaluation feeds."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([data.samples[i] for i in data.calibration])

        def get_next(self):  # type: ignore[override]
            return next(self.it, None)

    t0 = time.perf_counter()
    quantize_static(
        str(path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"TensorQuantOverrides": {weight: [{"quant_type": QuantType.QInt4}]}},
    )
    sess = plain_session(out)
    for i in data.evaluation:
        sess.run(None, data.samples[i])
    return time.perf_counter() - t0


def open_engine(path: Path, dims: dict, samples: int, overlap: bool = True) -> tuple:
    """Open, calibrate and evaluate W8A8, timed: (model, data, engine, plan, wall s, CPU s).
    ``overlap`` False: the engine's side-thread work done in turn (Engine.overlap)."""
    settle()
    t0, c0 = time.perf_counter(), time.process_time()
    model = load_model(path)
    data = Dataset.random(model.info, n=samples, dims=dims, seed=1)
    engine = Engine(model, data, device="cpu")
    engine.overlap = overlap
    drain(engine.calibrate("minmax"))
    plan = Plan.preset(model.info, "W8A8")
    engine.evaluate(plan)
    return model, data, engine, plan, time.perf_counter() - t0, time.process_time() - c0


def overlap_ab(path: Path, dims: dict, samples: int, rounds: int) -> dict:
    """The open row with the engine's side thread on and off (Engine.overlap), alternated in
    one process (the order swapped every other round), and a non-spinning float run of all
    feeds before each open: medians of wall and CPU seconds."""
    data = Dataset.random(load_model(path).info, n=samples, dims=dims, seed=1)
    quiet = plain_session(path, spin=False)
    float_all = lambda: [quiet.run(None, s) for s in data.samples]  # noqa: E731
    float_all()  # warm
    base: list[tuple[float, float]] = []
    opened: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    for r in range(rounds):
        for overlap in (True, False) if r % 2 == 0 else (False, True):
            settle()
            c0 = time.process_time()
            base.append((timed(float_all), time.process_time() - c0))
            *_, engine, _, wall, cpu = open_engine(path, dims, samples, overlap)
            engine.close()
            opened[overlap].append((wall, cpu))
    med = lambda rows, k: statistics.median(x[k] for x in rows)  # noqa: E731
    return {
        "float": (med(base, 0), med(base, 1)),
        **{f"overlap_{k}": (med(v, 0), med(v, 1)) for k, v in opened.items()},
        "rounds": rounds,
        "load": os.getloadavg()[0],
    }


def report_ab(label: str, r: dict) -> None:
    fw, fc = r["float"]
    print(f"== {label}: open + calibrate + 1st eval, side thread on / off, {r['rounds']} rounds "
          f"alternated (load average {r['load']:.1f}); float run of all feeds {1000 * fw:.0f} ms "
          f"wall, {1000 * fc:.0f} ms CPU")  # fmt: skip
    for key, name in (("overlap_True", "on "), ("overlap_False", "off")):
        w, c = r[key]
        print(f"  {name}: wall {1000 * w:.0f} ms ({w / fw:.2f}x), CPU {1000 * c:.0f} ms "
              f"({c / fc:.2f}x)")  # fmt: skip


def engine_work(
    path: Path, dims: dict, samples: int, quick: bool, between=None, sweep: bool = True
) -> dict:
    """Open, calibrate and evaluate W8A8 (timed), re-evaluate 16 one-layer changes (each
    timed, ``between()`` run before each), sweep (timed; ``sweep`` False: not run)."""
    model, data, engine, plan, open_s, open_cpu = open_engine(path, dims, samples)
    names = [la.name for la in model.info.layers]
    step = max(1, len(names) // 8)
    targets = names[::step][:8]
    re_times: list[float] = []
    re_cpu: list[float] = []
    for name in targets:
        for bits in (4, 2):
            p = plan.with_choices({name: LayerChoice.of(f"int{bits} sym ch", "uint8 asym")})
            if between is not None:
                between()
            re_times.append(timed_cpu(lambda p=p: engine.evaluate(p), re_cpu))
    sweep_layers = names if not quick else names[:: max(1, len(names) // 12)]
    if not sweep:
        sweep_layers = []
    settle()
    t0, c0 = time.perf_counter(), time.process_time()
    if sweep_layers:
        drain(engine.sweep(FORMATS, sweep_layers))
    sweep_s, sweep_cpu = time.perf_counter() - t0, time.process_time() - c0
    engine.close()
    return {
        "model": model,
        "data": data,
        "targets": targets,
        "layers": len(names),
        "open": open_s,
        "open_cpu": open_cpu,
        "re_times": re_times,
        "re_cpu": re_cpu,
        "sweep": sweep_s,
        "sweep_cpu": sweep_cpu,
        "sweep_layers": len(sweep_layers),
    }


def engine_memory(path: Path, dims: dict[str, int], quick: bool, samples: int) -> dict:
    """The engine's peak RSS, in a process that does nothing else: what the engine work
    adds to the interpreter and the libraries (the high-water mark restarts after them)."""
    base = restart_peak()
    engine_work(path, dims, samples, quick)
    return {"rss": peak_rss(), "base_rss": base}


def memory_phases(path: Path, dims: dict[str, int], quick: bool, samples: int) -> dict:
    """RSS at the start and end of each phase of the engine work and its peak within it
    (the high-water mark restarted at each phase's start), above the RSS of the interpreter
    and the libraries, with what tracemalloc traced at its end (Python objects and numpy's
    own buffers; ONNX Runtime's arena, the parsed protobuf and memory maps are not traced)."""
    import gc
    import tracemalloc

    base = restart_peak()
    tracemalloc.start()
    rows: list[list] = []
    held: dict = {}

    def phase(label: str, fn) -> None:
        start = restart_peak()
        t0 = time.perf_counter()
        fn()
        seconds = time.perf_counter() - t0
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        rows.append([label, start - base, peak_rss() - base, rss_now() - base, traced, seconds])

    phase("load", lambda: held.update(model=load_model(path)))
    model = held["model"]
    data = Dataset.random(model.info, n=samples, dims=dims, seed=1)
    phase("Engine()", lambda: held.update(engine=Engine(model, data, device="cpu")))
    engine = held["engine"]
    phase("float reference", lambda: drain(engine.prepare()))
    phase("calibrate", lambda: drain(engine.calibrate("minmax")))
    plan = Plan.preset(model.info, "W8A8")
    phase("first W8A8 evaluation", lambda: engine.evaluate(plan))
    names = [la.name for la in model.info.layers]
    changes = [
        plan.with_choices({n: LayerChoice.of(f"int{b} sym ch", "uint8 asym")})
        for n in names[:: max(1, len(names) // 8)][:8]
        for b in (4, 2)
    ]
    phase("16 re-evaluations", lambda: [engine.evaluate(p) for p in changes])
    swept = names if not quick else names[:: max(1, len(names) // 12)]
    phase(f"sweep {len(swept)} x {len(FORMATS)}", lambda: drain(engine.sweep(FORMATS, swept)))
    use = engine.memory_use()
    engine.close()
    return {"phases": rows, "memory_use": use}


def report_phases(label: str, r: dict) -> None:
    mb = 1 << 20
    print(f"\n   memory by phase, {label} (MiB above the interpreter and libraries)")
    print(f"   {'phase':24s} {'start':>6s} {'peak':>6s} {'end':>6s} {'traced':>6s} {'s':>6s}")
    for name, start, peak, end, traced, secs in r["phases"]:
        print(
            f"   {name:24s} {start / mb:6.0f} {peak / mb:6.0f} {end / mb:6.0f} "
            f"{traced / mb:6.0f} {secs:6.2f}"
        )
    use = r["memory_use"]
    print(
        f"   reference activations: budget {use['budget'] / mb:.0f} MiB, in memory "
        f"{use['in_memory'] / mb:.0f} MiB, spilled {use['spilled'] / mb:.0f} MiB"
    )


def memory_baseline(path: Path, dims: dict[str, int], label: str, samples: int) -> dict:
    """What the RSS row is measured against, without the timed rows (``--memory-only``)."""
    data = Dataset.random(load_model(path).info, n=samples, dims=dims, seed=1)
    return {
        "label": label,
        "size": path.stat().st_size,
        "per_feed": batch_activations(path, data.samples[data.evaluation[0]]),
        "samples": samples,
        "load": os.getloadavg()[0],
    }


def one_model(
    path: Path, dims: dict[str, int], label: str, quick: bool, samples: int, reeval: bool = False
) -> dict:
    """Every timed row for one model file (runs in its own process); ``reeval``: only the
    re-evaluation row (no sweep, no quantize_static route)."""
    size = path.stat().st_size
    data = Dataset.random(load_model(path).info, n=samples, dims=dims, seed=1)
    plain = plain_session(path)
    ev = data.evaluation

    def float_eval() -> None:
        for i in ev:
            plain.run(None, data.samples[i])

    def float_all() -> None:
        for s in data.samples:
            plain.run(None, s)

    float_eval()  # warm
    f_cpu: list[float] = []
    f_evals = [timed_cpu(float_eval, f_cpu) for _ in range(5)]
    f_all = statistics.median(timed(float_all) for _ in range(3))
    quiet = plain_session(path, spin=False)
    cpu_eval = lambda: [quiet.run(None, data.samples[i]) for i in ev]  # noqa: E731
    cpu_all = lambda: [quiet.run(None, s) for s in data.samples]  # noqa: E731
    cpu_eval()  # warm
    c_evals = [cpu_timed(cpu_eval) for _ in range(5)]
    c_alls = [cpu_timed(cpu_all) for _ in range(3)]
    # the baseline also measured between the re-evaluations, so that both see the same load
    work = engine_work(
        path,
        dims,
        samples,
        quick,
        lambda: f_evals.append(timed_cpu(float_eval, f_cpu)),
        sweep=not reeval,
    )
    c_evals += [cpu_timed(cpu_eval) for _ in range(5)]  # before and after, as the load moves
    c_alls += [cpu_timed(cpu_all) for _ in range(3)]
    model, targets, re_times = work["model"], work["targets"], work["re_times"]
    per_feed = batch_activations(path, data.samples[ev[0]])

    today = []
    if not quick and not reeval:
        weight = model.info.layer(targets[len(targets) // 2]).weights[0].name
        with tempfile.TemporaryDirectory() as tmp:
            for k in range(2):
                today.append(today_route(path, weight, data, Path(tmp) / f"q{k}.onnx"))
    return {
        "label": label,
        "size": size,
        "layers": work["layers"],
        "feeds": f"{len(data.calibration)} calibrate / {len(ev)} evaluate",
        "f_eval": statistics.median(f_evals),
        "f_all": f_all,
        "c_eval": statistics.median(c_evals),
        "c_all": statistics.median(c_alls),
        "re_median": statistics.median(re_times),
        "re_worst": max(re_times),
        "re_cpu": (statistics.median(work["re_cpu"]), max(work["re_cpu"])),
        "f_cpu": statistics.median(f_cpu),
        "today": statistics.median(today) if today else None,
        "open": work["open"],
        "open_cpu": work["open_cpu"],
        "sweep": work["sweep"],
        "sweep_cpu": work["sweep_cpu"],
        "sweep_layers": work["sweep_layers"],
        "reeval_only": reeval,
        "per_feed": per_feed,
        "samples": samples,
        "load": os.getloadavg()[0],
    }


def restart_peak() -> int:
    """Drop garbage, restart the peak-RSS count at the current RSS (Linux: clear_refs 5,
    https://docs.kernel.org/admin-guide/mm/soft-dirty.html) and return that RSS; where the
    count cannot restart, the peak so far (so the engine's share is not overstated)."""
    import gc

    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return peak_rss()
    return rss_now()


def _status_bytes(field: str) -> int | None:
    """A size from /proc/self/status (Linux), None where there is none."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss() -> int:
    """The process's peak RSS since the start or the last restart_peak()."""
    peak = _status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now() -> int:
    return _status_bytes("VmRSS") or 0


def external_model(path: Path) -> dict:
    """RSS of opening a model with external weights (and streaming each layer's weight
    statistics, as the table shows them), then of a first W8A8 evaluation."""
    weights = (path.parent / "weights.bin").stat().st_size
    start = rss_now()
    t0 = time.perf_counter()
    model = load_model(path)
    for layer in model.info.layers:
        for w in layer.weights:
            v = model.weight(w)
            float(v.min()), float(v.max()), float(np.abs(v).mean())
            del v
    open_s = time.perf_counter() - t0
    opened, opened_peak = rss_now(), peak_rss()
    data = Dataset.random(model.info, n=4, dims={"N": 4}, seed=1)
    t0 = time.perf_counter()
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    engine.evaluate(Plan.preset(model.info, "W8A8"))
    eval_s = time.perf_counter() - t0
    return {
        "external": True,
        "label": "generated MatMul stack with external data",
        "weights": weights,
        "start": start,
        "opened": opened,
        "opened_peak": opened_peak,
        "open_s": open_s,
        "eval_peak": peak_rss(),
        "eval_s": eval_s,
        "load": os.getloadavg()[0],
    }


def report_external(r: dict) -> None:
    mb, w = 1 << 20, r["weights"]
    print(
        f"\n== {r['label']}: {w / 1e9:.2f} GB of weights, load average {r['load']:.1f}\n"
        f"RSS after imports          : {r['start'] / mb:.0f} MiB\n"
        f"open + per-layer statistics: {r['opened'] / mb:.0f} MiB after, "
        f"{r['opened_peak'] / mb:.0f} MiB peak = {r['opened_peak'] / w:.2f}x the weights "
        f"({r['open_s']:.1f} s; target well under 1x)\n"
        f"calibrate + 1st W8A8 eval  : {r['eval_peak'] / mb:.0f} MiB peak = "
        f"{r['eval_peak'] / w:.2f}x the weights ({r['eval_s']:.1f} s)"
    )


def report(r: dict) -> None:
    if r.get("external"):
        report_external(r)
        return
    budget = 4 * r["size"] + 2 * r["per_feed"]
    if "f_eval" not in r:  # --memory-only
        print(f"\n== {r['label']}: {r['size'] / 1e6:.1f} MB, load average {r['load']:.1f}")
        report_rss(r, budget)
        return
    lf = r["sweep_layers"] * len(FORMATS) * r["f_eval"]
    print(
        f"\n== {r['label']}: {r['size'] / 1e6:.1f} MB, {r['layers']} layers, {r['feeds']} "
        f"feeds ({r['samples']} samples), load average {r['load']:.1f}"
    )
    print(
        "  baselines: "
        f"one float run of the evaluation feeds {1000 * r['f_eval']:.0f} ms, "
        f"of all feeds {1000 * r['f_all']:.0f} ms"
    )
    print(
        f"re-evaluate one layer      : median {r['re_median'] / r['f_eval']:5.2f}x, worst "
        f"{r['re_worst'] / r['f_eval']:5.2f}x one float run   (target <= 1.5x / 2.5x)"
    )
    if r.get("re_cpu"):
        med, worst = (t / r["f_cpu"] for t in r["re_cpu"])
        print(f"  in process CPU time       : median {med:5.2f}x, worst {worst:5.2f}x (same run)")
    if r.get("reeval_only"):
        return
    if r["today"]:
        print(
            f"  vs quantize_static route : {r['today'] / r['re_median']:5.1f}x faster "
            f"({1000 * r['re_median']:.0f} ms vs {1000 * r['today']:.0f} ms; target >= 7x)"
        )
    print(
        f"open + calibrate + 1st eval: {r['open'] / r['f_all']:5.2f}x one float run of all "
        f"feeds ({r['open']:.2f} s; target <= 5x)"
    )
    print(
        f"sweep {r['sweep_layers']} layers x {len(FORMATS)}     : {r['sweep'] / lf:5.2f}x of "
        f"L x F float runs ({r['sweep']:.1f} s; target <= 0.5x and < 60 s)"
    )
    lf_cpu = r["sweep_layers"] * len(FORMATS) * r["c_eval"]
    print(
        f"  in CPU time (all threads; baselines without spinning threads): open "
        f"{r['open_cpu'] / r['c_all']:5.2f}x ({1000 * r['open_cpu']:.0f} ms vs "
        f"{1000 * r['c_all']:.0f} ms), sweep {r['sweep_cpu'] / lf_cpu:5.2f}x "
        f"({r['sweep_cpu']:.1f} s vs {lf_cpu:.1f} s)"
    )
    report_rss(r, budget)


def report_rss(r: dict, budget: int) -> None:
    mb = 1 << 20
    engine_rss = r["rss"] - r["base_rss"]
    print(
        f"peak RSS                   : {r['rss'] / mb:.0f} MiB, of which the engine "
        f"{engine_rss / mb:.0f} MiB (above {r['base_rss'] / mb:.0f} MiB of interpreter and "
        f"libraries) = {engine_rss / budget:.2f}x of 4 x model + 2 x one feed's "
        f"float activations ({r['per_feed'] / mb:.0f} MiB; together {budget / mb:.0f} MiB; "
        "target <= 1x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "models", nargs="*", default=["crnn"], help="crnn, mlp100, external, depth or a path"
    )
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for a file's inputs")
    ap.add_argument("--quick", action="store_true", help="sweep 12 layers, skip quantize_static")
    ap.add_argument(
        "--reeval-only",
        action="store_true",
        help="only the re-evaluation row (no sweep, quantize_static route or memory child)",
    )
    ap.add_argument("--samples", type=int, default=SAMPLES, help="random samples (8)")
    ap.add_argument(
        "--overlap-ab",
        type=int,
        metavar="ROUNDS",
        help="only the open row, the engine's side thread on and off alternated in one "
        "process (Engine.overlap), ROUNDS opens each",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--memory-only", action="store_true", help="only the peak RSS row")
    ap.add_argument(
        "--memory-detail",
        action="store_true",
        help="also print RSS per phase (load, float reference, calibration, first W8A8 "
        "evaluation, re-evaluations, sweep), in a process of its own",
    )
    ap.add_argument(
        "--memory-budget",
        help="the memory budget the engine plans with (e.g. 512M; default: half the "
        "physical memory, the engine sizing its share from the data)",
    )
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    if args.memory_budget:
        os.environ[ENV_BUDGET] = args.memory_budget  # children inherit it
    if args.child:
        path, label = args.child.split("::", 1)
        if label == "external":
            print(json.dumps(external_model(Path(path))))
            return
        if args.memory:
            print(json.dumps(engine_memory(Path(path), dims, args.quick, args.samples)))
            return
        if args.memory_detail:
            print(json.dumps(memory_phases(Path(path), dims, args.quick, args.samples)))
            return
        if args.memory_only:
            print(json.dumps(memory_baseline(Path(path), dims, label, args.samples)))
            return
        if args.overlap_ab:
            print(json.dumps(overlap_ab(Path(path), dims, args.samples, args.overlap_ab)))
            return
        result = one_model(Path(path), dims, label, args.quick, args.samples, args.reeval_only)
        print(json.dumps(result))
        return
    print(
        f"memory budget: {format_bytes(memory_budget())} (--memory-budget or ${ENV_BUDGET}; "
        "the engine keeps a data-sized share of it, Engine._fit_budget)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        jobs: list[tuple[Path, str, list[str]]] = []
        for name in args.models:
            if name == "crnn":
                p = Path(tmp) / "crnn.onnx"
                onnx.save(crnn(), p)
                jobs.append((p, "generated CRNN-like recognizer", ["--dim", "N=1"]))
            elif name == "mlp100":
                p = Path(tmp) / "mlp100.onnx"
                onnx.save(mlp_stack(25, 1024), p)
                jobs.append((p, "generated 100 MB MatMul stack", ["--dim", "N=64"]))
            elif name == "external":
                jobs.append((write_external_mlp(Path(tmp)), "external", []))
            elif name == "depth":
                for depth in (10, 100, 200):
                    p = Path(tmp) / f"depth{depth}.onnx"
                    onnx.save(mlp_stack(depth, 256), p)
                    # 512 rows: 256 calibrate, 256 evaluate (the series)
                    extra = ["--samples", "512", "--quick"]
                    jobs.append((p, f"{depth} x 256-wide MatMul", extra))
            else:
                extra = [a for d in args.dim for a in ("--dim", d)]
                jobs.append((Path(name), name, [*extra, "--samples", str(args.samples)]))
        for path, label, extra in jobs:
            cmd = [sys.executable, __file__, "--child", f"{path}::{label}", *extra]
            if args.quick and "--quick" not in cmd:
                cmd.append("--quick")
            if args.memory_only:
                cmd.append("--memory-only")
            if args.reeval_only:
                cmd.append("--reeval-only")
            if args.overlap_ab:
                ab = [*cmd, "--overlap-ab", str(args.overlap_ab)]
                out = subprocess.run(ab, capture_output=True, text=True, env=os.environ.copy())
                if out.returncode:
                    print(f"{label}: failed\n{out.stderr[-3000:]}")
                else:
                    report_ab(label, json.loads(out.stdout.strip().splitlines()[-1]))
                continue
            results = []
            memory = label != "external" and not args.reeval_only
            for extra_args in ([], ["--memory"]) if memory else ([],):
                child = [*cmd, *extra_args]
                if extra_args:  # the memory child measures the whole engine work
                    child = [a for a in child if a != "--memory-only"]
                out = subprocess.run(child, capture_output=True, text=True, env=os.environ.copy())
                if out.returncode:
                    print(f"{label}: failed\n{out.stderr[-3000:]}")
                    break
                results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            else:
                report({k: v for r in results for k, v in r.items()})
                if args.memory_detail and label != "external":
                    detail = [a for a in cmd if a != "--memory-only"]
                    out = subprocess.run(
                        [*detail, "--memory-detail"], capture_output=True, text=True, env=os.environ
                    )
                    if out.returncode:
                        print(f"{label}: memory detail failed\n{out.stderr[-3000:]}")
                    else:
                        report_phases(label, json.loads(out.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
