"""At a budget of exactly the W8A8 export's size, the last choice compares with W8A8 itself
even where the accounting put W8A8 a little over when the presets were drawn
(core/search/deployed.py: uniform_candidates reads the real size where it is known or near).

vietcombank-captcha: W8A8 accounted 586032 B when its presets were drawn, 584396 B as
exported (the budget); the last choice skipped it and took W4A8 as "the preset".
"""

from __future__ import annotations

from types import SimpleNamespace

from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search.deployed import uniform_candidates
from bitlens.core.search.points import Point
from tests.core.engine_models import small_cnn


class _Sizes:
    """Real export sizes; ``near``: how far from the budget the accounting is checked."""

    def __init__(self, real: dict[Plan, int], limit: int, near: int) -> None:
        self.real, self.limit, self.near = real, limit, near
        self.unexportable: dict[Plan, str] = {}
        self.exports: list[Plan] = []

    def exported(self, plan: Plan) -> int:
        self.exports.append(plan)
        return self.real[plan]

    def real_if_near(self, plan: Plan, accounted: int) -> int | None:
        return self.exported(plan) if abs(accounted - self.limit) <= self.near else None


def _candidates(w8a8_accounted: int, budget: int, near: int) -> tuple[list[str], _Sizes]:
    info = from_proto(small_cnn()).info
    w8, w4 = Plan.preset(info, "W8A8"), Plan.preset(info, "W4A8")
    refs = [
        Point(Plan(info), 9000, 0, 0.0, None, "float"),
        Point(w8, w8a8_accounted, 0, 0.05, None, "W8A8"),
        Point(w4, 2500, 0, 0.3, None, "W4A8"),
    ]
    sizes = _Sizes({w8: budget, w4: 2400}, budget, near)
    s = SimpleNamespace(
        references=refs, uniform=[], size=sizes, pins={},
        quick_enough=lambda plan: True, _tick=lambda what: Progress(0, 1, what),
    )  # fmt: skip
    gen = uniform_candidates(s, [], budget)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return [p.label for p in stop.value], sizes


def test_w8a8_at_its_own_size_is_compared_when_its_accounting_overshoots() -> None:
    got, _ = _candidates(w8a8_accounted=4400, budget=4358, near=512)
    assert got == ["W8A8"]


def test_a_preset_far_over_the_budget_is_not_exported() -> None:
    got, sizes = _candidates(w8a8_accounted=9000, budget=4358, near=512)
    assert got == ["W4A8"]
    assert len(sizes.exports) == 1  # W4A8's: W8A8's accounting is far over, not exported
