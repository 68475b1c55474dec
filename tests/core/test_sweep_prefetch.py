"""The sweep prepares the next layer's weights and suffix session while the runs of the
current one go (engine/sweep.py): the entries equal those of a sweep that prepares each
layer only when its turn comes."""

from __future__ import annotations

import pytest

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, sweep
from bitlens.core.model.loader import from_proto
from tests.core.test_engine_scale import _run_sweep, deep_mlp, residual_two_outputs


@pytest.mark.parametrize("build", [residual_two_outputs, lambda: deep_mlp(10)])
def test_a_sweep_prepared_ahead_equals_one_prepared_in_turn(build, monkeypatch) -> None:
    loaded = from_proto(build())
    data = Dataset.random(loaded.info, n=6, seed=3, dims={"N": 3})
    submitted: list[bool] = []
    real = sweep.ThreadPoolExecutor.submit

    def submit(self, fn, *a, **k):
        submitted.append(self._thread_name_prefix.endswith("prep"))
        return real(self, fn, *a, **k)

    monkeypatch.setattr(sweep.ThreadPoolExecutor, "submit", submit)
    ahead = _run_sweep(Engine(loaded, data, device="cpu"))
    assert any(submitted)  # the preparing thread ran
    monkeypatch.undo()
    monkeypatch.setattr(sweep, "PREPARE_AHEAD", False)
    in_turn = _run_sweep(Engine(loaded, data, device="cpu"))
    assert ahead == in_turn
