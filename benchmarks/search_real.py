"""The search against uniform W8A8 on real models: ``bench_search.py --real``.

For each model (a pinned PyPI wheel, tests/real/wheels.py; inputs made as the real-model
suite makes them, with the package's own preprocessing): ``bitlens export --preset W8A8``
with default options gives the budget (its file's bytes); ``bitlens search --max-bytes``
that budget, default options, writes a plan; ``bitlens export --plan`` writes it. Both
exported files are then run in a plain ONNX Runtime session (default options, CPU) next to
the float model, on the evaluation feeds the search saw and on held-out feeds it never
saw, and their output error (relative L2, root mean square over outputs: the figure the
search minimizes, bitlens.core.search.output_error) is printed with their file bytes.
Every figure comes from the exported files in one run, on the same feeds.

The front each search writes is checked monotone (bytes up, error strictly down), and a
second search with the same seed must give the same plan and front (reproducibility).

Each command runs in its own process (its memory is returned when it ends), as a user
runs it. Model lists: ``VISION`` (image models) and whatever other lists are added beside
it; each list is a tuple of ``RealCase``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bitlens.core.search import output_error  # noqa: E402
from bitlens.core.usermetric import concat  # noqa: E402
from tests.real import inputs, more_feeds, wheels  # noqa: E402

Feeds = dict[str, np.ndarray]


@dataclass(frozen=True)
class RealCase:
    id: str
    wheel: wheels.Wheel
    filename: str
    # n -> n samples, each a dict of input name -> array (batch 1 or a batch of its own)
    samples: Callable[[int], list[Feeds]]
    calib: int = 4  # samples that calibrate
    evaluate: int = 4  # samples the search evaluates plans on
    held_out: int = 4  # samples only the final comparison runs


@dataclass(frozen=True)
class Row:
    id: str
    w8a8_bytes: int
    w8a8_error: float  # on the search's evaluation samples
    w8a8_held: float  # on held-out samples
    searched_bytes: int
    searched_error: float
    searched_held: float
    search_seconds: float
    evaluations: int
    front_points: int
    monotone: bool
    reproducible: bool | None  # None: not checked
    summary: str

    @property
    def beats(self) -> bool:
        return self.searched_bytes <= self.w8a8_bytes and self.searched_error < self.w8a8_error


def _cli(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "app")}
    res = subprocess.run(
        [sys.executable, "-m", "bitlens", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip
    if res.returncode not in (0, 1):  # 1: an export whose fidelity check warns or fails
        raise RuntimeError(f"bitlens {args[0]} failed ({res.returncode}): {res.stderr[-2000:]}")
    return res


def _save(samples: Sequence[Feeds], path: Path) -> None:
    """Numbered feeds ``NAME/i`` (one per sample, any shapes) in one npz."""
    np.savez(path, **{f"{k}/{i}": v for i, s in enumerate(samples) for k, v in s.items()})


def _outputs(path: Path, samples: Sequence[Feeds]) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feeds in samples:
        for n, v in zip(names, sess.run(None, feeds), strict=True):
            got[n].append(np.asarray(v, np.float64) if np.issubdtype(v.dtype, np.floating) else v)
    return {n: concat(v) for n, v in got.items()}


def _errors(
    model: Path, files: Sequence[Path], sets: Sequence[Sequence[Feeds]]
) -> list[list[float]]:
    """Output error of each file against the float model, per sample set, in plain ORT."""
    refs = [_outputs(model, s) for s in sets]
    return [
        [output_error(r, _outputs(f, s)) for r, s in zip(refs, sets, strict=True)] for f in files
    ]


def _monotone(front: Sequence[dict]) -> bool:
    return all(
        a["file_bytes"] < b["file_bytes"] and a["error"] > b["error"] for a, b in pairwise(front)
    )


def _search(model: Path, data: Path, limit: int, work: Path, tag: str) -> tuple[dict, float]:
    plan, front = work / f"plan{tag}.json", work / f"front{tag}.json"
    t = time.perf_counter()
    res = _cli("search", str(model), "--data", str(data), "--max-bytes", str(limit),
               "-o", str(plan), "--front", str(front), "--json")  # fmt: skip
    seconds = time.perf_counter() - t
    if res.returncode != 0:
        raise RuntimeError(f"search failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout), seconds


def measure(case: RealCase, work: Path, repeat: bool = True) -> Row:
    model = wheels.model_files(case.wheel)[case.filename]
    samples = case.samples(case.calib + case.evaluate + case.held_out)
    seen = case.calib + case.evaluate
    data = work / "data.npz"
    _save(samples[:seen], data)  # the first half calibrates (--calib-fraction 0.5)
    evaluation, held = samples[case.calib : seen], samples[seen:]
    w8a8 = work / "w8a8.onnx"
    res = _cli("export", str(model), "--preset", "W8A8", "--data", str(data), "-o", str(w8a8),
               "--json")  # fmt: skip
    limit = w8a8.stat().st_size
    out, seconds = _search(model, data, limit, work, "")
    front = out["front"]
    reproducible = None
    if repeat:
        again, _ = _search(model, data, limit, work, "2")
        reproducible = (work / "plan.json").read_text() == (work / "plan2.json").read_text() and [
            (p["file_bytes"], p["error"]) for p in front
        ] == [(p["file_bytes"], p["error"]) for p in again["front"]]
    searched = work / "searched.onnx"
    res = _cli("export", str(model), "--plan", str(work / "plan.json"), "--data", str(data),
               "-o", str(searched), "--json")  # fmt: skip
    if not searched.exists():
        raise RuntimeError(f"export of the searched plan failed: {res.stderr[-2000:]}")
    (w8_eval, w8_held), (s_eval, s_held) = _errors(model, [w8a8, searched], [evaluation, held])
    best = out["best"]
    counts: dict[str, int] = {}
    for choice in best["plan"]["layers"].values():
        w = choice.get("weight") or "float"
        counts[w] = counts.get(w, 0) + 1
    summary = ", ".join(f"{n}x {w}" for w, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return Row(
        case.id, limit, w8_eval, w8_held, searched.stat().st_size, s_eval, s_held, seconds,
        int(out["evaluations"]), len(front), _monotone(front), reproducible, summary,
    )  # fmt: skip


def print_table(rows: Sequence[Row]) -> None:
    print("| model | W8A8 bytes | W8A8 error (eval / held-out) | searched bytes | searched error "
          "(eval / held-out) | bytes ratio | error ratio (eval) | search s | evaluations | "
          "front monotone | same with seed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        same = "-" if r.reproducible is None else ("yes" if r.reproducible else "NO")
        print(
            f"| {r.id} | {r.w8a8_bytes} | {r.w8a8_error:.4g} / {r.w8a8_held:.4g} | "
            f"{r.searched_bytes} | {r.searched_error:.4g} / {r.searched_held:.4g} | "
            f"{r.searched_bytes / r.w8a8_bytes:.4f} | {r.searched_error / r.w8a8_error:.3f} | "
            f"{r.search_seconds:.0f} | {r.evaluations} | "
            f"{'yes' if r.monotone else 'NO'} ({r.front_points} points) | {same} |"
        )
    for r in rows:
        print(f"  {r.id}: {'beats' if r.beats else 'DOES NOT BEAT'} W8A8 at its size; "
              f"weights {r.summary}")  # fmt: skip


def run_cases(cases: Sequence[RealCase], only: Sequence[str] = (), repeat: bool = True) -> None:
    rows = []
    for case in cases:
        if only and case.id not in only:
            continue
        with tempfile.TemporaryDirectory(prefix=f"bench-search-{case.id}-") as tmp:
            t = time.perf_counter()
            try:
                rows.append(measure(case, Path(tmp), repeat))
            except (RuntimeError, wheels.FetchError) as exc:
                print(f"{case.id}: {exc}", flush=True)
                continue
            print(f"{case.id}: done in {time.perf_counter() - t:.0f} s", flush=True)
    print_table(rows)


# -- the vision models --------------------------------------------------------------------


def _batch1(feeds: Feeds, n: int) -> list[Feeds]:
    return [{k: v[i : i + 1] for k, v in feeds.items()} for i in range(n)]


def _nsfw(n: int) -> list[Feeds]:
    # open_nsfw's Caffe preprocessing: BGR, minus the channel means; NHWC, 224x224.
    out = []
    for i in range(n):
        img = inputs.scene(224, seed=i)[..., ::-1].astype(np.float32)
        out.append({"input_0": (img - np.array([104.0, 117.0, 123.0], np.float32))[None]})
    return out


def _nudenet(n: int) -> list[Feeds]:
    return _batch1(more_feeds.nudenet(n), n)  # x/255, NCHW; dynamic sides: 160x160


def _ddddocr_det(n: int) -> list[Feeds]:
    # ddddocr's detector (ddddocr/__init__.py, detection): RGB 416x416, x/255, NCHW.
    return [
        {"images": (inputs.scene(416, seed=200 + i).transpose(2, 0, 1)[None] / 255.0)
         .astype(np.float32)}
        for i in range(n)
    ]  # fmt: skip


def _page(height: int, width: int, seed: int) -> np.ndarray:
    """A document crop: text lines on a light page, uint8 RGB ``[height, width, 3]``."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), int(rng.integers(200, 245)), np.uint8)
    y = int(rng.integers(4, 12))
    while y + 32 <= height:
        w = int(rng.integers(width // 2, width - 8))
        line = inputs.text_line_rgb(w, 28, seed=seed * 31 + y)
        x = int(rng.integers(2, width - w))
        page[y : y + 28, x : x + w] = line
        y += 28 + int(rng.integers(4, 16))
    return page


def _rapidocr_det(n: int) -> list[Feeds]:
    # rapidocr's text detector (ch_ppocr_det, DBNet): BGR, x/255, ImageNet mean/std, NCHW,
    # sides multiples of 32 (the model's sizes are dynamic: small pages keep it fast).
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    for i in range(n):
        img = _page(128, 160, seed=500 + i)[..., ::-1].astype(np.float32) / 255.0
        out.append({"x": ((img - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)})
    return out


def _rapidocr_cls(n: int) -> list[Feeds]:
    # rapidocr's direction classifier: RGB text line resized to 48x192, (x/255 - 0.5)/0.5.
    return [
        {"x": ((inputs.text_line_rgb(192, 48, seed=300 + i) / 255.0 - 0.5) / 0.5)
         .transpose(2, 0, 1)[None].astype(np.float32)}
        for i in range(n)
    ]  # fmt: skip


VISION: tuple[RealCase, ...] = (
    RealCase("rapidocr-cls", wheels.RAPIDOCR, "ch_ppocr_mobile_v2.0_cls_infer.onnx", _rapidocr_cls),
    RealCase("rapidocr-det", wheels.RAPIDOCR, "ch_PP-OCRv4_det_infer.onnx", _rapidocr_det),
    RealCase("nudenet-yolov8n", wheels.NUDENET, "320n.onnx", _nudenet),
    RealCase("ddddocr-det", wheels.DDDDOCR, "common_det.onnx", _ddddocr_det, 2, 2, 2),
    RealCase("open-nsfw-resnet50", wheels.OPEN_NSFW, "open_nsfw.onnx", _nsfw, 2, 2, 2),
)


def bench_vision(only: Sequence[str] = (), repeat: bool = True) -> None:
    """The search against W8A8 at its size on the vision models of the real suite."""
    run_cases(VISION, only, repeat)
