"""Running fuzz cases in a worker subprocess, with a per-case timeout and restarts."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.fuzz import ROOT, Case, Report, Result


# -- the runner ------------------------------------------------------------------------------------
class Runner:
    """Feeds cases to a worker subprocess, restarting it after a hang or a death."""

    def __init__(self, timeout: float = 10.0, budget: str = "512M", start_timeout: float = 120.0):
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.env = {
            **os.environ,
            "BITLENS_MEMORY_BUDGET": budget,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "app"), str(ROOT), os.environ.get("PYTHONPATH", "")]
            ),
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        self.proc: subprocess.Popen[str] | None = None

    def _start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fuzz.worker"], cwd=ROOT, env=self.env, text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        line = self._read(proc, self.start_timeout)
        if line is None or not json.loads(line).get("ready"):
            proc.kill()
            raise RuntimeError("the fuzz worker did not start")
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen[str], timeout: float) -> str | None:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = proc.stdout.readline()
        return line or None

    def run(self, case: Case) -> Result:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        proc = self.proc
        assert proc.stdin is not None
        t0 = time.perf_counter()
        try:
            proc.stdin.write(json.dumps(case.__dict__) + "\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self.proc = None
            return Result(case, "died", "worker gone before the case")
        line = self._read(proc, self.timeout)
        if line is None:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
                self.proc = None
                return Result(case, "hang", f"no answer in {self.timeout:.0f} s")
            self.proc = None
            code = proc.returncode
            kind = "memory" if code in (-9,) else "died"
            return Result(case, kind, f"worker exited with {code}", time.perf_counter() - t0)
        ans = json.loads(line)
        if ans.get("restart"):
            self.close()
        return Result(case, ans["outcome"], ans["message"], ans["seconds"])

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def run_cases(
    cases: Iterator[Case], runner: Runner, on_result: Callable[[Result], None] | None = None
) -> Report:
    report = Report()
    for case in cases:
        res = runner.run(case)
        report.results.append(res)
        p = Path(case.path)
        shutil.rmtree(p if p.is_dir() else p.parent, ignore_errors=True)  # keep the scratch small
        if on_result is not None:
            on_result(res)
    return report
