"""`bitlens search` writes a plan that eval and export load; --front, --pin, --metric; errors."""

from __future__ import annotations

import json
import re

import onnx
import pytest

from tests.core.engine_models import small_cnn
from tests.core.test_cli_entry import run_cli

FAST = ("--samples", "6")
PROGRESS = re.compile(r"bitlens: \d+/\d+ ")


@pytest.fixture(scope="module")
def cnn_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli_search") / "cnn.onnx"
    onnx.save(small_cnn(), path)
    return path


def test_search_plan_front_then_eval_and_export(cnn_path, tmp_path) -> None:
    plan, front, out = tmp_path / "plan.json", tmp_path / "front.json", tmp_path / "q.onnx"
    res = run_cli("search", str(cnn_path), *FAST, "--size-ratio", "0.8", "--pin",
                  "conv1=int8 sym ch,uint8 asym", "--seed", "3", "-o", str(plan), "--front",
                  str(front))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "checked by a real export" in res.stdout and "front (" in res.stdout
    layers = json.loads(plan.read_text())["layers"]
    assert layers["conv1"] == {"weight": "int8 sym ch", "activation": "uint8 asym"}
    data = json.loads(front.read_text())
    assert data["seed"] == 3 and data["best"]["exported_bytes"] <= 0.8 * data["float_bytes"]
    errors = [p["error"] for p in data["front"]]
    assert errors == sorted(errors, reverse=True) and len(set(errors)) == len(errors)
    assert {r["label"] for r in data["references"]} >= {"float", "W8A8"}

    res = run_cli("eval", str(cnn_path), *FAST, "--plan", str(plan))
    assert res.returncode == 0, res.stderr
    res = run_cli("export", str(cnn_path), *FAST, "--plan", str(plan), "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size <= 0.8 * data["float_bytes"]
    assert out.stat().st_size == data["best"]["exported_bytes"]


def test_search_with_user_metric_and_eval_reports_it(cnn_path, tmp_path) -> None:
    m = tmp_path / "m.py"
    m.write_text(
        "import numpy as np\n"
        "def agree(outputs, reference, labels):\n"
        "    '''Top-1 agreement with float.'''\n"
        "    a, r = outputs['y'], reference['y']\n"
        "    return float(np.mean(a.argmax(-1) == r.argmax(-1)))\n"
        "def bad(outputs, reference, labels):\n"
        "    raise RuntimeError('metric exploded')\n"
    )
    plan = tmp_path / "plan.json"
    # Target none: on this tiny model the ort-cpu target's extra output quantizers cost the
    # one sample of three that a 0.99 agreement needs; this test is about the user metric.
    res = run_cli("search", str(cnn_path), *FAST, "--min-metric", "0.99", "--metric",
                  f"{m}:agree", "--target", "none", "-o", str(plan), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["metric"] == "agree" and out["best"]["metric"] >= 0.99
    res = run_cli("eval", str(cnn_path), *FAST, "--plan", str(plan), "--metric", f"{m}:agree")
    assert res.returncode == 0 and "agree: " in res.stdout and "agree_float: 1" in res.stdout
    res = run_cli("eval", str(cnn_path), *FAST, "--plan", str(plan), "--metric", f"{m}:bad")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "bitlens eval: error: metric bad raised RuntimeError: metric exploded"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--size-ratio", "2"), "size ratio must be in (0, 1]"),
        (("--max-bytes", "50"), "no plan fits in 50 bytes"),
        (("--size-ratio", "0.5", "--pin", "nope=int8 sym ch"), "--pin names layer 'nope'"),
        (("--size-ratio", "0.5", "--metric", "nocolon"), "--metric expects module:function"),
        (("--min-metric", "0.5"), "needs a metric"),
        (("--size-ratio", "0.5", "--recovery", "bogus"), "unknown recovery method 'bogus'"),
    ],
)
def test_search_errors_are_one_line(cnn_path, tmp_path, args, message) -> None:
    res = run_cli("search", str(cnn_path), *FAST, *args, "-o", str(tmp_path / "p.json"))
    assert res.returncode == 2, res.stdout
    # a plain progress line (cli/progress.py, every PERIOD s when stderr is a pipe) may come
    # first on a busy machine: the error itself is one line
    said = [ln for ln in res.stderr.strip().splitlines() if not PROGRESS.match(ln)]
    assert message in res.stderr and len(said) == 1
    assert not (tmp_path / "p.json").exists()


def test_search_never_overwrites_the_model(cnn_path) -> None:
    before = cnn_path.read_bytes()
    res = run_cli("search", str(cnn_path), *FAST, "--size-ratio", "0.5", "-o", str(cnn_path))
    assert res.returncode == 2 and "it is an input of this run" in res.stderr
    assert cnn_path.read_bytes() == before


def test_sweep_with_activations_and_metric(cnn_path, tmp_path) -> None:
    m = tmp_path / "m.py"
    m.write_text("def one(outputs, reference, labels):\n    '''Constant.'''\n    return 1.0\n")
    res = run_cli("sweep", str(cnn_path), *FAST, "--formats", "int4 sym ch",
                  "--activation-formats", "uint8 asym", "fp16", "--metric", f"{m}:one", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    entries = json.loads(res.stdout)["entries"]
    kinds = {(e["layer"], e["kind"], e["format"]) for e in entries}
    # 3 layers x 1 weight format + 3 layers with an activation x 2 formats
    assert len(kinds) == 9 and ("conv2", "activation", "fp16") in kinds
    assert all(e["metric"] == 1.0 for e in entries)
    assert [e["error"] for e in entries] == sorted((e["error"] for e in entries), reverse=True)
    assert all(e["bytes_saved"] > 0 for e in entries if e["kind"] == "weight")
