"""benchmarks/floor_record.py: the pieces it records are the engine's own calls, made alone
again without changing what the engine computes, and everything it wrapped is put back."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, reference, session
from bitlens.core.engine.running import Runs
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import small_cnn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
floor_record = pytest.importorskip("floor_record")


def _open(loaded, data, *, record: bool):
    engine = Engine(loaded, data, device="cpu")
    engine.overlap = False
    engine.run_workers = 1
    plan = Plan.preset(loaded.info, "W8A8")
    if not record:
        for _ in engine.calibrate("minmax"):
            pass
        return engine, engine.evaluate(plan), None
    with floor_record.Recorder(wait=lambda: None) as rec:
        rec.samples = data.samples
        for _ in engine.calibrate("minmax"):
            pass
        result = engine.evaluate(plan)
        pieces, named = rec.take()
    return engine, result, (pieces, named)


def test_recorded_open_is_the_engines_work_and_leaves_it_unchanged() -> None:
    loaded = from_proto(small_cnn())
    data = Dataset.random(loaded.info, n=4, seed=2)
    wrapped = (
        session.make_session,
        Runs.__dict__["_run"],
        reference.extremes,
        metrics.SampleErrors.add,
        metrics.ErrorSums.add,
    )
    plain, expected, _ = _open(loaded, data, record=False)
    engine, result, (pieces, named) = _open(loaded, data, record=True)
    assert result == expected  # the calls made again alone change nothing the engine keeps
    roles = {p.role for p in pieces}
    for role in (
        "float session",
        "run: float session",
        "W8A8 simulation session",
        "run: W8A8 simulation session",
        "local errors session",
        "run: local errors session",
        "min and max of the reference's values",
        "measuring (layer outputs)",
        "output errors",
    ):
        assert role in roles
    builds = [p for p in pieces if p.build]
    assert {p.role for p in builds} == {
        "float session",
        "W8A8 simulation session",
        "local errors session",
    }
    assert all(p.wall > 0 and p.cpu >= 0 for p in pieces)
    assert "simulation graphs built (Python)" in named
    # every layer output of the evaluation feeds measured once, each its own piece
    evaluated = sum(1 for p in pieces if p.role == "measuring (layer outputs)")
    assert evaluated == len(loaded.info.layers) * len(data.evaluation)
    # a change recorded (its chain of parts made alone too) evaluates as without the recorder
    first = loaded.info.layer_names[0]
    change = Plan.preset(loaded.info, "W8A8").with_choices(
        {first: LayerChoice.of("int4 sym ch", "uint8 asym")}
    )
    with floor_record.Recorder(wait=lambda: None) as rec:
        rec.samples = data.samples
        recorded = engine.evaluate(change)
        runs = [p for p in rec.take()[0] if p.role.startswith("run: ")]
    assert recorded == plain.evaluate(change)
    assert runs
    assert wrapped == (
        session.make_session,
        Runs.__dict__["_run"],
        reference.extremes,
        metrics.SampleErrors.add,
        metrics.ErrorSums.add,
    )
    plain.close()
    engine.close()
