"""Open Folder from the standalone bundle: the file manager starts with the library
path the user had, not the bundle's (PyInstaller's LD_LIBRARY_PATH_ORIG)."""

from __future__ import annotations

import sys
import time

from bitlens.gui import open_folder as opener


def test_from_source_the_environment_is_unchanged() -> None:
    env = {"LD_LIBRARY_PATH": "/opt/cuda/lib", "HOME": "/home/u"}
    assert opener.opener_environment(env, frozen=False) == env


def test_from_a_bundle_the_library_path_is_the_original() -> None:
    env = {"LD_LIBRARY_PATH": "/app/_internal", "LD_LIBRARY_PATH_ORIG": "/opt/cuda/lib",
           "HOME": "/home/u"}  # fmt: skip
    out = opener.opener_environment(env, frozen=True)
    assert out["LD_LIBRARY_PATH"] == "/opt/cuda/lib" and out["HOME"] == "/home/u"
    assert env["LD_LIBRARY_PATH"] == "/app/_internal"  # the app's own is left alone
    # unset before the bundle started: unset for the opener
    unset = opener.opener_environment({"LD_LIBRARY_PATH": "/app/_internal", "LIBPATH": "/x"},
                                      frozen=True)  # fmt: skip
    assert "LD_LIBRARY_PATH" not in unset and "LIBPATH" not in unset


def test_open_folder_from_a_bundle_starts_xdg_open_with_that_environment(
    monkeypatch, tmp_path
) -> None:
    started = []
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(
        opener, "_start_detached", lambda prog, args, env: started.append((prog, args, env)) or True
    )
    env = {"LD_LIBRARY_PATH": "/app/_internal", "LD_LIBRARY_PATH_ORIG": "/usr/local/lib"}
    assert opener.open_folder(tmp_path, env)
    ((prog, args, child),) = started
    assert prog == "xdg-open" and args == [str(tmp_path)]
    assert child["LD_LIBRARY_PATH"] == "/usr/local/lib"


def test_start_detached_passes_only_the_given_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/app/_internal")  # this process's, not inherited
    out = tmp_path / "env.txt"
    ok = opener._start_detached(
        "/bin/sh", ["-c", f'printf %s "${{LD_LIBRARY_PATH-unset}}" > "{out}"'],
        {"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ok
    # the detached shell runs when the machine lets it: wait for what it writes, not for a
    # fixed time (5 s was a guess about how loaded the machine is)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.read_text() == "unset"
