"""``bitlens export``: writes the model and its report, exit code follows the fidelity check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bitlens.cli import main
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from tests.core.export_models import conv_net, transformer_block

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture
def cnn(tmp_path: Path) -> Path:
    path = tmp_path / "cnn.onnx"
    onnx.save(conv_net(channels=4), str(path))
    return path


def test_export_with_preset_writes_model_and_report(
    cnn: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cnn_w8a8.onnx"
    rc = main(["export", str(cnn), "--preset", "W8A8", "-o", str(out), "--samples", "4",
               "--dim", "N=2", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "QLinearConv" in text and "fidelity check passed" in text
    # the per-layer file column is a change against the float file (negative: saved); a bare
    # "file" header over "-55563" read as a broken size on g2p-id's BERT
    assert "file vs float (B)" in text
    report = json.loads((tmp_path / "cnn_w8a8.fidelity.json").read_text())
    assert report["passed"] is True
    assert [la["name"] for la in report["layers"]] == ["conv1", "conv2", "conv3", "fc"]
    assert report["min_ort"] == "1.20"
    assert onnx.load(str(out)).opset_import[0].version == 17


def test_export_with_plan_file_data_and_report_path(cnn: Path, tmp_path: Path) -> None:
    model = load_model(cnn)
    plan = tmp_path / "plan.json"
    plan.write_text(Plan.uniform(model.info, "nf4 blk8", "fp16").to_json())
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(8, 3, 16, 16)).astype(np.float32))
    out, rep = tmp_path / "nf4.onnx", tmp_path / "nf4-report.json"
    rc = main(["export", str(cnn), "--plan", str(plan), "--data", str(data), "-o", str(out),
               "--report", str(rep), "--json", "--device", "cpu"])  # fmt: skip
    assert rc == 0
    conv1 = json.loads(rep.read_text())["layers"][0]
    assert conv1["weight_format"] == "nf4 blk8"
    assert conv1["weights"][0]["format"] == "nf4 blk8@1"  # bound to the reduction axis


def test_failed_fidelity_exits_1(tmp_path: Path) -> None:
    """uint8 activations for the TensorRT target break its Q/DQ rules (int8 zero points)."""
    src = tmp_path / "tr.onnx"
    onnx.save(transformer_block(d=32, ff=64), str(src))
    rc = main(["export", str(src), "--preset", "W4A8", "--target", "tensorrt", "-o",
               str(tmp_path / "q.onnx"), "--samples", "2", "--dim", "N=1", "--dim", "S=4",
               "--device", "cpu"])  # fmt: skip
    assert rc == 1
    assert json.loads((tmp_path / "q.fidelity.json").read_text())["passed"] is False


def test_errors_exit_2_without_touching_the_source(
    cnn: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = cnn.read_bytes()
    rc = main(["export", str(cnn), "--preset", "W8A8", "-o", str(cnn), "--dim", "N=2"])
    assert rc == 2
    assert "it is an input of this run" in capsys.readouterr().err
    assert cnn.read_bytes() == before


def test_export_help_runs_as_a_command() -> None:
    env = {**os.environ, "PYTHONPATH": str(APP)}
    res = subprocess.run(
        [sys.executable, "-m", "bitlens", "export", "--help"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "--matmulnbits" in res.stdout and "--report" in res.stdout
