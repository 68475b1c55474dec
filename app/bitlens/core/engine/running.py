"""Running a session over the data feeds, for every part of the engine.

Errors from ONNX Runtime become one-line EngineErrors; runs over several feeds go
RUN_WORKERS at a time in models with a sequential part, where ORT leaves a core idle (an
LSTM over time) and its sessions run thread-safely; elsewhere one at a time, since ORT
spreads each node over the cores already, except a plan's runs with small outputs (a deep
stack of small layers: AHEAD_FETCH_BYTES).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import numpy as np

from bitlens.core.engine.session_run import input_names, run_session
from bitlens.core.errors import EngineError

T = TypeVar("T")

RUN_WORKERS = 2  # concurrent runs over the feeds in prepare and evaluate (see Runs._runs)
# Where runs go one at a time (run_workers 1), a run whose outputs come to at most this
# many bytes still has the next run go while the caller reads them. Small runs leave a core
# idle too: on a 200 x 256-wide MatMul stack with feeds of 32 rows, ORT ran a feed's 200
# small MatMuls at a parallelism of about 1.5, and the caller's measuring of the 200 layer
# outputs between runs (a third of a re-evaluation) left both of ORT's threads asleep.
# What it costs is a second feed's outputs and buffers, under this bound; only a plan's
# runs go so (Runs._runs' ``ahead``): the float reference's, ahead too, grew its arena for
# good (+20 MiB after the reference of that stack, its peak RSS row 0.91x -> 1.03x)
# (docs/benchmarks.md, "depthrows, session 16").
AHEAD_FETCH_BYTES = 16 << 20
# Operators that run step by step, where one run leaves a core idle.
SEQUENTIAL_OPS = frozenset({"LSTM", "GRU", "RNN", "Loop", "Scan"})


def run_workers(op_types: Iterable[str]) -> int:
    """Runs in flight over the feeds for a model of these operators: RUN_WORKERS with a
    sequential one, else one. A second run in flight holds a second feed's activations:
    on ddddocr's detector (83 convs, 4 evaluation feeds) peak RSS 391 -> 272 MiB with one,
    in the same wall time (`bitlens eval` 3.5-4.3 s with two, 3.4-3.8 s with one, same
    machine, alternated); on its LSTM recognizer two at a time stay faster (1.1-1.5 s
    against 1.5-2.0 s) for 2% more memory."""
    return RUN_WORKERS if SEQUENTIAL_OPS.intersection(op_types) else 1


class Runs:
    """Mixin: ``_run`` (one run, errors translated) and ``_runs`` (runs over feeds)."""

    _executor: ThreadPoolExecutor | None
    _side_executor: ThreadPoolExecutor | None
    run_workers: int = RUN_WORKERS  # runs in flight (run_workers(); never above RUN_WORKERS)
    # Build sessions and compute weight errors on a side thread while the main thread
    # quantizes or runs (see _aside); False: each in turn where it is needed (for tests).
    overlap: bool = True
    # Small runs with the next one in flight (AHEAD_FETCH_BYTES); False: one at a time
    # where run_workers is 1 (the straightforward way, for tests).
    small_runs_ahead: bool = True

    @staticmethod
    def _run(sess, fetch: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        wanted = input_names(sess)[0]  # read once per session
        try:
            return run_session(sess, fetch, {k: v for k, v in feeds.items() if k in wanted})
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"ONNX Runtime failed to run the model: {first}") from exc

    def _runs(
        self,
        sess,
        fetch: Sequence[str],
        feeds_of: Callable[[int], Mapping[str, np.ndarray]],
        indices: Sequence[int],
        *,
        ahead: bool = False,
    ) -> Iterator[tuple[int, list[np.ndarray]]]:
        """``(i, outputs)`` of ``sess`` on ``feeds_of(i)`` for each index, in order,
        ``run_workers`` runs at a time: ORT leaves a core idle in sequential parts (an LSTM
        over time), and at most that many feeds' outputs are in memory at once (the one the
        caller holds and those of runs in flight). ``ahead`` (a plan's runs, whose layer
        outputs the caller measures): with one worker, a run whose outputs came to at most
        AHEAD_FETCH_BYTES has the next run go while the caller reads them."""
        workers = min(self.run_workers, RUN_WORKERS)
        if len(indices) <= 1:
            for i in indices:
                yield i, self._run(sess, fetch, feeds_of(i))
            return
        window: deque = deque()
        todo = iter(indices)
        if workers <= 1 and not ahead:
            for i in todo:
                yield i, self._run(sess, fetch, feeds_of(i))
            return
        if workers <= 1:
            first = next(todo)
            out = self._run(sess, fetch, feeds_of(first))
            if not (
                self.small_runs_ahead and RUN_WORKERS > 1 and _nbytes(out) <= AHEAD_FETCH_BYTES
            ):
                yield first, out
                del out
                for i in todo:
                    yield i, self._run(sess, fetch, feeds_of(i))
                return
            done: Future = Future()
            done.set_result(out)
            del out
            window.append((first, done))
            workers = RUN_WORKERS
        pool = self._pool()
        # A sliding window, not lockstep pairs: while the caller measures one feed's
        # outputs the next run goes, and a new run starts as soon as the caller is done
        # with one (pairs left the cores idle while the second of each pair was measured:
        # on 256 one-row feeds a third of a re-evaluation was waiting).
        for i in todo:
            window.append((i, pool.submit(self._run, sess, fetch, feeds_of(i))))
            if len(window) == workers:
                break
        while window:
            i, fut = window.popleft()
            out = fut.result()
            del fut  # the future would keep the outputs alive past the caller's use
            yield i, out
            del out
            nxt = next(todo, None)
            if nxt is not None:
                window.append((nxt, pool.submit(self._run, sess, fetch, feeds_of(nxt))))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(RUN_WORKERS, thread_name_prefix="bitlens-run")
        return self._executor

    def _aside(self, fn: Callable[[], T]) -> Future[T] | None:
        """``fn()`` started on the side thread (one, jobs in the order given), None when
        ``overlap`` is off (the caller then does the work where it needs it). For work the
        main thread does not need at once, started before what it does meanwhile: ONNX
        Runtime leaves the interpreter lock while it builds a session or runs, numpy in its
        array loops, so on two cores a session build beside the weights' quantization, or
        the local graph's build and the weight errors beside the plan's runs, take a core
        that one thread in turn left idle (a first W8A8 evaluation of ddddocr's
        common.onnx: docs/benchmarks.md, "Open: the first evaluation's work overlapped")."""
        if not self.overlap:
            return None
        if self._side_executor is None:
            self._side_executor = ThreadPoolExecutor(1, thread_name_prefix="bitlens-side")
        # A job holding the engine (a bound method) must not outlive its use: a cancelled one
        # (the caller did it itself, see _local_errors_done) stays queued until the worker
        # reaches it, and the worker keeps a job until after its result is set; either held
        # an engine dropped right after an evaluation (test_recovery's dropped engine, 1 in
        # 5 runs). The callable is let go when it returns or is cancelled.
        box = [fn]
        done = self._side_executor.submit(lambda: box.pop()())
        done.add_done_callback(lambda _: box.clear())
        return done


def _nbytes(values: Sequence[object]) -> int:
    """Bytes of a run's outputs (a sequence or map output counts as none: it is small)."""
    return sum(int(getattr(v, "nbytes", 0)) for v in values)
