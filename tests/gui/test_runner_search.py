"""The window's search, run as the runner runs every job (on a worker thread below the window's
priority, with the heap it finds frozen out of the garbage collector: core/frozen_heap.py),
finds what the search called directly finds for the same seed and budget (docs/benchmarks.md
"uisearch (session 16)").

    x -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten -> Gemm -> y   (engine_models.small_cnn)
"""

from __future__ import annotations

from bitlens.core.search import Budget, SearchOptions, SearchResult, search
from bitlens.gui import jobs
from bitlens.gui.runner import EngineRunner, Job
from tests.core.test_search_passes import _labelled_engine
from tests.gui.conftest import WAIT_MS


def test_the_search_run_by_the_runner_finds_the_same_plans(qtbot) -> None:
    """The same plans tried, with the same errors and sizes, and the same front."""
    engine = _labelled_engine()
    opts = SearchOptions(
        Budget(size_ratio=0.9), front_probes=2, refine_evaluations=2, references=(),
        speed_check=False, float_activation_fallback=None, deployed_check=False,
    )  # fmt: skip
    runner = EngineRunner()
    results: list[SearchResult] = []
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        runner.submit(Job("search", "s", jobs.find_plan, (engine, opts), on_result=results.append))
    gen = search(engine, opts)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        direct: SearchResult = stop.value
    (windowed,) = results
    assert [(p.plan, p.error, p.file_bytes) for p in windowed.tried] == [
        (p.plan, p.error, p.file_bytes) for p in direct.tried
    ]
    assert windowed.front == direct.front and windowed.best == direct.best
