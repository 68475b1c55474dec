"""Every job the window's runner runs (the open, the evaluation, the sweep, the layer detail,
the search, the export) keeps the objects alive at its start out of Python's garbage collector
while it runs, and gives them back when it ends, is cancelled or is closed
(core/frozen_heap.py): in the window a full collection walks the window's whole heap (Qt's
wrappers, pyqtgraph, every imported module) with the interpreter lock held, and the window's
thread waited for the lock while a job collected (docs/benchmarks.md "opengil (session 15)").
Session 15 froze it per job (the opens, the evaluation, the search, the export); the sweep and
the layer detail ran unfrozen.

    x -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten -> Gemm -> y   (engine_models.small_cnn)
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from pathlib import Path

from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.gui import jobs
from bitlens.gui.jobs import DataRequest
from bitlens.gui.runner import EngineRunner, Job
from tests.core.test_frozen_heap import _walked
from tests.gui.conftest import WAIT_MS


def _run_all(qtbot, runner: EngineRunner, *submitted: Job) -> None:
    with qtbot.waitSignal(runner.busyChanged, check_params_cb=lambda b: not b, timeout=WAIT_MS):
        for job in submitted:
            runner.submit(job)


def test_every_job_keeps_the_heap_out_of_collections_until_it_ends(qtbot) -> None:
    runner = EngineRunner()
    gc.unfreeze()  # tests/conftest.py froze the collected suite
    try:
        alive = ["made before the jobs"]  # a tracked object
        seen: list[tuple[str, bool]] = []

        def plain() -> int:  # a function job (the layer detail's statistics, an evaluation)
            seen.append(("plain", _walked(alive)))
            return 1

        def stepping():  # a generator job (the sweep)
            seen.append(("first step", _walked(alive)))
            yield Progress(1, 2, "one")
            seen.append(("second step", _walked(alive)))
            return 2

        _run_all(qtbot, runner, Job("a", "a", plain), Job("b", "b", stepping))
        # the old code: [("plain", True), ("first step", True), ("second step", True)]
        assert seen == [("plain", False), ("first step", False), ("second step", False)]
        assert gc.get_freeze_count() == 0 and _walked(alive)
        # cancelled between two steps: given back too
        gate = threading.Event()

        def held():
            yield Progress(1, 100, "held")
            gate.wait(60)
            for i in range(99):
                yield Progress(i + 2, 100, "more")

        with qtbot.waitSignal(runner.progressed, timeout=WAIT_MS):
            runner.submit(Job("c", "c", held))
        assert not _walked(alive)
        with qtbot.waitSignal(runner.cancelled, timeout=WAIT_MS):
            runner.cancel()
            gate.set()
        qtbot.waitUntil(lambda: not runner.busy, timeout=WAIT_MS)
        assert gc.get_freeze_count() == 0 and _walked(alive)
    finally:
        gc.freeze()


def test_the_open_and_the_evaluation_through_the_runner(qtbot, cnn_path: Path, monkeypatch) -> None:
    """The window's own jobs, as the controller submits them: the same numbers as an
    evaluation outside a job."""
    runner = EngineRunner()
    sessions: list[jobs.Session] = []
    seen: list[bool] = []
    measure = jobs.evaluate_with

    def watched(*args):
        seen.append(_walked(alive))
        return measure(*args)

    monkeypatch.setattr(jobs, "evaluate_with", watched)
    gc.unfreeze()
    try:
        alive = ["made before the open"]
        open_job = Job("open", "o", jobs.open_model, (cnn_path, DataRequest(dims={"N": 2}), "cpu"),
                       on_result=sessions.append)  # fmt: skip
        _run_all(qtbot, runner, open_job)
        session = sessions[0]
        plan = Plan.preset(session.info, "W8A8")
        results: list[object] = []
        _run_all(qtbot, runner, Job("evaluate", "e", jobs.evaluate, (session.engine, plan),
                                    on_result=results.append))  # fmt: skip
        assert seen == [False] and _walked(alive)
        assert gc.get_freeze_count() == 0
    finally:
        gc.freeze()
    _, result = results[0]
    assert result.outputs == measure(session.engine, plan, None).outputs


def test_the_reference_evaluators_schema_table_is_built_with_the_window() -> None:
    """onnx.reference's import builds onnx's schema table in one C call (25 ms with the lock
    held): done as the window's modules load, not in the open job's first constant fold."""
    probe = (
        "import sys, bitlens.gui.jobs; sys.exit(0 if 'onnx.reference.op_run' in sys.modules else 3)"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=os.environ.copy(), timeout=120)
    assert done.returncode == 0  # the old code: 3
