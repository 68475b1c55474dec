"""Models converted from scikit-learn (skl2onnx, onnxmltools): ai.onnx.ml operators are named
as what Bitlens leaves float, a file that declares only the ai.onnx.ml domain opens, and a
ZipMap's sequence-of-maps output is left out of the comparisons instead of crashing them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.cli import main
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from tests.builders_ml import ml_only_classifier, mlp_classifier


def test_model_declaring_only_ai_onnx_ml_opens_and_says_why_nothing_is_quantized(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logreg.onnx"
    onnx.save(ml_only_classifier(), str(path))
    model = load_model(path)  # raised "declares no ONNX opset (truncated or corrupt?)"
    assert model.info.layers == ()
    assert any("3 ai.onnx.ml operators (LinearClassifier" in n for n in model.info.notes)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "no ONNX-domain opset" in out and "this model has none" in out
    assert "compute: no quantizable layer to count MACs of" in out  # it said "0 MACs"
    assert main(["eval", str(path), "--preset", "W8A8", "--samples", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing to quantize" in err and "ai.onnx.ml" in err


def test_engine_evaluates_a_model_without_layers_as_the_float_model(tmp_path: Path) -> None:
    # the window evaluates such a model (it says nothing is quantizable); the engine's first
    # cut raised "min() arg is an empty sequence" on a graph with no layer to cut at
    path = tmp_path / "logreg.onnx"
    onnx.save(ml_only_classifier(), str(path))
    model = load_model(path)
    engine = Engine(model, Dataset.random(model.info, n=4, seed=1), device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    ev = engine.evaluate(Plan.preset(model.info, "W8A8"))
    assert ev.layers == {}
    assert ev.outputs["label"].error.rel_l2 == 0.0


def test_zipmap_sequence_output_is_not_compared_and_the_export_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, data = tmp_path / "mlp.onnx", tmp_path / "data.npz"
    onnx.save(mlp_classifier(), str(path))
    x = np.random.default_rng(0).normal(size=(16, 6)).astype(np.float32)
    np.savez(data, x=x)
    notes = load_model(path).info.notes
    assert any("1 ai.onnx.ml operator (ZipMap) stays float" in n for n in notes), notes
    assert any("'probabilities' (sequence(map(int64)))" in n for n in notes), notes
    # eval crashed ('list' object has no attribute 'nbytes') on the sequence of maps
    assert main(["eval", str(path), "--preset", "W8A8", "--data", str(data), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["outputs"]) == ["label"]
    out = tmp_path / "mlp_w8a8.onnx"
    # export raised KeyError: 'probabilities' in its fidelity check
    assert main(["export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out),
                 "--json"]) == 0  # fmt: skip
    fid = json.loads(capsys.readouterr().out)
    assert fid["passed"] and [o["name"] for o in fid["outputs"]] == ["label"]
    # the exported file keeps the ZipMap; its maps hold the quantized model's probabilities,
    # close to the float model's (independent reference: ONNX Runtime on the original file)
    ref = ort.InferenceSession(str(path)).run(None, {"x": x[8:]})
    got = ort.InferenceSession(str(out)).run(None, {"x": x[8:]})
    assert len(got[1]) == 8 and set(got[1][0]) == {0, 1, 2}
    want = np.array([[m[k] for k in range(3)] for m in ref[1]])
    have = np.array([[m[k] for k in range(3)] for m in got[1]])
    assert np.abs(want - have).max() < 0.05
