"""`bitlens eval --deployed` (the window's As deployed tab) on a model whose every layer
output is fused inside an integer kernel: no layer value to fetch from the simulation, and
ONNX Runtime's run([]) returns every output instead of none; it raised "zip() argument 2 is
longer than argument 1"."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bitlens.cli import main
from tests.builders import mlp


def test_deployed_outputs_of_an_all_fused_model_match_the_exported_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, data, out = tmp_path / "mlp.onnx", tmp_path / "data.npz", tmp_path / "w8a8.onnx"
    onnx.save(mlp(), str(path))
    rows = np.random.default_rng(3).normal(size=(8, 2, 16)).astype(np.float32)
    np.savez(data, **{f"x/{i}": r for i, r in enumerate(rows)})
    assert main(["eval", str(path), "--preset", "W8A8", "--data", str(data), "--deployed",
                 "--json"]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out)
    assert {la["kind"] for la in res["deployed_layers"]} == {"fused"}, res
    (dep,) = res["deployed"]
    assert main(["export", str(path), "--preset", "W8A8", "--data", str(data), "-o", str(out),
                 "--json"]) == 0  # fmt: skip
    capsys.readouterr()
    # independent reference: both files in ONNX Runtime on the evaluation half, SQNR in
    # float64 numpy
    f, q = ort.InferenceSession(str(path)), ort.InferenceSession(str(out))
    ref = np.concatenate([f.run(None, {"x": r})[0] for r in rows[4:]]).astype(np.float64)
    got = np.concatenate([q.run(None, {"x": r})[0] for r in rows[4:]]).astype(np.float64)
    sqnr = 10 * math.log10(np.sum(ref**2) / np.sum((ref - got) ** 2))
    assert dep["deployed_sqnr_db"] == pytest.approx(sqnr, abs=0.01)
