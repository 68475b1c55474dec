"""The search measures plans from the values kept upstream of their first change
(``Engine.plan_outputs``, engine/reuse.py): the same numbers as running the whole graph, on
any subset of the feeds, and nothing kept for feeds that the search replaced."""

from __future__ import annotations

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, prefix
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.search import Budget, SearchOptions, search
from tests.core.engine_models import small_cnn
from tests.core.test_engine_scale import deep_mlp


def _engine(proto, n: int = 6, dims: dict | None = None, rows: bool = False) -> Engine:
    model = from_proto(proto)
    data = Dataset.random(model.info, n=n, seed=3, dims=dims or {})
    if rows:  # one feed per row
        data = Dataset(
            tuple({k: v[r : r + 1] for k, v in s.items()} for s in data.samples
                  for r in range(next(iter(s.values())).shape[0]))
        )  # fmt: skip
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    return engine


def test_plan_outputs_equal_whole_runs_on_any_feeds(monkeypatch) -> None:
    """One layer changed at a time (weights, activation, both: new quantizer structures),
    on the evaluation feeds and on a subset, interleaved: each equals a whole-graph run."""
    tails = []
    real = prefix.build_tail
    monkeypatch.setattr(prefix, "build_tail", lambda *a, **k: tails.append(a[1]) or real(*a, **k))
    fast = _engine(deep_mlp(6), rows=True)
    slow = _engine(deep_mlp(6), rows=True)
    assert len(fast.data.evaluation) >= 3
    info = fast.info
    base = Plan.preset(info, "W8A8")
    plans = [base]
    for layer in info.layers:
        plans.append(base.with_choices({layer.name: LayerChoice.of("int4 sym ch", "uint8 asym")}))
        plans.append(base.with_choices({layer.name: LayerChoice.of("int8 sym ch", "int16 sym")}))
        plans.append(base.with_choices({layer.name: LayerChoice.of("int2 sym ch")}))
    plans.append(Plan(info))
    subsets = [None, (fast.data.evaluation[0],), tuple(fast.data.evaluation[1:])]
    for k, plan in enumerate(plans):
        feeds = subsets[k % len(subsets)]
        got = fast.plan_outputs(plan, feeds)
        want = slow.run_outputs(plan, feeds)
        assert got.keys() == want.keys()
        for name in want:
            for g, w in zip(got[name], want[name], strict=True):
                np.testing.assert_array_equal(g, w)
    assert tails or fast._part_sessions, "no plan ran from kept values"


def test_a_search_leaves_nothing_kept_for_the_feeds_it_split() -> None:
    """The search splits the evaluation rows into new feeds appended to the data (which rows
    depends on the seed) and measures plans on them: values kept for those positions would
    serve the next search, whose feeds there hold other rows. None is left when it ends."""
    opts = dict(front_probes=3, refine_evaluations=4, references=("W8A8",), deployed_check=False)
    engine = _engine(small_cnn(), n=4, dims={"N": 3})
    n = len(engine.data.samples)
    gen = search(engine, SearchOptions(Budget(size_ratio=0.8), **opts))
    for k, _ in enumerate(gen):
        if k == 40:  # well into the search: plans were measured on the split feeds
            assert any(max(key[2]) >= n for key in engine._prefix_values._values)
    assert len(engine.data.samples) == n
    assert not any(max(key[2]) >= n for key in engine._prefix_values._values)
    # and a plan measured afterwards on the engine's own feeds is a whole run's
    plan = Plan.preset(engine.info, "W8A8")
    got = engine.plan_outputs(plan)
    want = _engine(small_cnn(), n=4, dims={"N": 3}).run_outputs(plan)
    for name in want:
        for g, w in zip(got[name], want[name], strict=True):
            np.testing.assert_array_equal(g, w)
