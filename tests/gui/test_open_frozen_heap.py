"""The window's open (and its change of data) and its plan evaluation keep the objects alive at
their start out of Python's garbage collector while they run, and give them back when they end
or are closed (core/frozen_heap.py): in the window a full collection walks the window's whole
heap (Qt's wrappers, pyqtgraph, every imported module) with the interpreter lock held, and the
window's thread waited for the lock while the open job collected (docs/benchmarks.md
"opengil (session 15)").

    x -> Conv -> Relu -> Conv -> Relu -> GAP -> Flatten -> Gemm -> y   (engine_models.small_cnn)
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

from bitlens.core.plan import Plan
from bitlens.gui import jobs
from bitlens.gui.jobs import DataRequest
from tests.core.test_frozen_heap import _walked
from tests.gui.conftest import run_to_end


def test_open_change_of_data_and_evaluation_keep_the_heap_out_of_collections(
    cnn_path: Path, monkeypatch
) -> None:
    gc.unfreeze()  # tests/conftest.py froze the collected suite
    try:
        alive = ["made before the open"]  # a tracked object
        gen = jobs.open_model(cnn_path, DataRequest(dims={"N": 2}), "cpu")
        next(gen)
        assert gc.get_freeze_count() > 0 and not _walked(alive)  # the old code: walked
        session = run_to_end(gen)
        assert gc.get_freeze_count() == 0 and _walked(alive)
        # the change of data, closed part-way (a newer open replaced it): given back
        gen = jobs.change_data(session, DataRequest(samples=4, seed=1))
        next(gen)
        assert not _walked(alive)
        gen.close()
        assert gc.get_freeze_count() == 0 and _walked(alive)
        # the evaluation: frozen while the engine measures, given back with its result
        seen: list[bool] = []
        measure = jobs.evaluate_with

        def watched(*args):
            seen.append(_walked(alive))
            return measure(*args)

        monkeypatch.setattr(jobs, "evaluate_with", watched)
        plan = Plan.preset(session.info, "W8A8")
        _, result = jobs.evaluate(session.engine, plan)
        assert seen == [False] and _walked(alive)  # the old code: [True]
        # the same numbers as an evaluation outside the job
        assert result.outputs == measure(session.engine, plan, None).outputs
    finally:
        gc.freeze()


def test_the_reference_evaluators_schema_table_is_built_with_the_window() -> None:
    """onnx.reference's import builds onnx's schema table in one C call (25 ms with the lock
    held): done as the window's modules load, not in the open job's first constant fold."""
    probe = (
        "import sys, bitlens.gui.jobs; sys.exit(0 if 'onnx.reference.op_run' in sys.modules else 3)"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=os.environ.copy(), timeout=120)
    assert done.returncode == 0  # the old code: 3
