"""Export builds through one index of the graph against the scans per lookup, in one process.

For each model: open, calibrate, then for each preset (W8A8, W4A8) ROUNDS rounds of
``accounting.predict`` (the in-memory export build the search makes for each plan's size)
with ``graph_index.INDEXED`` off and on, alternated (the order swapped every round), and the
medians of process CPU and wall: the ratio indexed / scanning is the figure, since both
paths run in the same minutes. The sizes must be the same (printed). Process CPU is the
figure to read on a loaded machine (docs/benchmarks.md, "exportscan (session 16)").

Run: ``PYTHONPATH=app python benchmarks/bench_export_index.py crnn /path/to/ppocrv4_rec.onnx
--dim '?=48' --dim p2o.DynamicDimension.1=320 --opens 8`` (``--opens``: rounds per preset).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_engine import drain
from bench_models import per_model
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import accounting, graph_index
from bitlens.core.export.exporter import preflight
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan

PRESETS = ("W8A8", "W4A8")


def report(label: str, path: Path, dims: dict[str, int], samples: int, rounds: int) -> None:
    model = load_model(path)
    engine = Engine(model, Dataset.random(model.info, n=samples, dims=dims, seed=1), device="cpu")
    drain(engine.calibrate("minmax"))
    print(f"\n== {label}: {len(model.graph_proto.graph.node)} nodes, {rounds} rounds a preset")
    print(f"   {'preset':8s} {'scanning CPU/wall ms':>22s} {'indexed CPU/wall ms':>22s} "
          f"{'CPU ratio':>9s} {'wall ratio':>10s} same sizes")  # fmt: skip
    try:
        for preset in PRESETS:
            plan = Plan.preset(model.info, preset)
            prepared = preflight(engine, plan)
            drain(accounting.predict(engine, plan, None, prepared))  # first-build measurements
            times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
            sizes = {}
            for r in range(rounds):
                for indexed in (False, True) if r % 2 == 0 else (True, False):
                    graph_index.INDEXED = indexed
                    w, c = time.perf_counter(), time.process_time()
                    size = drain(accounting.predict(engine, plan, None, prepared))
                    times[indexed].append((time.perf_counter() - w, time.process_time() - c))
                    sizes.setdefault(indexed, size)
            med = {
                k: (statistics.median(x[1] for x in v), statistics.median(x[0] for x in v))
                for k, v in times.items()
            }
            (sc, sw), (ic, iw) = med[False], med[True]
            print(f"   {preset:8s} {1000 * sc:10.0f} / {1000 * sw:9.0f} {1000 * ic:10.0f} / "
                  f"{1000 * iw:9.0f} {ic / sc:9.2f} {iw / sw:10.2f} "
                  f"{sizes[True] == sizes[False]}")  # fmt: skip
    finally:
        graph_index.INDEXED = True
        engine.close()
    print(f"   load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    per_model(__doc__.splitlines()[0], 16, "rounds per preset (3)", report)


if __name__ == "__main__":
    main()
