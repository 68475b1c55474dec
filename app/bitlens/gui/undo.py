"""Plan edits as undoable commands: each holds the plan before and after."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QUndoCommand

from bitlens.core.plan import Plan


class PlanEdit(QUndoCommand):
    """Replace the plan. Plans are immutable, so undo is restoring the old object."""

    def __init__(self, apply: Callable[[Plan], None], before: Plan, after: Plan, text: str):
        super().__init__(text)
        self._apply = apply
        self.before = before
        self.after = after

    def redo(self) -> None:
        self._apply(self.after)

    def undo(self) -> None:
        self._apply(self.before)
