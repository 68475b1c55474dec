"""Machine-readable output stays machine-readable (issue 9, item 10).

onnxruntime-gpu's ``preload_dlls()`` prints "Failed to load ..." lines to
stdout, before a ``--json`` answer, when CUDA 13 / cuDNN 9 are missing; each
session asking for CUDA then logs more. Bitlens keeps all of that out of
stdout and says once, in one line on stderr, that it runs on the CPU.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from bitlens.core.engine import session
from tests.builders import conv_net

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch):
    session.cuda_unavailable.cache_clear()
    session._warn_fallback.cache_clear()
    monkeypatch.setattr(session.ort, "get_available_providers", lambda: [session.CUDA, session.CPU])
    yield
    session.cuda_unavailable.cache_clear()
    session._warn_fallback.cache_clear()


def _noisy_preload() -> None:
    print("Failed to load libcublasLt.so.13: libcublasLt.so.13: cannot open shared object file")
    sys.stdout.flush()
    os.write(1, b"Failed to load libcudnn.so.9: from C\n")  # what a C library would write


def test_preload_noise_never_reaches_stdout(fresh, monkeypatch, capfd, caplog) -> None:
    monkeypatch.setattr(session.ort, "preload_dlls", _noisy_preload, raising=False)
    monkeypatch.setattr(session, "_probe_providers", lambda providers: [session.CPU])
    with caplog.at_level(logging.WARNING, logger="bitlens"):
        assert session.requested_providers("cuda") == [session.CPU]
        assert session.requested_providers("auto" if session.gpu_present() else "cuda") == [
            session.CPU
        ]
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    (record,) = caplog.records  # one line, once
    assert "libcublasLt.so.13 not found" in record.getMessage()
    assert "running on the CPU" in record.getMessage()


def test_cuda_that_starts_is_used(fresh, monkeypatch, capfd) -> None:
    monkeypatch.setattr(session.ort, "preload_dlls", _noisy_preload, raising=False)
    monkeypatch.setattr(session, "_probe_providers", lambda providers: providers)
    assert session.requested_providers("cuda") == [session.CUDA, session.CPU]
    assert capfd.readouterr().out == ""


def test_eval_json_with_device_cuda_parses(tmp_path: Path) -> None:
    """The real thing, in a subprocess: on a machine without CUDA 13 this printed 21 lines."""
    src = tmp_path / "m.onnx"
    onnx.save(conv_net(), src)
    env = {**os.environ, "PYTHONPATH": str(APP)}
    res = subprocess.run(
        [sys.executable, "-m", "bitlens", "eval", str(src), "--preset", "W8A8",
         "--samples", "2", "--device", "cuda", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    # stderr carries the data summary and at most one line about CUDA, never ORT's noise
    cuda = [ln for ln in res.stderr.splitlines() if "CUDA" in ln or "Failed to load" in ln]
    assert len(cuda) <= 1, cuda
    if (
        session.CUDA not in out["providers"]
        and session.CUDA in session.ort.get_available_providers()
    ):
        assert cuda and "running on the CPU" in cuda[0]
