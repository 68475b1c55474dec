"""The search and the checked export keep the objects alive at their start out of Python's
garbage collector while they run, and give them back when they end or are closed
(core/frozen_heap.py): a full collection walks every tracked object with the interpreter lock
held, which stalled the window's event loop 55-75 ms at a time during Find Plan, 35-40 ms in
an export (docs/benchmarks.md "uisearch (session 15)").

    x -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten -> Gemm -> y   (engine_models.small_cnn)
"""

from __future__ import annotations

import gc

from bitlens.core.export.fidelity import export_and_check
from bitlens.core.frozen_heap import frozen_during
from bitlens.core.plan import Plan
from bitlens.core.search import Budget, SearchOptions, search
from tests.core.test_search_passes import _labelled_engine


def _walked(obj: object) -> bool:
    """Whether a collection walks ``obj`` (the permanent generation is in no generation's
    list)."""
    return any(o is obj for o in gc.get_objects())


def test_search_keeps_the_heap_it_finds_out_of_collections_until_it_ends() -> None:
    engine = _labelled_engine()
    opts = SearchOptions(
        Budget(size_ratio=0.9), front_probes=2, refine_evaluations=2, references=(),
        speed_check=False, float_activation_fallback=None, deployed_check=False,
    )  # fmt: skip
    gc.unfreeze()  # tests/conftest.py froze the collected suite
    try:
        alive = ["made before the search"]  # a tracked object
        gen = search(engine, opts)
        next(gen)
        assert gc.get_freeze_count() > 0 and not _walked(alive)  # the old code: walked
        for _ in gen:
            pass  # to its end
        assert gc.get_freeze_count() == 0 and _walked(alive)
        # closed part-way: given back too
        gen = search(engine, opts)
        next(gen)
        assert not _walked(alive)
        gen.close()
        assert gc.get_freeze_count() == 0 and _walked(alive)
    finally:
        gc.freeze()


def test_checked_export_keeps_the_heap_it_finds_out_of_collections_until_it_ends(
    tmp_path,
) -> None:
    engine = _labelled_engine()
    plan = Plan.preset(engine.info, "W8A8")
    gc.unfreeze()  # tests/conftest.py froze the collected suite
    try:
        alive = ["made before the export"]
        gen = export_and_check(engine, plan, tmp_path / "a.onnx", latency_budget_s=0.05)
        next(gen)
        assert gc.get_freeze_count() > 0 and not _walked(alive)  # the old code: walked
        for _ in gen:
            pass
        assert gc.get_freeze_count() == 0 and _walked(alive)
        assert (tmp_path / "a.onnx").exists()
        gen = export_and_check(engine, plan, tmp_path / "b.onnx", latency_budget_s=0.05)
        next(gen)
        gen.close()  # cancelled: nothing written, the heap given back
        assert gc.get_freeze_count() == 0 and _walked(alive)
        assert not (tmp_path / "b.onnx").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fidelity.json", "a.onnx"]
    finally:
        gc.freeze()


def test_a_heap_frozen_already_is_left_frozen() -> None:
    def job():
        yield 1

    assert gc.get_freeze_count() > 0  # tests/conftest.py froze it
    frozen = gc.get_freeze_count()
    gen = frozen_during(job())
    assert next(gen) == 1 and gc.get_freeze_count() == frozen
    gen.close()
    assert gc.get_freeze_count() == frozen
