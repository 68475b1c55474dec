"""The ``bitlens`` command's help lists its subcommands and exits cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli_fork import run_bitlens

APP = Path(__file__).resolve().parents[2] / "app"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bitlens ARGS`` in a child process forked from a warm one (tests/cli_fork.py:
    the same result without a second of start-up per command)."""
    return run_bitlens(*args, timeout=120)


def test_help_lists_subcommands() -> None:
    # a fresh interpreter, as the user starts it
    env = {**os.environ, "PYTHONPATH": str(APP)}
    res = subprocess.run([sys.executable, "-m", "bitlens", "--help"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "inspect" in res.stdout
