"""The fuzz worker's JSON lines survive other writers of stdout.

ONNX Runtime prints "EP Error ..." to stdout (from Python, and C code may too) when an
execution provider fails; in the worker that line reached the runner, whose ``json.loads``
then broke the whole fuzz run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_CHILD = """
import os, sys
from tests.fuzz.worker import protocol_stream
answers = protocol_stream()
print("EP Error from Python")
sys.stdout.flush()
os.write(1, b"EP Error from C\\n")
print('{"ready": true}', file=answers, flush=True)
"""


def test_only_the_answers_reach_the_runner() -> None:
    path = os.pathsep.join([str(ROOT / "app"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    res = subprocess.run(
        [sys.executable, "-c", _CHILD], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert [json.loads(line) for line in res.stdout.splitlines()] == [{"ready": True}]
    assert "EP Error from Python" in res.stderr and "EP Error from C" in res.stderr
