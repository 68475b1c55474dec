"""Every module of ``bitlens.core`` imports with Qt and its plotting stack unavailable.

Runs in a fresh interpreter where a meta-path finder refuses ``PySide6``,
``shiboken6``, ``pyqtgraph``, ``superqt`` and ``qtpy``, walks
``bitlens.core`` with pkgutil, imports each module, and checks that none of
those names reached ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
BLOCKED = ("PySide6", "shiboken6", "pyqtgraph", "superqt", "qtpy")

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    BLOCKED = {blocked!r}

    class QtBlocker:
        # First on sys.meta_path: refuses the GUI stack before any real finder.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"{{name}} is blocked in this test", name=name)
            return None

    sys.meta_path.insert(0, QtBlocker())
    for mod in list(sys.modules):
        if mod.split(".")[0] in BLOCKED:
            del sys.modules[mod]

    refused = []
    for name in BLOCKED:
        try:
            importlib.import_module(name)
        except ImportError:
            refused.append(name)

    import bitlens.core

    def onerror(name):
        raise ImportError(f"cannot walk {{name}}")

    imported = []
    for info in pkgutil.walk_packages(bitlens.core.__path__, "bitlens.core.", onerror=onerror):
        importlib.import_module(info.name)
        imported.append(info.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({{"refused": refused, "imported": imported, "leaked": leaked}}))
    """
).format(blocked=BLOCKED)


def test_core_imports_without_qt() -> None:
    env = {**os.environ, "PYTHONPATH": str(APP)}
    env.pop("QT_API", None)
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    # The blocker really blocks (otherwise the test would prove nothing).
    assert sorted(out["refused"]) == sorted(BLOCKED)
    imported = set(out["imported"])
    for expected in (
        "bitlens.core.formats",
        "bitlens.core.formats.codec",
        "bitlens.core.formats.spec",
        "bitlens.core.errors",
        "bitlens.core.metrics",
        "bitlens.core.results",
        "bitlens.core.model.types",
    ):
        assert expected in imported
    # Every module file under bitlens.core was walked.
    core = APP / "bitlens" / "core"
    on_disk = {
        "bitlens." + ".".join(p.relative_to(APP / "bitlens").with_suffix("").parts)
        for p in core.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert on_disk <= imported
    assert out["leaked"] == []
