"""Where a first W8A8 evaluation's local errors go (issue 11), each part against one plain
float ONNX Runtime run of the evaluation feeds measured in the same process.

On an engine that has calibrated and evaluated W8A8 once, repeated and alternated with the
baseline: the engine's own local errors of every quantized layer (cache cleared, so the
bulk graph of engine/localerrors.py is built, run and measured as in a first evaluation),
and the same work in parts: the bulk local graph, its session, its runs over the
evaluation feeds, the error sums of its outputs. For scale, the runs of the engine's float
graph (weights fed as inputs) and of the W8A8 simulation graph over the same feeds, each
fetching what the engine fetches. Baseline and parts run on sessions whose threads do not
spin, so CPU time (every thread of the process) is their work; on a loaded machine CPU
ratios wander far less than wall ratios. The parts' sums must equal the engine's (checked).

Run: ``PYTHONPATH=app python benchmarks/bench_local_errors.py crnn
/path/to/common.onnx --dim image_width=128`` (models as bench_engine.py's; ``--repeat N``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import SAMPLES, drain, plain_session
from bench_models import crnn_or_files
from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, rewrite
from bitlens.core.engine.session import make_session
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan


def timed(fn) -> tuple[float, float]:
    """(CPU seconds of the whole process, wall seconds) of ``fn()``."""
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def one_model(path: Path, dims: dict[str, int], label: str, repeat: int) -> None:
    model = load_model(path)
    data = Dataset.random(model.info, n=SAMPLES, dims=dims, seed=1)
    ev = data.evaluation
    quiet = plain_session(path, spin=False)
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    plan = Plan.preset(model.info, "W8A8")
    engine.evaluate(plan)
    ref = engine._ensure_ref()
    structure = engine._structure_of(plan)
    _, sim = engine._sim_for(*structure)
    _, w8a8 = engine._session_for(*structure)
    _, float_sess = engine._session_for({})
    feeds = engine._plan_feeds(plan, engine.placement(plan))
    weights = engine._float_weights()
    layer_out = sim.layer_outputs
    names = [n for n in plan.choices if n in layer_out]
    kinds = engine._kinds(plan)
    fetch = [rewrite.local_output(layer_out[n]) for n in names]
    sim_fetch = list(dict.fromkeys([*engine._output_names, *layer_out.values()]))
    parts: dict[str, object] = {}

    def graph() -> None:
        parts["proto"] = rewrite.build_local(
            model.graph_proto, model.info, {n: kinds.get(n) for n in names}, ref.types,
            engine._constant, names,
        )  # fmt: skip

    def session() -> None:
        parts["session"] = make_session(parts["proto"], "cpu")

    def runs() -> None:
        sess = parts["session"]
        reads = [i.name for i in sess.get_inputs() if i.name in ref]
        parts["outputs"] = dict(
            engine._runs(sess, fetch, lambda i: {**feeds, **{k: ref[k][i] for k in reads}}, ev)
        )

    def sums() -> None:
        out = {n: metrics.ErrorSums() for n in names}
        for i in ev:
            for n, value in zip(names, parts["outputs"][i], strict=True):
                out[n].add(ref[layer_out[n]][i], value)
        parts["sums"] = {n: s.result() for n, s in out.items()}

    def local_errors() -> None:
        engine._local.clear()
        parts["engine"] = engine._local_errors(plan, layer_out, feeds)

    rows: dict[str, object] = {
        "float file, evaluation feeds": lambda: [quiet.run(None, data.samples[i]) for i in ev],
        "engine's local errors": local_errors,
        "  local graph": graph,
        "  its session": session,
        "  its runs": runs,
        "  error sums": sums,
        "engine float graph's runs": lambda: [
            engine._run(float_sess, sim_fetch, {**data.samples[i], **weights}) for i in ev
        ],
        "W8A8 simulation's runs": lambda: [
            engine._run(w8a8, sim_fetch, {**data.samples[i], **feeds}) for i in ev
        ],
    }
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in rows}
    for r in range(repeat):
        order = list(rows) if r % 2 == 0 else list(rows)[::-1]
        order = [k for k in order if not k.startswith("  ")]
        for k in order:
            if k == "engine's local errors":  # the parts in their order, next to the whole
                for part in [p for p in rows if p.startswith("  ")]:
                    times[part].append(timed(rows[part]))
            times[k].append(timed(rows[k]))
        parts.pop("outputs", None)
    if parts["sums"] != parts["engine"]:
        raise SystemExit(f"{label}: the parts' local errors differ from the engine's")
    base_cpu = statistics.median(c for c, _ in times["float file, evaluation feeds"])
    base_wall = statistics.median(w for _, w in times["float file, evaluation feeds"])
    print(
        f"{label}: {len(names)} quantized layers, {len(ev)} evaluation feed(s); "
        f"load average {os.getloadavg()[0]:.1f}; medians of {repeat}"
    )
    for k, v in times.items():
        cpu = statistics.median(c for c, _ in v)
        wall = statistics.median(w for _, w in v)
        print(
            f"  {k:32s} CPU {1000 * cpu:6.1f} ms {cpu / base_cpu:5.2f}x   "
            f"wall {1000 * wall:6.1f} ms {wall / base_wall:5.2f}x"
        )
    engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", default=["crnn"], help="crnn or a path")
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for a file's inputs")
    ap.add_argument("--repeat", type=int, default=8, help="alternated repeats (8)")
    args = ap.parse_args()
    dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
    with tempfile.TemporaryDirectory() as tmp:
        for path, sizes, label in crnn_or_files(args.models, Path(tmp), dims):
            one_model(path, sizes, label, args.repeat)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
