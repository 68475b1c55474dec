"""Running a session over the data feeds, for every part of the engine.

Errors from ONNX Runtime become one-line EngineErrors; runs over several feeds go
RUN_WORKERS at a time, because ORT leaves a core idle in the sequential parts of a
model (an LSTM over time) and its sessions run thread-safely.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from bitlens.core.errors import EngineError

RUN_WORKERS = 2  # concurrent runs over the feeds in prepare and evaluate (see Runs._runs)


class Runs:
    """Mixin: ``_run`` (one run, errors translated) and ``_runs`` (runs over feeds)."""

    _executor: ThreadPoolExecutor | None

    @staticmethod
    def _run(sess, fetch: Sequence[str], feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        wanted = {i.name for i in sess.get_inputs()}
        try:
            return sess.run(list(fetch), {k: v for k, v in feeds.items() if k in wanted})
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EngineError(f"ONNX Runtime failed to run the model: {first}") from exc

    def _runs(
        self,
        sess,
        fetch: Sequence[str],
        feeds_of: Callable[[int], Mapping[str, np.ndarray]],
        indices: Sequence[int],
    ) -> Iterator[tuple[int, list[np.ndarray]]]:
        """``(i, outputs)`` of ``sess`` on ``feeds_of(i)`` for each index, in order, RUN_WORKERS
        runs at a time: ORT leaves a core idle in sequential parts (an LSTM over time), and at
        most RUN_WORKERS feeds' outputs are in memory at once (the one the caller holds and
        those of runs in flight)."""
        if RUN_WORKERS <= 1 or len(indices) <= 1:
            for i in indices:
                yield i, self._run(sess, fetch, feeds_of(i))
            return
        pool = self._pool()
        # A sliding window, not lockstep pairs: while the caller measures one feed's
        # outputs the next run goes, and a new run starts as soon as the caller is done
        # with one (pairs left the cores idle while the second of each pair was measured:
        # on 256 one-row feeds a third of a re-evaluation was waiting).
        ahead: deque = deque()
        todo = iter(indices)
        for i in todo:
            ahead.append((i, pool.submit(self._run, sess, fetch, feeds_of(i))))
            if len(ahead) == RUN_WORKERS:
                break
        while ahead:
            i, fut = ahead.popleft()
            out = fut.result()
            del fut  # the future would keep the outputs alive past the caller's use
            yield i, out
            del out
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append((nxt, pool.submit(self._run, sess, fetch, feeds_of(nxt))))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(RUN_WORKERS, thread_name_prefix="bitlens-run")
        return self._executor
