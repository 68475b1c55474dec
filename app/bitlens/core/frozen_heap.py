"""Python's cyclic garbage collector kept off the objects a long job finds alive.

A full (generation-2) collection walks every object the collector tracks and holds the
interpreter lock all along, so any other thread that wants the lock (the window's) waits for
it. With rapidocr's PP-OCRv4 recognizer open in the window, the search's thread ran 7 of them
in a 30 s Find Plan, 55-75 ms of CPU each: 110,000-130,000 objects, most of them the imported
modules' functions, descriptors and dicts, which never become garbage
(docs/benchmarks.md "uisearch (session 15)"). ``gc.freeze`` moves every tracked object to
a permanent generation that no collection walks
(https://docs.python.org/3/library/gc.html#gc.freeze): the job's collections then walk only
what the job made. When the job ends they go back (``gc.unfreeze``, to the oldest
generation), so cyclic garbage among them is collected as before. Where the heap is frozen
already (by whoever froze it: tests/conftest.py does) it is left as it is.

The search and the checked export freeze it themselves (the CLI runs them too); the window's
runner runs every job through ``frozen_while_called`` (gui/runner.py), the sweep and the layer
detail included.
"""

from __future__ import annotations

import functools
import gc
import inspect
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

Y = TypeVar("Y")
R = TypeVar("R")


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects alive on entry kept out of every collection until the block exits."""
    froze = gc.get_freeze_count() == 0
    if froze:
        gc.freeze()
    try:
        yield
    finally:
        if froze:
            gc.unfreeze()


def frozen_during(gen: Generator[Y, None, R]) -> Generator[Y, None, R]:
    """``gen``, the objects alive when it starts kept out of every collection until it ends
    (returns, raises, or is closed)."""
    with frozen_heap():
        return (yield from gen)


def frozen_while_called(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` (a function, or a generator function: kept one) run with the objects alive when
    a call starts kept out of every collection until it ends."""
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def gen(*args: Any, **kwargs: Any) -> Any:
            return (yield from frozen_during(func(*args, **kwargs)))

        return gen

    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        with frozen_heap():
            return func(*args, **kwargs)

    return call
