"""One lane of engine work off the UI thread.

The engine is not thread-safe, so jobs run one at a time, in superqt
workers on Qt's thread pool. Jobs carry a ``key``: a new job replaces a
queued one with the same key (ten quick plan edits cause one evaluation,
not ten), and stops a running generator job with that key between two
yields. A plain-function job cannot be interrupted; its result is dropped
instead when a newer job with the same key was submitted meanwhile. A
generator job that ``steps_aside`` (the layer detail's sandbox: seconds of
k-means on a large embedding) stops between two yields when any other job is
submitted, and starts again after it, so a plan edit is evaluated at once.

Cancel stops the running job (generators only, between yields) and drops
the queued cancellable ones. :meth:`shutdown` quits everything and waits
for the threads, so closing the window never leaves a worker running.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import GeneratorWorker, WorkerBase, create_worker

from bitlens.core.frozen_heap import frozen_while_called
from bitlens.core.results import Progress
from bitlens.gui.progress_thinning import thinned
from bitlens.gui.thread_priority import lowered


class ClosingGeneratorWorker(GeneratorWorker):
    """A generator worker that closes its generator when it stops, in its own thread.

    superqt's ``GeneratorWorker.work`` leaves an aborted generator suspended at its last
    yield (https://github.com/pyapp-kit/superqt, ``utils/_qthreading.py``), so a job's
    ``finally`` (removing an export's staging file, releasing a session) ran only when
    the garbage collector got to it: after the job reported cancelled, in any thread.
    """

    def work(self) -> Any:
        try:
            return super().work()
        finally:
            self._gen.close()


@dataclass
class Job:
    key: str  # jobs with the same key supersede each other
    label: str  # what the status bar says while it runs
    func: Callable[..., Any]  # a function, or a generator function yielding Progress
    args: tuple[Any, ...] = ()
    on_result: Callable[[Any], None] | None = None
    on_yield: Callable[[Any], None] | None = None  # non-Progress values a generator yields
    on_error: Callable[[BaseException], None] | None = None  # default: the runner's `failed`
    cancellable: bool = True
    quiet: bool = False  # quick background work: a busy indicator, no progress bar
    steps_aside: bool = False  # a generator that stops for any other job, then starts again
    serial: int = field(default=0, compare=False)


class EngineRunner(QObject):
    busyChanged = Signal(bool)
    started = Signal(object)  # the Job
    progressed = Signal(object, object)  # the Job, its Progress
    finished = Signal(object)  # the Job, after its result or error was handled
    cancelled = Signal(object)  # the Job the user cancelled
    failed = Signal(str, object)  # job label, exception

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._queue: list[Job] = []
        self._running: Job | None = None
        self._worker: WorkerBase | None = None
        self._latest: dict[str, int] = {}  # key -> serial of the newest job submitted
        self._serials = itertools.count(1)
        self._cancelled: set[int] = set()
        self._closed = False
        self._was_busy = False

    # -- state ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._running is not None or bool(self._queue)

    @property
    def running(self) -> Job | None:
        return self._running

    def pending(self) -> list[Job]:
        return list(self._queue)

    # -- submitting and stopping ----------------------------------------------------------
    def submit(self, job: Job) -> Job:
        if self._closed:
            return job
        job.serial = next(self._serials)
        self._latest[job.key] = job.serial
        self._queue = [j for j in self._queue if j.key != job.key]
        self._queue.append(job)
        running = self._running
        if running is not None and isinstance(self._worker, GeneratorWorker):
            if running.key == job.key:
                self._worker.quit()
            elif running.steps_aside and not job.steps_aside:
                self._set_aside(running)
        self._start_next()
        return job

    def _set_aside(self, running: Job) -> None:
        """Stop ``running`` between two yields and queue it again behind what is queued."""
        self._worker.quit()
        if self._current() is not running or any(j.key == running.key for j in self._queue):
            return  # discarded, cancelled, or a newer request with its key is queued already
        again = replace(running, serial=next(self._serials))
        self._latest[again.key] = again.serial  # the stopped run's late yields are ignored
        self._queue.append(again)

    def discard(self, key: str) -> None:
        """Forget jobs with ``key``: drop queued ones, ignore (and stop) the running one."""
        self._latest[key] = next(self._serials)
        self._queue = [j for j in self._queue if j.key != key]
        running = self._running
        if running is not None and running.key == key and isinstance(self._worker, GeneratorWorker):
            self._worker.quit()
        self._sync_busy()

    def cancel(self) -> None:
        """Stop the running job if it can stop, and drop queued cancellable jobs."""
        dropped = [j for j in self._queue if j.cancellable]
        self._queue = [j for j in self._queue if not j.cancellable]
        for j in dropped:
            self.cancelled.emit(j)
        job = self._running
        if job is not None and job.cancellable and isinstance(self._worker, GeneratorWorker):
            self._cancelled.add(job.serial)
            self._worker.quit()
        self._sync_busy()

    def shutdown(self, msecs: int = -1) -> bool:
        """Drop the queue, stop the running job and wait for the thread pool."""
        self._closed = True
        self._queue.clear()
        if self._worker is not None:
            self._worker.quit()
        done = QThreadPool.globalInstance().waitForDone(msecs)
        if done:  # the worker's queued "finished" will never be handled: forget it now
            self._running = None
            self._worker = None
        self._sync_busy()
        return done

    # -- running ------------------------------------------------------------------------------
    def _start_next(self) -> None:
        if self._running is not None or self._closed or not self._queue:
            self._sync_busy()
            return
        job = self._queue.pop(0)
        self._running = job
        generator = inspect.isgeneratorfunction(job.func)
        # a generator's progress reports thinned out: each one the window handles waits for
        # the interpreter lock from the job (gui/progress_thinning.py); every job runs with
        # the heap it finds kept out of the garbage collector (core/frozen_heap.py: a full
        # collection walks the window's whole heap holding the lock)
        worker = create_worker(
            lowered(frozen_while_called(thinned(job.func) if generator else job.func)),
            *job.args,
            _start_thread=False,
            _ignore_errors=True,
            _worker_class=ClosingGeneratorWorker if generator else None,
        )
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        if generator:
            worker.yielded.connect(self._on_yielded)
        self._worker = worker
        self._sync_busy()
        self.started.emit(job)
        worker.start()

    def _sync_busy(self) -> None:
        busy = self.busy
        if busy != self._was_busy:
            self._was_busy = busy
            self.busyChanged.emit(busy)

    def _current(self) -> Job | None:
        """The running job if its outcome still matters (not superseded, not cancelled)."""
        job = self._running
        if job is None or self._closed:
            return None
        if self._latest.get(job.key) != job.serial or job.serial in self._cancelled:
            return None
        return job

    def _on_yielded(self, value: object) -> None:
        job = self._current()
        if job is None:
            return
        if isinstance(value, Progress):
            self.progressed.emit(job, value)
        elif job.on_yield is not None:
            job.on_yield(value)

    def _on_returned(self, value: object) -> None:
        job = self._current()
        if job is not None and job.on_result is not None:
            job.on_result(value)

    def _on_errored(self, exc: BaseException) -> None:
        job = self._current()
        if job is None:
            return
        if job.on_error is not None:
            job.on_error(exc)
        else:
            self.failed.emit(job.label, exc)

    def _on_finished(self) -> None:
        job = self._running
        self._running = None
        self._worker = None
        if job is None or self._closed:
            return
        if job.serial in self._cancelled:
            self._cancelled.discard(job.serial)
            self.cancelled.emit(job)
        self.finished.emit(job)
        self._start_next()
