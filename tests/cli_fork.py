"""``python -m bitlens ARGS`` in a child process, without paying the start-up for each one.

A fresh interpreter spends about a second of CPU importing numpy, onnx, ONNX Runtime and
Bitlens's core before the command starts; the suite runs a few hundred commands. Here one
server process imports Bitlens's command-line modules once, then forks a child for each
command: the child is a process of its own as before (its memory is returned when it ends,
its stdout and stderr are captured at the file-descriptor level, so ONNX Runtime's own
messages are seen too), it runs ``bitlens/__main__.py`` as ``-m`` does, in the caller's
working directory and environment, and exits as the interpreter would (``SystemExit``
codes, a traceback and 1 for an uncaught exception, ``atexit`` handlers, flushed streams).

When the caller's environment differs from the server's in anything but pytest's own
``PYTEST_CURRENT_TEST`` (what a library reads at import could differ), or when the server
cannot be used, the command runs in a fresh interpreter exactly as before.
``python -m bitlens`` as such is still started fresh by tests/core/test_cli_entry.py,
tests/gui/test_smoke.py and benchmarks/search_real.py (tests/real/search_vs_w8a8.py).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
_IGNORED = {"PYTEST_CURRENT_TEST"}  # set by pytest for each test; read by no library

# The server: preload, then per request line {"argv", "cwd", "env", "out", "err"} fork a
# child, report {"pid"} at once and {"code"} when it has ended.
_SERVER = r"""
import json, os, pkgutil, runpy, sys, traceback, importlib
control = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing of the server's reaches the pipe
sys.stdout = open(1, "w", closefd=False)
import bitlens.cli
for m in pkgutil.iter_modules(bitlens.cli.__path__, "bitlens.cli."):
    importlib.import_module(m.name)


def child(req):
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, req["out"]), (2, req["err"])):
        f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(f, fd)
        os.close(f)
    control.close()
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")
    sys.argv = ["-m", *req["argv"]]
    code = 0
    try:
        runpy.run_module("bitlens", run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # as the interpreter maps it
        c = exc.code
        if c is None:
            code = 0
        elif isinstance(c, int):
            code = c
        else:
            print(c, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        import atexit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code & 0xFF)


for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(req)
        finally:  # never back into this loop
            os._exit(70)
    control.write(json.dumps({"pid": pid}) + "\n")
    control.flush()
    _, status = os.waitpid(pid, 0)
    control.write(json.dumps({"code": os.waitstatus_to_exitcode(status)}) + "\n")
    control.flush()
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(APP)}


def _same(a: dict[str, str], b: dict[str, str]) -> bool:
    return {k: v for k, v in a.items() if k not in _IGNORED} == {
        k: v for k, v in b.items() if k not in _IGNORED
    }


class _Server:
    def __init__(self) -> None:
        self.env = _env()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, text=True,
        )  # fmt: skip
        self.buffer = ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _line(self, deadline: float | None) -> dict | None:
        import time

        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while "\n" not in self.buffer:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(fd, 65536).decode()
            if not chunk:
                raise EOFError("the bitlens fork server ended")
            self.buffer += chunk
        line, self.buffer = self.buffer.split("\n", 1)
        return json.loads(line)

    def run(self, args: list[str], env: dict[str, str], timeout: float | None):
        import time

        with tempfile.TemporaryDirectory(prefix="bitlens-cli-") as tmp:
            out, err = Path(tmp) / "out", Path(tmp) / "err"
            req = {"argv": args, "cwd": os.getcwd(), "env": env, "out": str(out), "err": str(err)}
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(req) + "\n")
            self.proc.stdin.flush()
            deadline = None if timeout is None else time.monotonic() + timeout
            pid = self._line(None)["pid"]  # type: ignore[index]
            done = self._line(deadline)
            if done is None:  # as subprocess.run: kill the child, then raise
                os.kill(pid, signal.SIGKILL)
                self._line(None)
                raise subprocess.TimeoutExpired(
                    [sys.executable, "-m", "bitlens", *args], timeout,
                    output=out.read_text(errors="replace"), stderr=err.read_text(errors="replace"),
                )  # fmt: skip
            cmd = [sys.executable, "-m", "bitlens", *args]
            return subprocess.CompletedProcess(cmd, done["code"], out.read_text(), err.read_text())

    def close(self) -> None:
        if self.alive():
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_server: _Server | None = None
_lock = threading.Lock()


def _close() -> None:
    if _server is not None:
        _server.close()


atexit.register(_close)


def run_bitlens(*args: str, timeout: float | None = 120) -> subprocess.CompletedProcess[str]:
    """What ``subprocess.run([python, -m, bitlens, *args], capture_output=True, text=True,
    env={**os.environ, PYTHONPATH: app}, timeout=timeout)`` returns, from a forked child."""
    global _server
    env = _env()
    with _lock:
        if sys.platform.startswith("linux"):
            if _server is None or not _server.alive():
                _server = _Server()
            if _same(env, _server.env):
                try:
                    return _server.run(list(args), env, timeout)
                except EOFError:  # it could not start (a module that fails to import):
                    pass  # a fresh interpreter shows the user's error as it is
    return subprocess.run(
        [sys.executable, "-m", "bitlens", *args],
        capture_output=True, text=True, env=env, timeout=timeout,
    )  # fmt: skip
