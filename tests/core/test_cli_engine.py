"""`bitlens plan`, `eval` and `sweep` run headless, print tables or JSON, fail cleanly."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from tests.core.engine_models import mlp_with_fragile_layer, small_cnn
from tests.core.test_cli_entry import run_cli


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "cnn.onnx"
    onnx.save(small_cnn(), path)
    return path


def test_plan_then_eval_text_and_json(cnn_path, tmp_path) -> None:
    plan = tmp_path / "plan.json"
    res = run_cli("plan", str(cnn_path), "--preset", "W4A8", "-o", str(plan))
    assert res.returncode == 0, res.stderr
    assert json.loads(plan.read_text())["layers"]["conv1"]["weight"] == "int4 sym ch"

    res = run_cli("eval", str(cnn_path), "--plan", str(plan))
    assert res.returncode == 0, res.stderr
    assert "conv2" in res.stdout and "int4 sym ch" in res.stdout
    assert "output y: SQNR" in res.stdout and "CPUExecutionProvider" in res.stdout

    res = run_cli("eval", str(cnn_path), "--plan", str(plan), "--json", "--samples", "6")
    data = json.loads(res.stdout)
    assert data["layers"]["conv1"]["weight_format"] == "int4 sym ch"
    assert data["bytes_after"] < data["bytes_before"]
    assert len(data["first_divergence"]) == 3


def test_eval_with_npz_data_and_labels(cnn_path, tmp_path) -> None:
    rng = np.random.default_rng(0)
    npz = tmp_path / "d.npz"
    np.savez(
        npz, x=rng.normal(size=(12, 3, 8, 8)).astype(np.float32), labels=rng.integers(0, 10, 12)
    )
    res = run_cli("eval", str(cnn_path), "--preset", "W8A8", "--data", str(npz), "--json")
    assert res.returncode == 0, res.stderr
    metric = json.loads(res.stdout)["task_metric"]
    assert set(metric) == {"accuracy", "accuracy_float"}


def test_sweep_ranks_the_fragile_layer_first(tmp_path) -> None:
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_with_fragile_layer(), path)
    res = run_cli("sweep", str(path), "--formats", "int4 sym ch", "--samples", "16", "--json")
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)["entries"]
    assert entries[0]["layer"] == "mm_b"
    res = run_cli("sweep", str(path), "--formats", "int8 sym ch", "int4 sym ch", "--top", "2")
    assert res.returncode == 0 and "mm_b" in res.stdout and "4 more" in res.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["eval", "{model}", "--plan", "{tmp}/none.json"], "no such plan file"),
        (["eval", "{model}", "--preset", "W8A8", "--data", "{tmp}/none.npz"], "no such data file"),
        (["eval", "{model}", "--preset", "W8A8", "--dim", "oops"], "NAME=SIZE"),
        (["sweep", "{model}", "--formats", "int9"], "int9"),
        (
            ["plan", "{model}", "--preset", "W8A8", "--layers", "nosuch", "-o", "{tmp}/p.json"],
            "nosuch",
        ),
    ],
)
def test_bad_input_is_one_line_without_traceback(cnn_path, tmp_path, args, message) -> None:
    argv = [a.format(model=cnn_path, tmp=tmp_path) for a in args]
    res = run_cli(*argv)
    assert res.returncode != 0
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
