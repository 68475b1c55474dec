"""The one layer selection every view shares.

Views set it when the user selects something (passing themselves as the
origin, so they can ignore their own echo) and follow it when it changes.
``current`` is the layer the detail view shows: the last one clicked.
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QObject, Signal


class LayerSelection(QObject):
    changed = Signal(object)  # the origin of the change (a view), or None

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._names: tuple[str, ...] = ()
        self._current: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    @property
    def current(self) -> str | None:
        return self._current

    def set(
        self, names: Iterable[str], current: str | None = None, origin: object | None = None
    ) -> None:
        names = tuple(dict.fromkeys(names))
        if current is None or current not in names:
            current = names[-1] if names else None
        if names == self._names and current == self._current:
            return
        self._names, self._current = names, current
        self.changed.emit(origin)

    def clear(self, origin: object | None = None) -> None:
        self.set((), None, origin)

    def toggle(self, name: str, origin: object | None = None) -> None:
        """Add or remove one layer (a ctrl-click)."""
        if name in self._names:
            self.set((n for n in self._names if n != name), None, origin)
        else:
            self.set((*self._names, name), name, origin)
