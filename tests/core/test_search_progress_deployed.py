"""The search's progress while it compares its best plans as deployed moves towards the end.

Each candidate added one to the total as it was compared, so the count read 186/214,
187/215, 188/216... on CapSpot's Siamese VGG16 (``bitlens search``, default options): the
bar stood still for as long as the comparison ran."""

from __future__ import annotations

from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search import Budget, exported_size
from tests.core.engine_models import small_cnn
from tests.core.test_search import _engine, _run


def test_comparing_the_best_plans_counts_them_up_front() -> None:
    cnn = _engine(small_cnn())
    limit = exported_size(cnn, Plan.preset(cnn.info, "W8A8"))
    _, events = _run(cnn, Budget(max_bytes=limit), check_export=True, check_fraction=0)
    ticks = [e for e in events if isinstance(e, Progress) and "comparing the best" in e.message]
    runs: list[list[Progress]] = []  # one comparison per choice the search makes
    for t in ticks:
        if runs and t.done == runs[-1][-1].done + 1:
            runs[-1].append(t)
        else:
            runs.append([t])
    assert any(len(run) >= 2 for run in runs), [(t.done, t.total) for t in ticks]
    for run in runs:  # the total stays put and the last candidate reaches it
        assert {t.total for t in run} == {run[-1].done + 1}, [(t.done, t.total) for t in run]
