"""The search's peak memory on a model (bench_search.py ``--memory-only``).

Each search runs as the user runs it, ``bitlens search MODEL --data D -o plan.json --json``
with default options, in a process of its own; its peak RSS (``ru_maxrss`` of that child,
from ``os.wait4``) is printed above the RSS of an interpreter that only imports Bitlens's
command line and its libraries, and over the model file's size, with the child's CPU time,
its plan's bytes and error. ``--code DIR ...`` runs the same search with each DIR first on
the child's ``PYTHONPATH`` (another checkout's ``app``: before/after), alternated over
``--rounds`` rounds, so that a loaded machine affects both alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

MIB = 1 << 20
HERE = Path(__file__).resolve().parent.parent / "app"


def _child(cmd: Sequence[str], code: Path) -> tuple[int, float, float, str, str]:
    """(peak RSS bytes, CPU seconds, wall seconds, stdout, stderr) of ``cmd`` as a child."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, use = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:4])}... failed: {err.read()[-1500:]}")
        # ru_maxrss is in KiB on Linux (getrusage(2))
        return use.ru_maxrss * 1024, use.ru_utime + use.ru_stime, wall, out.read(), err.read()


def libraries_rss(code: Path) -> int:
    """Peak RSS of an interpreter that imports the command line, ONNX Runtime and numpy."""
    imp = "import bitlens.cli, bitlens.cli.search, onnxruntime, numpy, onnx"
    return _child([sys.executable, "-c", imp], code)[0]


def search_row(model: Path, data: Path, code: Path, extra: Sequence[str] = ()) -> dict:
    """One default search of ``model`` on ``data`` with ``code``'s Bitlens, measured."""
    with tempfile.TemporaryDirectory(prefix="bench-search-memory-") as tmp:
        cmd = [sys.executable, "-m", "bitlens", "search", str(model), "--data", str(data),
               "-o", str(Path(tmp) / "plan.json"), "--json", *extra]  # fmt: skip
        peak, cpu, wall, out, _ = _child(cmd, code)
    res = json.loads(out)
    return {
        "peak": peak,
        "cpu": cpu,
        "wall": wall,
        "bytes": res["best"]["file_bytes"],
        "error": res["best"]["error"],
        "evaluations": res["evaluations"],
        "stated": res.get("search_memory"),
    }


def bench_memory(
    model: Path, data: Path, codes: Sequence[Path], rounds: int = 1, extra: Sequence[str] = ()
) -> None:
    size = model.stat().st_size
    print(f"{model.name}: {size / MIB:.1f} MiB file, data {data.name}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    for r in range(rounds):
        for code in codes:
            libs = libraries_rss(code)
            row = search_row(model, data, code, extra)
            above = row["peak"] - libs
            print(
                f"  round {r + 1} {code}: search peak RSS {row['peak'] / MIB:.0f} MiB, "
                f"{above / MIB:.0f} MiB above the libraries' {libs / MIB:.0f} "
                f"({above / size:.1f}x the model file); CPU {row['cpu']:.1f} s, wall "
                f"{row['wall']:.0f} s; {row['evaluations']} evaluations; plan "
                f"{row['bytes']} B, error {row['error']:.6g}; load "
                f"{os.getloadavg()[0]:.1f}"
                + ("" if row["stated"] is None else f"; bound {row['stated'] / MIB:.0f} MiB"),
                flush=True,
            )
