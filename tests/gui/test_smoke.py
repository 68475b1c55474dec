"""The `bitlens` command opens the window offscreen and quits on its timer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx

from tests.core.engine_models import small_cnn

APP = Path(__file__).resolve().parents[2] / "app"


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(APP),
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(tmp_path / "config"),  # QSettings stay out of the real home
    }
    return subprocess.run(
        [sys.executable, "-m", "bitlens", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_bitlens_model_opens_window_and_quits(tmp_path: Path) -> None:
    model = tmp_path / "tiny.onnx"
    onnx.save(small_cnn(), model)
    res = _run(tmp_path, str(model), "--quit-after", "200")
    assert res.returncode == 0, res.stderr
    assert "tiny.onnx" in res.stderr  # the window title once the model was open
    assert (tmp_path / "config" / "Bitlens" / "Bitlens.conf").is_file()  # layout saved


def test_bitlens_bad_model_reports_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model at all")
    res = _run(tmp_path, str(bad), "--quit-after", "200")
    assert res.returncode == 1
    assert "bad.onnx" in res.stderr and "error shown" in res.stderr


def test_bitlens_without_arguments_opens_the_image_sample(tmp_path: Path) -> None:
    res = _run(tmp_path, "--quit-after", "200")
    assert res.returncode == 0, res.stderr
    assert "digits" in res.stderr.lower() and "(sample)" in res.stderr


def test_selftest_evaluates_and_exports_the_sample(tmp_path: Path) -> None:
    res = _run(tmp_path, "--selftest")
    assert res.returncode == 0, res.stderr
    assert "opened Handwritten digits" in res.stdout
    assert "W8A8 accuracy" in res.stdout and "export passed" in res.stdout
    assert res.stdout.strip().endswith("selftest: ok")
