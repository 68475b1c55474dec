from __future__ import annotations

import gc
import os

# GUI tests must never need a display; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def pytest_collection_finish(session) -> None:
    """Once every test module is imported, move what is alive (modules, classes, functions,
    the collected items: all of it lives until the session ends) out of the cyclic garbage
    collector's reach. Each full collection then walks only what the tests made: the window
    tests collect after every test (tests/gui/conftest.py), and such a collection took 116 ms
    with the whole suite collected, 0.1 ms once frozen. Objects are still freed when their
    last reference goes, and the tests' own cycles are still collected.
    https://docs.python.org/3/library/gc.html#gc.freeze"""
    gc.collect()
    gc.freeze()
