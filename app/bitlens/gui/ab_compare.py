"""Plan A/B: a pinned plan (A) and the current one (B), compared once per evaluation.

Pinning keeps the current plan and its evaluation as A. Each later
evaluation of the current plan (B) is compared with it in the core
(:func:`bitlens.core.compare.compare_evaluations`) and the
:class:`~bitlens.core.compare.PlanComparison` is handed to every view as a
value: the table's Δ columns, the plots' A series, the status bar's A → B
line, the report. Opening another model or other data unpins (A's numbers
were measured on something else).

Better and worse are told apart by a colour-blind-safe pair (blue and
orange, Okabe & Ito, https://jfly.uni-koeln.de/color/) and by ▲/▼ marks, so
no reader depends on the colour alone.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QWidget

from bitlens.core.compare import PlanComparison, compare_evaluations, verdict
from bitlens.core.plan import Plan
from bitlens.core.results import Evaluation
from bitlens.gui.text import fmt_bytes, fmt_db, fmt_percent

if TYPE_CHECKING:
    from bitlens.gui.document import Document

BETTER = QColor("#cfe6f7")  # light blue cell behind a better value (ink stays black)
WORSE = QColor("#fbdcb4")  # light orange behind a worse one
BETTER_INK = QColor("#0060a0")
WORSE_INK = QColor("#b34700")
A_SERIES = QColor("#cc79a7")  # plan A's bars (Okabe-Ito reddish purple: not on the error scale)
MARK = {"better": "▲", "worse": "▼", "same": "="}


def signed_db(d: float | None) -> str:
    """``+3.2 dB ▲`` / ``−5.1 dB ▼`` / ``= 0.0 dB``; empty when unknown."""
    v = verdict(d)
    if not v or d is None:
        return ""
    text = ("+∞" if d > 0 else "−∞") if math.isinf(d) else f"{d:+.1f}".replace("-", "−")
    return f"{text} dB {MARK[v]}"


def signed_bytes(d: int | None) -> str:
    if d is None:
        return ""
    v = verdict(float(d), higher_is_better=False, tol=0.0)
    sign = "+" if d > 0 else "−" if d < 0 else "±"
    return f"{sign}{fmt_bytes(abs(d))} {MARK[v]}"


def verdict_color(v: str) -> QColor | None:
    return {"better": BETTER, "worse": WORSE}.get(v)


class ABCompare(QObject):
    """The pinned plan A of one document and its comparison with the current plan."""

    changed = Signal()  # pinned, unpinned, or a new comparison

    def __init__(self, document: Document):
        super().__init__(document)
        self._doc = document
        self.plan_a: Plan | None = None
        self.evaluation_a: Evaluation | None = None
        self.comparison: PlanComparison | None = None
        document.evaluationChanged.connect(self._update)
        document.modelChanged.connect(self.unpin)

    @property
    def pinned(self) -> bool:
        return self.plan_a is not None

    def can_pin(self) -> bool:
        doc = self._doc
        return doc.plan is not None and doc.evaluation_current and not doc.evaluation_failed

    def pin(self) -> bool:
        """Keep the current plan and its evaluation as A; False while it is not evaluated."""
        doc = self._doc
        if not self.can_pin():
            return False
        self.plan_a, self.evaluation_a = doc.plan, doc.evaluation
        self._update()
        return True

    def unpin(self) -> None:
        if self.plan_a is None and self.comparison is None:
            return
        self.plan_a = self.evaluation_a = None
        self.comparison = None
        self.changed.emit()

    def _update(self) -> None:
        doc = self._doc
        if self.plan_a is None or self.evaluation_a is None:
            return
        if doc.evaluation_current and doc.plan is not None and doc.evaluation is not None:
            self.comparison = compare_evaluations(
                self.plan_a, self.evaluation_a, doc.plan, doc.evaluation
            )
        self.changed.emit()


class ABStatusLabel(QLabel):
    """The status bar's A → B line: the first output's SQNR and the weight bytes."""

    def __init__(self, ab: ABCompare, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("statusAB")
        self._ab = ab
        ab.changed.connect(self._show)
        self._show()

    def _show(self) -> None:
        c = self._ab.comparison
        if not self._ab.pinned or c is None:
            self.setVisible(self._ab.pinned)
            self.setText("A pinned" if self._ab.pinned else "")
            self.setToolTip("")
            return
        # short, for a 1280 px status bar: the marks say which way; the tooltip has the rest
        parts = []
        # the first output either plan changes, as the status bar's output line: MiniLM's
        # output 0 passes integer ids through and read "exact→exact =" for any plans
        changed = [o for o in c.outputs if not (_exact(o.sqnr_a) and _exact(o.sqnr_b))]
        for o in (changed or list(c.outputs))[:1]:
            mark = MARK.get(verdict(o.delta_db), "")
            parts.append(f"{fmt_db(o.sqnr_a)}→{fmt_db(o.sqnr_b)} {mark}".strip())
        mark = MARK[verdict(float(c.delta_bytes), higher_is_better=False, tol=0.0)]
        parts.append(f"{fmt_bytes(c.bytes_a)}→{fmt_bytes(c.bytes_b)} {mark}")
        self.setText("A→B " + " · ".join(parts))
        tip = [f"Plan B (current) against the pinned plan A: {len(c.changed)} of "
               f"{len(c.layers)} layers differ"]  # fmt: skip
        tip += [f"output {o.name}: SQNR A {fmt_db(o.sqnr_a)}, B {fmt_db(o.sqnr_b)} "
                f"({signed_db(o.delta_db)})" for o in c.outputs]  # fmt: skip
        tip.append(f"weights: A {fmt_bytes(c.bytes_a)}, B {fmt_bytes(c.bytes_b)} "
                   f"({signed_bytes(c.delta_bytes)})")  # fmt: skip
        tip += [f"{k}: A {fmt_percent(a)}, B {fmt_percent(b)}" for k, (a, b) in c.metrics.items()]
        tip.append("▲ better, ▼ worse (Compare ▸ Unpin A to stop comparing)")
        self.setToolTip("\n".join(tip))
        self.setVisible(True)


def _exact(sqnr: float | None) -> bool:
    return sqnr is not None and math.isinf(sqnr) and sqnr > 0
