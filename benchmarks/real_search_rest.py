"""Issue 13 on the non-vision real models: the search's plan at the size of the uniform W8A8
export against W8A8, measured on the exported files in plain ONNX Runtime.

Per model (the pinned wheels of tests/real/wheels.py, inputs built as tests/real builds
them, with each package's own preprocessing): W8A8 is exported with default options and
its file bytes are the budget of a search with default options (``--max-bytes``); the
searched plan is exported the same way. Both files and the float model then run in a
default ONNX Runtime session on the same evaluation feeds; the error is the relative L2
error of the float outputs against the float model's (root mean square over outputs, as
the search measures it). The row: W8A8 bytes and error, searched bytes and error, their
error ratio (below 1: the search wins), search time and evaluations; and whether the
front is monotone (bytes up, error strictly down). ``--repro`` runs each search twice with
the same seed and says whether the plans and fronts match.

Run: ``python benchmarks/bench_search.py --real-rest [MODEL ...] [--repro]``
(models: magika, wakeword-embedding, romanizer-encoder, romanizer-decoder, khmersm,
fsmn-vad, minilm-l3, ddddocr-crnn).
"""

from __future__ import annotations

import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bitlens.core.data import load_path
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import export
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, SearchResult, output_error, search
from bitlens.core.targets import DEFAULT_TARGET
from tests.real.test_real_models import CASES, model_path

REST = (
    "magika", "wakeword-embedding", "romanizer-encoder", "romanizer-decoder", "khmersm",
    "fsmn-vad", "minilm-l3", "ddddocr-crnn",
)  # fmt: skip
SAMPLES = 8  # 4 calibrate, 4 evaluate


def plain_outputs(path: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The float outputs of ``path`` in a default ONNX Runtime session, every feed's
    flattened and concatenated (feeds may differ in shape)."""
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in feeds:
        for n, v in zip(names, sess.run(None, feed), strict=True):
            got[n].append(np.asarray(v).ravel())
    return {n: np.concatenate(v) for n, v in got.items() if np.issubdtype(v[0].dtype, np.floating)}


def _export(engine: Engine, plan: Plan, path: Path) -> int:
    res = drain(export(engine, plan, path))
    data = Path(str(path) + ".data")  # external data, where the export writes it
    return res.file_bytes + (data.stat().st_size if data.exists() else 0)


def run_search(engine: Engine, limit: int, seed: int) -> tuple[SearchResult, float]:
    t = time.perf_counter()
    gen = search(engine, SearchOptions(Budget(max_bytes=limit), seed=seed))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result: SearchResult = stop.value
    return result, time.perf_counter() - t


def _monotone(result: SearchResult) -> bool:
    f = result.front
    return all(a.file_bytes < b.file_bytes and a.error > b.error for a, b in itertools.pairwise(f))


def bench_one(case_id: str, work: Path, repro: bool, seed: int = 0) -> str:
    case = next(c for c in CASES if c.id == case_id)
    src = model_path(case.wheel, case.filename)
    npz = work / f"{case_id}.npz"
    np.savez(npz, **case.feeds(SAMPLES))
    model = load_model(src)
    data = load_path(npz, model.info)
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    feeds = [data.samples[i] for i in data.evaluation]
    ref = plain_outputs(src, feeds)

    w8 = Plan.preset(model.info, "W8A8", target=DEFAULT_TARGET)
    w8_path = work / f"{case_id}.w8a8.onnx"
    w8_bytes = _export(engine, w8, w8_path)
    w8_err = output_error(ref, plain_outputs(w8_path, feeds))

    result, seconds = run_search(engine, w8_bytes, seed)
    s_path = work / f"{case_id}.searched.onnx"
    s_bytes = _export(engine, result.best.plan, s_path)
    s_err = output_error(ref, plain_outputs(s_path, feeds))
    ratio = s_err / w8_err if w8_err > 0 else (1.0 if s_err == 0 else float("inf"))
    row = (
        f"{case_id:<20} {w8_bytes:>10} {w8_err:>10.4g} {s_bytes:>10} {s_err:>10.4g} "
        f"{ratio:>7.3f} {seconds:>8.1f} {result.evaluations:>6}  "
        f"{'yes' if _monotone(result) else 'NO'}"
    )
    if repro:
        again, _ = run_search(engine, w8_bytes, seed)
        same = again.best.plan == result.best.plan and [
            (p.file_bytes, p.error) for p in again.front
        ] == [(p.file_bytes, p.error) for p in result.front]
        row += f"  {'yes' if same else 'NO'}"
    print(f"  {case_id}: {result.best.summary()}", file=sys.stderr)
    return row


def bench_real_rest(names: list[str], repro: bool = False) -> None:
    unknown = [n for n in names if n not in REST]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; choose from {', '.join(REST)}")
    print(f"non-vision real models, {SAMPLES} samples ({SAMPLES // 2} evaluated), default "
          "options, plain ONNX Runtime on the exported files")  # fmt: skip
    print(f"{'model':<20} {'W8A8 B':>10} {'W8A8 err':>10} {'search B':>10} {'search err':>10} "
          f"{'ratio':>7} {'time s':>8} {'evals':>6}  monotone" + ("  same seed, same plan"
          if repro else ""))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in names or REST:
            print(bench_one(name, Path(tmp), repro), flush=True)
