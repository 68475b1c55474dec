"""What an engine step asks of ONNX Runtime and numpy, each piece timed again alone.

:class:`Recorder` wraps, for the steps run inside it, the calls whose work the engine's
design cannot skip: every session build (``session.make_session``, wherever the engine
imported it), every run (``Runs._run``: a chain of parts counts as one run), the float
reference's min and max of its values (``reference.extremes``), every comparison of a value
with its float reference (``metrics.SampleErrors.add`` and ``metrics.ErrorSums.add``: the
layer outputs and the local errors) and the output errors (``OutputMetrics._output_results``).
Right before each call it is made twice alone, once the process's threads are idle
(``settle``), and the cheaper one's wall and process CPU (every thread: ONNX Runtime's
intra-op threads count) are its floor: the same session, fetch list and feeds, a fresh sum
on the same arrays, the same model and options. The engine to record must do its work in
turn on the calling thread (``Engine.overlap = False``, ``run_workers = 1``), so that
nothing else runs while a piece is timed alone. ``bench_floors.py`` sums the pieces.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass

from bench_engine import settle
from bitlens.core import metrics
from bitlens.core.engine import arena_release, output_metrics, prefix, reference, rewrite, session
from bitlens.core.engine.kernel_bias import KernelBiases
from bitlens.core.engine.running import Runs
from bitlens.core.engine.store import ActivationStore
from bitlens.core.engine.structure import FLOAT_KEY, Structures

# Work outside the pieces that the engine's design does not name in a floor, timed where the
# step does it (not again alone): (owner, attribute, label). Each is counted only outside a
# piece and outside another of these.
NAMED = (
    (ActivationStore, "put", "reference values kept (spilled ones written)"),
    (ActivationStore, "get", "reference values read (spilled ones mapped)"),
    (prefix.PrefixValues, "put", "quantized values kept at cuts"),
    (Structures, "_sim_for", "simulation graphs built (Python)"),
    (rewrite, "build_local", "local graphs built (Python)"),
    (KernelBiases, "_plan_feeds", "the plan's feeds (weights quantized)"),
    (reference, "release_arena", "the arena given back"),
    (arena_release, "release_arena", "the arena given back"),
)


@dataclass
class Piece:
    """One recorded call: what it was (``role``), its wall and process CPU seconds inside
    the step, and its wall and process CPU seconds when made again alone."""

    role: str
    step_wall: float
    step_cpu: float
    wall: float
    cpu: float
    build: bool = False
    cold_cpu: float = 0.0


def alone(fn, wait=settle) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``fn()`` once the process's threads are idle
    (``wait()``)."""
    wait()
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


class Recorder:
    """Context manager: the wrapped calls' :class:`Piece` go to ``pieces`` (take them
    per step with :meth:`take`). ``samples``: the data's feeds, to tell a float run of a
    whole feed (the reference's) from one of part of a feed (row_cap's first unit)."""

    def __init__(self, wait=settle) -> None:
        """``wait()`` before each call made alone: ``settle`` (a test's model needs none)."""
        self.wait = wait
        self.pieces: list[Piece] = []
        # wall and CPU seconds of the calls made alone (and the waits before them), so that
        # a recorded step's own figures are its total less these
        self.spent = (0.0, 0.0)
        self.named: dict[str, list[float]] = {}  # label -> [calls, wall, process CPU]
        self.samples: tuple = ()
        self._roles: dict[int, str] = {}
        self._keep: list = []  # the sessions, so that their ids stay theirs
        self._inside = threading.local()
        self._saved: list[tuple[object, str, object]] = []

    def take(self) -> tuple[list[Piece], dict[str, list[float]]]:
        """The pieces and the NAMED work recorded since the last call."""
        out, self.pieces = self.pieces, []
        named, self.named = self.named, {}
        return out, named

    def _observed(self, label: str, original):
        def call(*args, **kwargs):
            if getattr(self._inside, "depth", 0):
                return original(*args, **kwargs)
            self._inside.depth = 1
            w, c = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self._inside.depth = 0
                row = self.named.setdefault(label, [0, 0.0, 0.0])
                row[0] += 1
                row[1] += time.perf_counter() - w
                row[2] += time.process_time() - c

        return call

    # -- the wrappers ---------------------------------------------------------------------
    def _timed(self, role: str, call, again, build: bool = False) -> object:
        """``again()`` twice alone, then ``call()`` timed (all three skipped inside another
        wrapped call: its figure holds this one). Alone before the call, not after it: the
        call's outputs, held by the engine, would make a run made again alone map and fault
        in new buffers. The piece's floor is the cheaper of the two in CPU (the second: the
        arena's buffers and the caches warm), its ``cold_cpu`` the first."""
        if getattr(self._inside, "depth", 0):
            return call()
        self._inside.depth = 1
        try:
            w0, c0 = time.perf_counter(), time.process_time()
            cold = alone(again, self.wait)
            warm = alone(again, self.wait)
            w, c = time.perf_counter(), time.process_time()
            self.spent = (self.spent[0] + w - w0, self.spent[1] + c - c0)
            out = call()
            step = (time.perf_counter() - w, time.process_time() - c)
        finally:
            self._inside.depth = 0
        wall, cpu = min(cold, warm, key=lambda x: x[1])
        self.pieces.append(Piece(role, *step, wall, cpu, build, cold[1]))
        return out

    def _make_session(self, original):
        def make(model, *args, **kwargs):
            role = _session_role(sys._getframe(1))
            sess = self._timed(role, lambda: original(model, *args, **kwargs),
                               lambda: original(model, *args, **kwargs), build=True)  # fmt: skip
            self._roles[id(sess)] = role
            self._keep.append(sess)
            return sess

        return make

    def _run(self, original):
        def run(sess, fetch, feeds):
            role = self._roles.get(id(sess), "a session built before recording")
            if role == "float session" and not self._whole_feed(feeds):
                role = "float session, part of a feed"
            role = f"run: {role}"
            return self._timed(role, lambda: original(sess, fetch, feeds),
                               lambda: original(sess, fetch, feeds))  # fmt: skip

        return staticmethod(run)

    def _whole_feed(self, feeds) -> bool:
        return any(
            feeds.get(k) is v for sample in self.samples for k, v in sample.items()
        )  # fmt: skip

    def _numpy(self, role: str, original, fresh):
        def add(obj, *args):
            return self._timed(role, lambda: original(obj, *args),
                               lambda: original(fresh(), *args))  # fmt: skip

        return add

    def _stacked(self, original):
        # small outputs of one row length are measured a stack at a time (metrics.add_stacked,
        # "depthrows, session 16"): the same measuring, for new sums each time alone
        def add_stacked(items, rows):
            return self._timed("measuring (layer outputs)", lambda: original(items, rows),
                               lambda: original([(metrics.SampleErrors(), r, g)
                                                 for _, r, g in items], rows))  # fmt: skip

        return add_stacked

    def _extremes(self, original):
        def extremes(values, pool):
            return self._timed("min and max of the reference's values",
                               lambda: original(values, pool), lambda: original(values, pool))  # fmt: skip

        return extremes

    def _outputs(self, original):
        def results(engine, ref, got, feeds):
            # the first evaluation computes the reference's scores (kept after): so does each
            # time alone, and the call finds them kept
            fresh = getattr(engine, "_scores_of", None) is not ref

            def again():
                if fresh:
                    engine._scores_of = None
                return original(engine, ref, got, feeds)

            return self._timed("output errors", lambda: original(engine, ref, got, feeds), again)

        return results

    # -- patching -------------------------------------------------------------------------
    def _patch(self, owner, name: str, new) -> None:
        self._saved.append((owner, name, owner.__dict__[name] if isinstance(owner, type)
                            else getattr(owner, name)))  # fmt: skip
        setattr(owner, name, new)

    def __enter__(self) -> Recorder:
        made = session.make_session
        wrapped = self._make_session(made)
        for mod in list(sys.modules.values()):
            name = getattr(mod, "__name__", "")
            if name.startswith("bitlens.core") and getattr(mod, "make_session", None) is made:
                self._patch(mod, "make_session", wrapped)
        self._patch(Runs, "_run", self._run(Runs.__dict__["_run"].__func__))
        self._patch(reference, "extremes", self._extremes(reference.extremes))
        self._patch(metrics.SampleErrors, "add", self._numpy(
            "measuring (layer outputs)", metrics.SampleErrors.add, metrics.SampleErrors))  # fmt: skip
        self._patch(metrics, "add_stacked", self._stacked(metrics.add_stacked))
        self._patch(metrics.ErrorSums, "add", self._numpy(
            "local and weight errors (ErrorSums)", metrics.ErrorSums.add, metrics.ErrorSums))  # fmt: skip
        om = output_metrics.OutputMetrics
        self._patch(om, "_output_results", self._outputs(om._output_results))
        for owner, name, label in NAMED:
            self._patch(owner, name, self._observed(label, getattr(owner, name)))
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, old in reversed(self._saved):
            setattr(owner, name, old)
        self._saved.clear()


def _session_role(frame) -> str:
    """What a session is for, from the engine's frames that asked for it."""
    names: list[str] = []
    while frame is not None and len(names) < 16:
        code = frame.f_code
        names.append(code.co_name)
        if code.co_name == "_session_for":
            key = frame.f_locals.get("key")
            return "float session" if key == FLOAT_KEY else "W8A8 simulation session"
        if code.co_name in ("_local_session", "_bulk_local_session"):
            return "local errors session"
        if code.co_name == "_measure_later":
            return "float session, ranges measured later"
        frame = frame.f_back
    engine_frames = [n for n in names[1:] if not n.startswith("<")]
    return f"other session ({engine_frames[0] if engine_frames else '?'})"
