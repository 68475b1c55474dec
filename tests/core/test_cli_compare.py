"""`bitlens eval --compare-plan / --compare-model / --report`: the headless twins of the
window's A/B compare, Compare With Model and Save Report."""

from __future__ import annotations

import json

import onnx
import pytest
from onnx import numpy_helper

from tests.core.engine_models import small_cnn
from tests.core.test_cli_entry import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    onnx.save(small_cnn(), d / "cnn.onnx")
    tuned = small_cnn()
    for i, t in enumerate(tuned.graph.initializer):
        if t.name == "W3":
            tuned.graph.initializer[i].CopyFrom(
                numpy_helper.from_array(numpy_helper.to_array(t) * 1.1, "W3")
            )
    onnx.save(tuned, d / "tuned.onnx")
    for preset in ("W8A8", "W4A8"):
        res = run_cli("plan", str(d / "cnn.onnx"), "--preset", preset, "-o", str(d / f"{preset}.json"))
        assert res.returncode == 0, res.stderr
    return d


def test_compare_plan_prints_deltas_text_and_json(files) -> None:
    args = ["eval", str(files / "cnn.onnx"), "--plan", str(files / "W8A8.json"),
            "--compare-plan", str(files / "W4A8.json")]  # fmt: skip
    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    assert "plan B against plan A" in res.stdout and "* conv2" in res.stdout
    assert "worse" in res.stdout and "output y: SQNR A" in res.stdout
    res = run_cli(*args, "--json")
    data = json.loads(res.stdout)
    rows = {r["name"]: r for r in data["compare_plan"]["layers"]}
    assert rows["conv2"]["a"].startswith("int8") and rows["conv2"]["b"].startswith("int4")
    assert rows["conv2"]["delta_bytes"] < 0 and rows["conv2"]["accumulated_delta_db"] < 0
    assert data["compare_plan"]["bytes_b"] < data["compare_plan"]["bytes_a"]


def test_compare_model_and_report(files) -> None:
    report = files / "out.html"
    res = run_cli("eval", str(files / "cnn.onnx"), "--preset", "W8A8", "--compare-model",
                  str(files / "tuned.onnx"), "--report", str(report), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows = {r["name"]: r for r in json.loads(res.stdout)["compare_model"]["layers"]}
    assert rows["conv1"]["identical"] and not rows["fc"]["identical"]
    assert rows["fc"]["difference"]["rel_l2"] == pytest.approx(0.1, rel=1e-5)
    html = report.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "Bitlens report: cnn.onnx" in html
    assert "Weights against another model" in html and "tuned.onnx" in html
    assert "report written to" in res.stderr  # stdout stays JSON


def test_report_never_overwrites_an_input(files) -> None:
    model = files / "cnn.onnx"
    before = model.read_bytes()
    res = run_cli("eval", str(model), "--preset", "W8A8", "--report", str(model))
    assert res.returncode != 0 and "input of this run" in res.stderr
    assert "data:" not in res.stdout  # refused before any data were made or evaluated
    assert model.read_bytes() == before


def test_a_compare_plan_for_another_model_is_named(files, tmp_path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"bitlens_plan": 1, "layers": {"nope": {"weight": "int8 sym"}}}')
    res = run_cli("eval", str(files / "cnn.onnx"), "--preset", "W8A8", "--compare-plan",
                  str(other))  # fmt: skip
    assert res.returncode != 0
    assert f"--compare-plan {other}: " in res.stderr and "nope" in res.stderr
