"""Show a folder in the system's file manager, also from the standalone bundle.

A PyInstaller bundle on Linux starts with ``LD_LIBRARY_PATH`` pointing into the
bundle (the original value kept in ``LD_LIBRARY_PATH_ORIG``, or none at all), and
a program it starts inherits that: ``xdg-open`` and the file manager would load
the bundle's Qt and ICU instead of the system's, and may fail to start. So from
a bundle the opener runs with the variable as it was before the bundle started,
as PyInstaller's documentation advises:
https://pyinstaller.org/en/stable/runtime-information.html#ld-library-path-libpath-considerations
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QProcess, QProcessEnvironment, QUrl
from PySide6.QtGui import QDesktopServices

# the bundle's loader sets these (LIBPATH on AIX) and keeps the old value in NAME_ORIG
BUNDLE_SET = ("LD_LIBRARY_PATH", "LIBPATH")


def opener_environment(env: Mapping[str, str], frozen: bool) -> dict[str, str]:
    """The environment for a program this app starts: ``env`` itself when run from
    source; from a bundle, with each library path back to its value before the bundle
    (unset where it was unset)."""
    out = dict(env)
    if frozen:
        for name in BUNDLE_SET:
            original = env.get(f"{name}_ORIG")
            if original is not None:
                out[name] = original
            else:
                out.pop(name, None)
    return out


def _start_detached(program: str, args: list[str], env: Mapping[str, str]) -> bool:
    proc = QProcess()
    proc.setProgram(program)
    proc.setArguments(args)
    qenv = QProcessEnvironment()
    for key, value in env.items():
        qenv.insert(key, value)
    proc.setProcessEnvironment(qenv)
    started = proc.startDetached()
    return bool(started[0] if isinstance(started, tuple) else started)


def open_folder(folder: Path, environ: Mapping[str, str] | None = None) -> bool:
    """Open ``folder`` in the file manager; False when no opener could be started."""
    frozen = bool(getattr(sys, "frozen", False))
    if frozen and sys.platform.startswith(("linux", "freebsd")):
        env = opener_environment(os.environ if environ is None else environ, frozen=True)
        return _start_detached("xdg-open", [str(folder)], env)
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
