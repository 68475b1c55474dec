"""Event-loop gaps of a Qt window, each told apart: the UI thread's own work or starvation.

A 5 ms QTimer ticks on the UI thread; a gap is the time between two ticks. For each gap the
tick reads, on the UI thread itself, its CPU time (``time.thread_time``) and, on Linux, its
scheduler statistics (``/proc/self/task/TID/schedstat``: time on a CPU, time runnable but
waiting for one). "ran" is the UI thread's own work; "CPU wait" is time the machine gave to
other processes or threads; the rest the thread slept: waiting for the GIL while a worker
holds it (a C call that keeps it: onnx's shape inference held it 103 ms on PP-OCRv4 rec's
graph, ``SerializeToString`` 25 ms, while an ONNX Runtime session build let a probe thread
run within 13 ms; or a worker preempted by the OS holds it until it runs again) or idle
between ticks.

A watchdog thread looks every 10 ms and, while a gap is longer than 50 ms, samples the UI
thread's Python stack (``sys._current_frames``): its innermost frame and this repository's
frame that led there say what the window was doing. The watchdog needs the GIL to look:
when it wakes more than 25 ms late the GIL (or a CPU) was held by another thread, which the
gap's record counts as "watchdog late" milliseconds, with where the other threads were. A
gap spent in Qt's C++ (painting, layout) shows the Python frame that entered Qt
(``processEvents``) or the Python slot Qt called back.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

LONG_S = 0.100  # issue 11's target: no event-loop stall longer than this
SAMPLE_AFTER_S = 0.050  # the watchdog samples the UI thread's stack in gaps longer than this
WATCH_PERIOD_S = 0.010
LATE_S = 0.025  # a watchdog wake-up this late: another thread held the GIL or the CPUs
OWN = str(Path(__file__).resolve().parents[1])  # frames of the repository (app/, benchmarks/)


def schedstat() -> tuple[float, float] | None:
    """The calling thread's (seconds on a CPU, seconds waiting for one); None off Linux."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as f:
            ran, waited = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    return int(ran) / 1e9, int(waited) / 1e9


@dataclass
class Gap:
    phase: str
    seconds: float
    ran: float  # the UI thread's CPU time in the gap
    waited: float | None  # runnable but not on a CPU (Linux only)
    process_cpu: float  # every thread's CPU time in the gap (the workers' and ORT's)
    late: float  # watchdog wake-ups delayed past LATE_S, summed
    samples: Counter[str] = field(default_factory=Counter)  # UI thread's stack -> count
    # where the other Python threads were when the watchdog woke late: the GIL's holder
    # drops it at the next bytecode after the long C call, so this names that call
    holders: Counter[str] = field(default_factory=Counter)
    # with trace_callbacks: the Python callbacks Qt made in the gap, UI thread CPU each
    callbacks: list[tuple[float, str]] = field(default_factory=list)
    gc_pauses: list[tuple[float, int]] = field(default_factory=list)  # UI thread's (s, gen)
    job: str = ""  # the runner's job when the gap ended

    @property
    def slept(self) -> float:
        return max(self.seconds - self.ran - (self.waited or 0.0), 0.0)

    @property
    def kind(self) -> str:
        """What the gap mostly was: the UI thread's work, waiting for a CPU, or asleep."""
        parts = {
            "UI work": self.ran,
            "starved of CPU": self.waited or 0.0,
            "GIL/asleep": self.slept,
        }
        return max(parts, key=parts.__getitem__)

    def describe(self) -> str:
        line = (
            f"  {1000 * self.seconds:5.0f} ms {self.kind:14s}: UI thread ran {1000 * self.ran:.0f}"
        )
        if self.waited is not None:
            line += f", waited {1000 * self.waited:.0f} for a CPU"
        line += (
            f", slept {1000 * self.slept:.0f}; process CPU {1000 * self.process_cpu:.0f} ms,"
            f" watchdog late {1000 * self.late:.0f} ms; job {self.job!r}"
        )
        for where, n in self.samples.most_common(3):
            line += f"\n      {n:3d} x UI thread at {where}"
        for where, n in self.holders.most_common(2):
            line += f"\n      {n:3d} x watchdog late, {where}"
        if self.gc_pauses:
            paused = 1000 * sum(p for p, _ in self.gc_pauses)
            gens = sorted({g for _, g in self.gc_pauses})
            line += (
                f"\n      garbage collection on the UI thread {paused:.0f} ms (generations {gens})"
            )
        if self.callbacks:
            top = sorted(self.callbacks, reverse=True)[:4]
            shown = ", ".join(f"{name} {1000 * cpu:.0f}" for cpu, name in top)
            line += (
                f"\n      callbacks {1000 * sum(c for c, _ in self.callbacks):.0f} ms of the UI"
                f" thread's CPU in {len(self.callbacks)} calls (the rest Qt's C++): {shown}"
            )
        return line


def _where(frame) -> str:
    """The innermost frame on the stack and, when it is not this repository's, the innermost
    of this repository's frames that led to it. A thread inside the bench's own
    ``processEvents`` call is in Qt's C++ (layout, painting, event dispatch) with no Python
    frame of its own."""
    inner = frame
    while frame is not None and not frame.f_code.co_filename.startswith(OWN):
        frame = frame.f_back
    first = _name(inner)
    if frame is None or frame is inner:
        if inner.f_code.co_name == "run_until_idle":
            return "Qt's C++ (no Python frame): " + first
        return first
    return f"{first} < {_name(frame)}"


def _idle(frame) -> bool:
    """A pool thread waiting for work (``concurrent.futures`` or ``threading``)."""
    return Path(frame.f_code.co_filename).name in ("thread.py", "threading.py")


def _name(frame) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} {frame.f_code.co_name}"


class StallWatch:
    """Records every event-loop gap longer than SAMPLE_AFTER_S, with its split and samples.

    Call :meth:`tick` from a QTimer on the UI thread; :meth:`start` and :meth:`stop` the
    watchdog; set :attr:`phase` to name what runs.
    """

    def __init__(self, job_label=lambda: "") -> None:
        self.gaps: list[Gap] = []
        self.phase = "idle"
        self._job_label = job_label
        self._ui = threading.get_ident()
        self._lock = threading.Lock()
        self._samples: Counter[str] = Counter()
        self._holders: Counter[str] = Counter()
        self._late = 0.0
        self.longest: dict[str, float] = {}  # phase -> its longest gap, however short
        self._callbacks: list[tuple[float, str]] = []
        self._gc: list[tuple[float, int]] = []
        self._gc_start = 0.0
        self.gc_total: Counter[str] = Counter()  # thread name -> seconds of collections
        gc.callbacks.append(self._on_gc)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self.restart()

    def restart(self) -> None:
        """Start a fresh gap now (a phase begins: time before it is not its gap)."""
        self._last = time.perf_counter()
        self._thread_cpu = time.thread_time()
        self._process_cpu = time.process_time()
        self._sched = schedstat()
        with self._lock:
            self._samples, self._holders = Counter(), Counter()
            self._late = 0.0

    def tick(self) -> None:
        now, cpu, proc, st = (
            time.perf_counter(),
            time.thread_time(),
            time.process_time(),
            schedstat(),
        )
        gap = now - self._last
        with self._lock:
            samples, holders, late = self._samples, self._holders, self._late
            self._samples, self._holders, self._late = Counter(), Counter(), 0.0
        self.longest[self.phase] = max(self.longest.get(self.phase, 0.0), gap)
        if gap > SAMPLE_AFTER_S:
            waited = None if st is None or self._sched is None else st[1] - self._sched[1]
            self.gaps.append(
                Gap(self.phase, gap, cpu - self._thread_cpu, waited, proc - self._process_cpu,
                    late, samples, holders, self._callbacks, self._gc, self._job_label())
            )  # fmt: skip
        self._callbacks, self._gc = [], []
        self._last, self._thread_cpu, self._process_cpu, self._sched = now, cpu, proc, st

    def _on_gc(self, phase: str, info: dict) -> None:
        """Python's cyclic garbage collector pauses the thread that triggered it."""
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_start
        self.gc_total[threading.current_thread().name] += took
        if threading.get_ident() == self._ui:
            self._gc.append((took, info["generation"]))

    def trace_callbacks(self, entry: str) -> None:
        """Time every Python call Qt makes from inside the function named ``entry`` (the
        loop turning ``processEvents``) on this, the UI thread: slots, event handlers,
        ``data()``. A profile hook on every call: it slows the UI thread's Python."""
        started: dict[int, float] = {}

        def hook(frame, event, _arg) -> None:
            if event not in ("call", "return"):
                return
            back = frame.f_back
            if back is None or back.f_code.co_name != entry:
                return
            if event == "call":
                started[id(frame)] = time.thread_time()
            elif (t0 := started.pop(id(frame), None)) is not None and frame.f_code is not (
                self.tick.__func__.__code__
            ):
                self._callbacks.append((time.thread_time() - t0, frame.f_code.co_qualname))

        sys.setprofile(hook)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        gc.callbacks.remove(self._on_gc)
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        woke = time.perf_counter()
        while not self._stop.wait(WATCH_PERIOD_S):
            now = time.perf_counter()
            late = now - woke - WATCH_PERIOD_S
            woke = now
            in_gap = now - self._last > SAMPLE_AFTER_S
            if not in_gap and late <= LATE_S:
                continue
            frames = sys._current_frames()
            me = threading.get_ident()
            where = _where(frames[self._ui]) if in_gap and self._ui in frames else None
            names = {t.ident: t.name for t in threading.enumerate()}
            others = [
                f"{names.get(ident, 'thread')} at {_where(f)}"
                for ident, f in frames.items()
                if ident not in (self._ui, me) and not _idle(f)
            ] if in_gap and late > LATE_S else []  # fmt: skip
            del frames
            with self._lock:
                if late > LATE_S:
                    self._late += late
                if where is not None:
                    self._samples[where] += 1
                for other in others:
                    self._holders[other] += 1

    def report(self, phases: list[str], show: int = 4) -> list[str]:
        """Per phase: the longest gap, how many passed LONG_S, and the longest ``show``."""
        lines = []
        for phase in phases:
            gaps = sorted((g for g in self.gaps if g.phase == phase), key=lambda g: -g.seconds)
            longest = 1000 * self.longest.get(phase, 0.0)
            long = [g for g in gaps if g.seconds > LONG_S]
            kinds = Counter(g.kind for g in long)
            lines.append(
                f"{phase:24s}: longest event-loop gap {longest:4.0f} ms (target <= "
                f"{1000 * LONG_S:.0f} ms), {len(long)} over it"
                + (f" ({', '.join(f'{n} {k}' for k, n in kinds.most_common())})" if long else "")
            )
            if gaps:
                lines.append(
                    f"  in all {len(gaps)} gaps over {1000 * SAMPLE_AFTER_S:.0f} ms,"
                    f" {1000 * sum(g.seconds for g in gaps):.0f} ms: the UI thread ran"
                    f" {1000 * sum(g.ran for g in gaps):.0f}, waited"
                    f" {1000 * sum(g.waited or 0.0 for g in gaps):.0f} for a CPU, slept"
                    f" {1000 * sum(g.slept for g in gaps):.0f}"
                )
            lines += [g.describe() for g in gaps[:show] if g.seconds > SAMPLE_AFTER_S]
        return lines
