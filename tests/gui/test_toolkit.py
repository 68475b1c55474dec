"""The Qt binding this suite runs on keeps reference counts straight.

PySide6 6.12.0 loses a reference to ``True`` on every ``Signal.emit()``
made from Python; on Python 3.11 the interpreter then aborts after a few
hundred signals ("deallocating True or False"). The window emits that many
in seconds, so a broken binding must fail here, by name, rather than as a
random crash in some other test.
"""

from __future__ import annotations

import sys

import PySide6
from PySide6.QtCore import QObject, Signal


class _Emitter(QObject):
    ping = Signal()
    value = Signal(object)


def test_signal_emit_keeps_singleton_refcounts(qapp) -> None:
    if sys.version_info >= (3, 12):
        return  # True and None are immortal: a lost reference cannot free them
    e = _Emitter()
    e.value.connect(lambda _v: None)
    t0, n0 = sys.getrefcount(True), sys.getrefcount(None)
    for _ in range(50):
        e.ping.emit()
        e.value.emit(None)
    lost_true = t0 - sys.getrefcount(True)
    lost_none = n0 - sys.getrefcount(None)
    assert lost_true <= 0 and lost_none <= 0, (
        f"PySide6 {PySide6.__version__} leaks references of True ({lost_true}) / None "
        f"({lost_none}) per signal emit; the app would abort. Use PySide6-Essentials<6.12."
    )
