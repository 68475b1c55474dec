"""The frozen PyInstaller bundle runs on its own: the window's self-test and a subcommand.

``tools/test.sh`` builds the bundle first and sets ``BITLENS_BUNDLE``; a plain
``pytest`` run without a bundle skips these (say so, rather than pass silently).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

BUNDLE = os.environ.get("BITLENS_BUNDLE")
pytestmark = pytest.mark.skipif(
    not BUNDLE, reason="no frozen bundle: tools/test.sh builds it (packaging/build.sh)"
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(BUNDLE or "") / "bitlens"
    # A bare environment: no virtualenv, no PYTHONPATH, a fresh home.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "QT_QPA_PLATFORM": "offscreen",
        "LANG": "C.UTF-8",
    }
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )


def test_bundle_selftest(tmp_path: Path) -> None:
    res = _run(tmp_path, "--selftest")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().endswith("selftest: ok")
    assert "export passed" in res.stdout


def test_bundle_inspects_its_sample(tmp_path: Path) -> None:
    model = Path(BUNDLE or "") / "_internal" / "resources" / "samples" / "speech_kws" / "model.onnx"
    res = _run(tmp_path, "inspect", str(model))
    assert res.returncode == 0, res.stderr
    assert "LSTM" in res.stdout and res.stdout.splitlines()[-1].strip()
