"""The views' deferred work, one piece per event-loop pass, each piece's repaint on its own.

A model's opening hands the window several pieces of view work at once: the table's and the
panes' repaint, the selected layer's detail (its histograms rebuilt) and the graph (393
items on rapidocr's PP-OCRv4 recognizer). Each piece also posts a repaint, which Qt runs on
the next pass of the event loop (pyqtgraph's scene posts its changes as a queued call). Run
by separate zero timers, a piece fell in the pass that painted the previous one's changes:
on PP-OCRv4 rec the detail's drawing with the window's repaint (62-89 ms of the window's
thread in one pass), the graph's build with the detail's plots' first paint (54-96 ms), so
that load or a wait for the interpreter lock on top made 100-150 ms stalls (issue 11;
docs/benchmarks.md "uiviews (session 16)").

Here the pieces wait in one queue, served by one zero timer that alternates: a pass that
runs the next piece, then a pass that runs nothing of ours (the repaints posted so far run
in it), then the next piece. A piece posted again before it ran keeps its place and runs
once. A zero timer, not ``QTimer.singleShot(0, ...)``: that is a queued call, run in the same
pass over posted events as the handler that made it. A zero timer started by a handler
still fired in the handler's own pass in some runs (seen on PP-OCRv4 rec, opening over an
open model), though never twice in one pass: so the first piece after the queue fills waits
two turns, and a cancelled piece's rest counts for none that comes later.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QTimer


class ViewPasses(QObject):
    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._queue: list[Callable[[], None]] = []
        # Turns to wait before the next piece: what posted the first piece (a model's
        # change, a result's handler) has its own repaint to run first, and the first turn
        # may fall in the poster's own pass; after a piece, one turn for its repaint.
        self._rests = 2
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._turn)

    def post(self, piece: Callable[[], None]) -> None:
        """Run ``piece`` on a later pass, after the repaints posted before it."""
        if not self._queue:
            self._rests = 2  # a rest taken for a piece since cancelled counts for none
        if piece not in self._queue:  # bound methods compare equal per object and function
            self._queue.append(piece)
        if not self._timer.isActive():
            self._timer.start()

    def cancel(self, piece: Callable[[], None]) -> None:
        """``piece`` no longer runs (its work was done or is no longer wanted)."""
        if piece in self._queue:
            self._queue.remove(piece)

    def is_queued(self, piece: Callable[[], None]) -> bool:
        return piece in self._queue

    @property
    def pending(self) -> bool:
        """Some piece is still to run."""
        return bool(self._queue)

    def _turn(self) -> None:
        if not self._queue:
            return
        if self._rests > 0:
            self._rests -= 1
            self._timer.start()
            return
        self._rests = 1
        piece = self._queue.pop(0)
        # restarted before the piece runs: a piece that posts work (or fails) leaves the
        # queue served, and the turn after it is the rest
        self._timer.start()
        piece()
