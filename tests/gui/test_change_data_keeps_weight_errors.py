"""Giving a model other data (the input sizes after an open without them, File > Open Data)
opens a new engine; the weight errors the old one computed still hold, since they depend on
the weights and the format only. The layer detail asked every format again on the new
engine: on paraphrase-MiniLM-L3's 30522-row embedding that was the window test's second
17 s of CPU (tests/gui/test_real_models_window.py)."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from bitlens.core.engine import Engine
from bitlens.core.model.loader import load_model
from bitlens.core.plan import weight_choices
from bitlens.gui import jobs
from bitlens.gui.jobs import DataRequest
from tests.core.engine_models import mlp_with_fragile_layer
from tests.gui.conftest import run_to_end


def test_new_data_keeps_the_weight_errors(cnn_path: Path, monkeypatch) -> None:
    session = run_to_end(jobs.open_model(cnn_path, DataRequest(dims={}), "cpu"))
    layer = session.info.layers[0]
    formats = weight_choices(layer)
    before = session.engine.scheme_table(layer.name, formats)

    def recomputed(*_a):
        raise AssertionError("a weight error was computed again for the new data")

    with monkeypatch.context() as m:
        m.setattr(Engine, "_weight_error", recomputed)
        changed = run_to_end(jobs.change_data(session, DataRequest(samples=4, seed=1)))
        assert changed.engine is not session.engine and changed.data is not session.data
        kept = changed.engine.scheme_table(layer.name, formats)
    assert kept == before
    # what a fresh engine of the same weights computes (the errors are the data's to none)
    fresh = Engine(load_model(cnn_path), None, device="cpu")
    assert fresh.scheme_table(layer.name, formats) == before


def test_weight_errors_come_only_from_the_same_model(cnn_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "mlp.onnx"
    onnx.save(mlp_with_fragile_layer(), other)
    a = Engine(load_model(cnn_path), None, device="cpu")
    b = Engine(load_model(other), None, device="cpu")
    with pytest.raises(ValueError, match="same model"):
        b.keep_weight_errors(a)
