"""The search against uniform W8A8 at its exported size on one real model, as a user runs it.

``bitlens export --preset W8A8`` with default options gives the budget (its file's bytes);
``bitlens search --max-bytes`` that budget, default options, writes a plan; ``bitlens
export --plan`` writes it. Both exported files are then run in a plain ONNX Runtime session
(default options, CPU) next to the float model, on the evaluation feeds the search saw and
on held-out feeds it never saw; their output error is the figure the search minimizes
(relative L2, root mean square over outputs, as bitlens.core.search.output_error). The front
the search writes is checked monotone (bytes up, error strictly down) and, when asked, a
second search with the same seed must give the same plan and front.

Each command runs in its own process, so its memory is returned when it ends.
Shared by benchmarks/search_real.py (``bench_search.py --real``) and
tests/real/test_search_real.py.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bitlens.core import metrics
from bitlens.core.export.latency import median_latencies
from tests.cli_fork import run_bitlens
from tests.real import wheels

APP = Path(__file__).resolve().parents[2] / "app"
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
    search_seconds: float  # wall clock
    search_cpu: float  # CPU seconds, all threads
    evaluations: int
    front_points: int
    monotone: bool
    reproducible: bool | None  # None: not checked
    summary: str
    notes: tuple[str, ...] = ()  # what the search's result says about its choice
    # deployed time of the searched file and of W8A8's against the float model's, in default
    # sessions on the first evaluation sample, runs interleaved (_latencies): the medians'
    # ratios, then the fastest runs'
    latency: tuple[float, float, float, float] | None = None
    # W8A8's and the searched file's error on ``more_held`` further held-out samples, scored
    # as one set (NaN: none asked for): 4 held-out rows are few to judge a plan by
    w8a8_more: float = math.nan
    searched_more: float = math.nan

    @property
    def beats(self) -> bool:
        return self.searched_bytes <= self.w8a8_bytes and self.searched_error < self.w8a8_error

    @property
    def beats_held(self) -> bool | None:
        """The same on the held-out samples (None: none held out)."""
        if math.isnan(self.w8a8_held):
            return None
        return self.searched_bytes <= self.w8a8_bytes and self.searched_held < self.w8a8_held


def _cli(*args: str, timeout: float = 3600, fork: bool = False) -> subprocess.CompletedProcess[str]:
    """``python -m bitlens ARGS``; ``fork``: from tests/cli_fork.py's server (the same
    command in a child process, without a second of interpreter start-up each; its CPU is
    then not this process's child's)."""
    if fork:
        res = run_bitlens(*args, timeout=timeout)
    else:
        env = {**os.environ, "PYTHONPATH": str(APP)}
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


def _outputs(path: Path, samples: Sequence[Feeds]) -> list[dict[str, np.ndarray]]:
    """Each sample's outputs in a plain ONNX Runtime session (default options, CPU)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3  # exporters' unused initializers are warnings, not news
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return [
        {n: np.asarray(v, np.float64) if np.issubdtype(v.dtype, np.floating) else v
         for n, v in zip(names, sess.run(None, feeds), strict=True)}
        for feeds in samples
    ]  # fmt: skip


def _error(ref: Sequence[dict[str, np.ndarray]], got: Sequence[dict[str, np.ndarray]]) -> float:
    """output_error over the samples, each sample's outputs zero-padded to the float model's
    (metrics.zero_padded) before the sums: SLANet's Loop decodes as many steps as each
    table needs, so samples joined flat would be compared shifted. Equal to output_error
    of the joined outputs where every sample's shapes agree."""
    rel = []
    for name in ref[0]:
        sums = metrics.ErrorSums()
        for r, g in zip(ref, got, strict=True):
            sums.add(*metrics.zero_padded(r[name], g[name]))
        e = sums.result().rel_l2
        rel.append(e if math.isfinite(e) else 1e9)
    return math.sqrt(sum(r * r for r in rel) / len(rel))


def _errors(
    model: Path, files: Sequence[Path], sets: Sequence[Sequence[Feeds]]
) -> list[list[float]]:
    """Output error of each file against the float model, per sample set, in plain ORT
    (NaN for an empty set)."""
    refs = [_outputs(model, s) if s else [] for s in sets]
    return [
        [_error(r, _outputs(f, s)) if s else math.nan for r, s in zip(refs, sets, strict=True)]
        for f in files
    ]


def _counts(choices, key: str) -> str:
    """``3x int8 sym ch, 1x float``: how many layers take each format of ``key``."""
    counts: dict[str, int] = {}
    for choice in choices:
        f = choice.get(key) or "float"
        counts[f] = counts.get(f, 0) + 1
    return ", ".join(f"{n}x {f}" for f, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _latencies(model: Path, files: Sequence[Path], feed: Feeds) -> tuple[float, ...]:
    """Each file's median run over the float model's, then each one's fastest run over the
    float model's, runs interleaved in sessions of one thread (core/export/latency.py): on a
    busy 2-core machine default sessions (a thread per core, spinning) read W8A8's medians
    at 0.04x of vietcombank-captcha's float time, its fastest runs at 0.96x."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    sessions = [
        ort.InferenceSession(str(f), so, providers=["CPUExecutionProvider"])
        for f in (model, *files)
    ]
    times = median_latencies(sessions, feed, budget_s=3.0)
    return tuple(t.median_ms / times[0].median_ms for t in times[1:]) + tuple(
        t.min_ms / times[0].min_ms for t in times[1:]
    )


def _monotone(front: Sequence[dict]) -> bool:
    return all(
        a["file_bytes"] < b["file_bytes"] and a["error"] > b["error"] for a, b in pairwise(front)
    )


def _search(
    model: Path, data: Path, limit: int, work: Path, tag: str, timeout: float, fork: bool
) -> tuple[dict, tuple[float, float]]:
    plan, front = work / f"plan{tag}.json", work / f"front{tag}.json"
    t, cpu = time.perf_counter(), _child_cpu()
    res = _cli("search", str(model), "--data", str(data), "--max-bytes", str(limit),
               "-o", str(plan), "--front", str(front), "--json", timeout=timeout,
               fork=fork)  # fmt: skip
    seconds = (time.perf_counter() - t, math.nan if fork else _child_cpu() - cpu)
    if res.returncode != 0:
        raise RuntimeError(f"search failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout), seconds


def _child_cpu() -> float:
    """CPU seconds of the finished child processes (the wall clock of a shared machine
    says more about the others' work than about the search's)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def measure(
    case: RealCase,
    work: Path,
    repeat: bool = True,
    timeout: float = 3600,
    tests: bool = False,
    more_held: int = 0,
) -> Row:
    """Both exports and the search of ``case`` in ``work``; ``repeat`` searches twice with
    the same seed; ``timeout`` bounds each command. ``tests``: what the tests read, sooner:
    the commands run from the fork server (the search's CPU is then NaN) and the deployed
    files are not timed (seconds per file for the benchmark's latency figures).
    ``more_held``: that many further samples (the feed maker's next ones; the search never
    sees them) are scored as a third set."""
    model = wheels.model_files(case.wheel)[case.filename]
    samples = case.samples(case.calib + case.evaluate + case.held_out + more_held)
    seen = case.calib + case.evaluate
    more = samples[seen + case.held_out :]
    samples = samples[: seen + case.held_out]
    data = work / "data.npz"
    _save(samples[:seen], data)  # the first half calibrates (--calib-fraction 0.5)
    evaluation, held = samples[case.calib : seen], samples[seen:]
    w8a8 = work / "w8a8.onnx"
    res = _cli("export", str(model), "--preset", "W8A8", "--data", str(data), "-o", str(w8a8),
               "--json", timeout=timeout, fork=tests)  # fmt: skip
    if not w8a8.exists():
        raise RuntimeError(f"the W8A8 export failed: {res.stderr[-2000:]}")
    limit = w8a8.stat().st_size
    out, (seconds, cpu) = _search(model, data, limit, work, "", timeout, tests)
    front = out["front"]
    reproducible = None
    if repeat:
        again, _ = _search(model, data, limit, work, "2", timeout, tests)
        reproducible = (work / "plan.json").read_text() == (work / "plan2.json").read_text() and [
            (p["file_bytes"], p["error"]) for p in front
        ] == [(p["file_bytes"], p["error"]) for p in again["front"]]
    searched = work / "searched.onnx"
    res = _cli("export", str(model), "--plan", str(work / "plan.json"), "--data", str(data),
               "-o", str(searched), "--json", timeout=timeout, fork=tests)  # fmt: skip
    if not searched.exists():
        raise RuntimeError(f"export of the searched plan failed: {res.stderr[-2000:]}")
    (w8_eval, w8_held, w8_more), (s_eval, s_held, s_more) = _errors(
        model, [w8a8, searched], [evaluation, held, more]
    )
    timed = None if tests else _latencies(model, [searched, w8a8], evaluation[0])
    best = out["best"]
    summary = "; activations ".join(_counts(best["plan"]["layers"].values(), k)
                                    for k in ("weight", "activation"))  # fmt: skip
    return Row(
        case.id, limit, w8_eval, w8_held, searched.stat().st_size, s_eval, s_held, seconds, cpu,
        int(out["evaluations"]), len(front), _monotone(front), reproducible, summary,
        # the line on speed steering (SearchResult.steering) first, then the notes
        tuple(x for x in ((out.get("steering") or {}).get("text"),) if x)
        + tuple(out.get("notes", ())),
        None if timed is None else (timed[0], timed[1], timed[2], timed[3]), w8_more, s_more,
    )  # fmt: skip
