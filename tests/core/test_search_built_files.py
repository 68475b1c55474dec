"""The plans a size search runs as deployed are not built twice (core/search/builtfiles.py).

The last choice (core/search/deployed.py) and the speed check (core/search/speed.py) run
the exports of plans the accounting had just built in memory to learn their real size; each
was exported again from the same preparation. The accounting now keeps the builds that fit
the budget, serialized, and those bytes are written out instead: the same file.

    x -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten -> Gemm -> y   (engine_models.small_cnn,
    labelled as tests/core/test_search_passes.py labels it)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np

from bitlens.core.export import exporter
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, SearchOptions, filesize, search
from bitlens.core.search.builtfiles import BuiltFiles
from bitlens.core.search.filesize import FileSizes
from tests.core.test_search_passes import _labelled_engine


def test_deployed_and_timed_plans_are_built_once(monkeypatch) -> None:
    engine = _labelled_engine()
    builds: Counter = Counter()
    real_build = exporter.build

    def counted(eng, plan, *args, **kw):
        builds[plan] += 1
        return real_build(eng, plan, *args, **kw)

    monkeypatch.setattr(filesize, "build", counted)  # the accounting's in-memory builds
    monkeypatch.setattr(exporter, "build", counted)  # export(): files run as deployed
    written: list[Plan] = []
    real_get = BuiltFiles.get

    def used(self, plan, prepared):
        got = real_get(self, plan, prepared)
        if got is not None:
            written.append(plan)
        return got

    monkeypatch.setattr(BuiltFiles, "get", used)
    opts = SearchOptions(
        Budget(size_ratio=0.9), front_probes=4, refine_evaluations=6, references=("W8A8",),
    )  # fmt: skip
    result = drain(search(engine, opts))
    assert result.best.deployed_error is not None  # the last choice ran exports as deployed
    assert result.speed is not None  # and the plan was timed
    assert result.best.plan in written
    twice = [n for n in builds.values() if n > 1]
    assert not twice, f"{len(twice)} plan(s) built twice"


def test_kept_bytes_are_the_export_file(tmp_path) -> None:
    engine = _labelled_engine()
    sizes = FileSizes(engine)
    int4 = parse_format("int4 sym ch")
    plan = Plan(engine.info).with_choices({"conv2": LayerChoice(int4), "fc": LayerChoice(int4)})
    real = sizes.exported(plan)
    prepared = sizes.prepared(plan)
    kept = sizes.built_file(plan, prepared)
    assert kept is not None and len(kept) == real
    path = tmp_path / "plan.onnx"
    drain(exporter.export(engine, plan, path, None, prepared))
    assert path.read_bytes() == kept
    # another preparation (other integer-kernel layers): built anew, not taken from here
    assert sizes.built_file(plan, replace(prepared, kernels=frozenset({"fc"}))) is None


def test_kept_files_are_bounded() -> None:
    engine = _labelled_engine()
    plans = [
        Plan(engine.info).with_choices({"fc": LayerChoice(parse_format(f"int{b} sym ch"))})
        for b in (4, 6, 8)
    ]
    prepared = exporter.preflight(engine, plans[0])
    files = BuiltFiles(limit=250)
    for plan, n in zip(plans, (100, 100, 100), strict=True):
        files.put(plan, prepared, np.zeros(n, np.uint8).tobytes())
    assert files.get(plans[0], prepared) is None  # the oldest went past the bound
    assert files.get(plans[1], prepared) is not None and files.get(plans[2], prepared)
    files.put(plans[0], prepared, bytes(300))  # over the bound alone: not kept
    assert files.get(plans[0], prepared) is None
