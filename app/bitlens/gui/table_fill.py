"""Filling a QTableWidget whose columns size to their contents, resized once at the end.

With ``ResizeToContents`` sections, every ``setItem`` makes the header measure every cell
of the table again, so a loop over N cells costs N² size hints (0.5-0.9 s for the 32-row
weight sandbox, each hint waiting for the worker's hold on the GIL while a job runs).
Interactive sections during the fill, the old modes after: one measurement.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtWidgets import QHeaderView, QTableWidget


@contextmanager
def sized_once(table: QTableWidget) -> Iterator[None]:
    header = table.horizontalHeader()
    modes = [header.sectionResizeMode(i) for i in range(header.count())]
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    try:
        yield
    finally:
        for i, mode in enumerate(modes):
            header.setSectionResizeMode(i, mode)
