"""Checking a subcommand's output paths against its inputs before any work starts.

Every file a command writes goes through :func:`bitlens.core.fileio.check_output`
with every file the same command reads, so ``bitlens plan m.onnx -o m.onnx``
or ``bitlens export m.onnx -o out.onnx --report m.onnx`` fail at once with a
one-line message instead of replacing the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bitlens.core.fileio import check_output

# Argument names that hold files a subcommand reads (present or not on a given parser).
INPUT_ARGS = ("model", "plan", "data", "calib_data", "eval_data", "from_ort", "overrides", "metric")


def run_inputs(args: argparse.Namespace) -> list[str]:
    out = []
    for name in INPUT_ARGS:
        value = getattr(args, name, None)
        if name == "metric" and isinstance(value, str):
            value = value.rpartition(":")[0] or value  # file.py:function reads file.py
        if isinstance(value, str | Path) and str(value):
            out.append(str(value))
    return out


def guard_outputs(args: argparse.Namespace, outputs: list[tuple[str | Path, str, str]]) -> None:
    """Check each ``(path, kind, what)`` against the run's inputs and the outputs before it."""
    seen = run_inputs(args)
    for path, kind, what in outputs:
        check_output(path, kind, seen, what=what)
        seen.append(str(path))
