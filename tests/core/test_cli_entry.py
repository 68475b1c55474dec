"""The ``bitlens`` command's help lists its subcommands and exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(APP)}
    return subprocess.run(
        [sys.executable, "-m", "bitlens", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )


def test_help_lists_subcommands() -> None:
    res = run_cli("--help")
    assert res.returncode == 0, res.stderr
    assert "inspect" in res.stdout
