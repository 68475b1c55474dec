"""The search's last choice under a size budget, made on the exports as deployed
(core/search/deployed.py), on a tiny CNN built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bitlens.core.export.exporter import export
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from bitlens.core.search import Budget, exported_size
from bitlens.core.search.deployed import DeployedErrors
from tests.core.engine_models import small_cnn
from tests.core.test_search import _engine, _run


@pytest.fixture(scope="module")
def cnn():
    return _engine(small_cnn())


def _rel_l2(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = ref.astype(np.float64), got.astype(np.float64)
    return float(np.linalg.norm(got - ref) / np.linalg.norm(ref))


def test_best_plan_carries_its_deployed_error(cnn, tmp_path: Path) -> None:
    """The error the search reports for its plan as deployed is the exported file's in a
    default ONNX Runtime session against the float model, computed here in float64 numpy."""
    limit = exported_size(cnn, Plan.preset(cnn.info, "W8A8"))
    result, _ = _run(cnn, Budget(max_bytes=limit), check_export=True, check_fraction=0)
    best = result.best
    assert best.exported_bytes is not None and best.exported_bytes <= limit
    assert best.deployed_error is not None
    path = tmp_path / "best.onnx"
    drain(export(cnn, best.plan, path))
    model_bytes = cnn.model.graph_proto.SerializeToString()
    flt = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    dep = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = [cnn.data.samples[i] for i in cnn.data.evaluation]
    ref = np.concatenate([flt.run(None, f)[0] for f in feeds])
    got = np.concatenate([dep.run(None, f)[0] for f in feeds])
    assert best.deployed_error == pytest.approx(_rel_l2(ref, got), rel=1e-4, abs=1e-7)


def test_deployed_errors_decide_between_the_plans_that_fit(cnn, monkeypatch) -> None:
    """When the files as deployed rank the plans otherwise than the simulation (integer
    kernels round otherwise: khmersm), the search returns the best deployed one; without
    the check, the best simulated one."""
    limit = exported_size(cnn, Plan.preset(cnn.info, "W8A8"))
    plain, _ = _run(
        cnn, Budget(max_bytes=limit), check_export=True, deployed_check=False, check_fraction=0
    )
    assert plain.best.deployed_error is None
    seen: list[Plan] = []

    def reversed_errors(self, plan: Plan):
        # the simulated best deploys worst; every other candidate in order of arrival
        seen.append(plan)
        return (1.0 if plan == plain.best.plan else 0.1 * len(seen), None)

    monkeypatch.setattr(DeployedErrors, "error", reversed_errors)
    result, _ = _run(cnn, Budget(max_bytes=limit), check_export=True, check_fraction=0)
    assert len(seen) >= 2 and plain.best.plan in seen
    others = [p for p in seen if p != plain.best.plan]
    assert result.best.plan == others[0]
    assert result.best.exported_bytes is not None and result.best.exported_bytes <= limit
    assert result.best.deployed_error == pytest.approx(0.1 * (seen.index(others[0]) + 1))
