"""A search's passes share what they measure alike (core/search/passes.py).

Under a size budget a search whose first plan loses too much of the task metric (or is the
same-size preset) runs again with float activations. That second pass measured the float
model and the presets again, every layer's weights alone again, and rebuilt in memory the
exports that give each format's cost, and ran the same preset's export as deployed again
(the text sample at W8A8's size: 225 model runs before, 177 now, the same plan). Each is
now done once per search: the same plan is never run twice on the fitted feeds, nor
exported twice.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import accounting
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import Progress, drain
from bitlens.core.search import Budget, SearchOptions, filesize, search
from bitlens.core.search import deployed as deployed_mod
from tests.core.engine_models import small_cnn


def _labelled_engine() -> Engine:
    model = from_proto(small_cnn())
    info = model.info
    data = Dataset.random(info, n=9, seed=3, calibration_fraction=3 / 9)
    ref = Engine(model, data, device="cpu").run_outputs(Plan(info), range(len(data.samples)))
    labels = np.argmax(np.concatenate(next(iter(ref.values()))), -1)
    data = Dataset(data.samples, labels, data.calibration, data.evaluation)
    engine = Engine(model, data, device="cpu")
    drain(engine.calibrate("minmax"))
    return engine


def test_second_pass_measures_and_exports_nothing_twice(monkeypatch) -> None:
    engine = _labelled_engine()
    runs: Counter = Counter()
    builds: Counter = Counter()
    plan_outputs = engine.plan_outputs

    def counted_outputs(plan, indices=None, **kw):
        runs[(plan, tuple(indices or ()))] += 1
        return plan_outputs(plan, indices, **kw)

    engine.plan_outputs = counted_outputs  # type: ignore[method-assign]

    def counting(fn, key):
        def wrapped(eng, plan, *args, **kw):
            builds[(key, plan)] += 1
            return fn(eng, plan, *args, **kw)

        return wrapped

    monkeypatch.setattr(filesize, "build", counting(filesize.build, "build"))
    monkeypatch.setattr(accounting, "build", counting(accounting.build, "predict"))
    monkeypatch.setattr(
        deployed_mod, "write_export", counting(deployed_mod.write_export, "deployed")
    )
    # a fallback below zero: the weights-only pass always runs (the first pass's metric is
    # never a point above the float model's)
    opts = SearchOptions(
        Budget(size_ratio=0.9), front_probes=4, refine_evaluations=6, references=("W8A8",),
        speed_check=False, float_activation_fallback=-1.0,
    )  # fmt: skip
    gen = search(engine, opts)
    messages = []
    try:
        while True:
            item = next(gen)
            if isinstance(item, Progress):
                messages.append(item.message)
    except StopIteration as stop:
        result = stop.value
    assert any(m.startswith("float activations: ") for m in messages)  # the second pass ran
    assert any(k == "predict" for k, _p in builds)  # the overheads were measured
    assert any(k == "deployed" for k, _p in builds)  # and the last choice ran exports
    twice = [key for key, n in runs.items() if n > 1]
    assert not twice, f"{len(twice)} plan(s) run twice on the same feeds"
    rebuilt = [key[0] for key, n in builds.items() if n > 1]
    assert not rebuilt, f"exports built twice: {Counter(rebuilt)}"
    assert result.best.plan in {p.plan for p in result.tried} | {r.plan for r in result.references}
