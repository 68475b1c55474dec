"""Every module of ``bitlens.core`` imports on its own, as ``python -c "import M"`` would.

Importing each module in a fresh interpreter takes a minute on CI, so the check is in two
steps. First, from the source (ast), the module-level imports between bitlens modules (not
those under ``if TYPE_CHECKING:`` or inside functions; importing ``a.b`` also runs ``a``'s
``__init__``) give a graph whose cycles are the only places where the order of imports can
matter. Then one fresh interpreter imports every module once, and each module on a cycle again
alone, after dropping every ``bitlens`` module from ``sys.modules``, so a module that fails when
it is imported first (A imports B, which imports A while A is half-built) fails here too.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
CORE = APP / "bitlens" / "core"

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.machinery, json, sys

    # Each fresh import below runs the bodies of a hundred-odd modules again, in a new order;
    # compiling their unchanged sources again each time was half the test's CPU where
    # PYTHONDONTWRITEBYTECODE (or a read-only tree) leaves no .pyc to load. The code objects
    # are kept by file path, so every module body still runs anew, in the order it would.
    compiled = {}
    source_code = importlib.machinery.SourceFileLoader.get_code

    def get_code(self, fullname):
        if self.path not in compiled:
            compiled[self.path] = source_code(self, fullname)
        return compiled[self.path]

    importlib.machinery.SourceFileLoader.get_code = get_code

    everything, alone = json.loads(sys.argv[1])
    failed = {}
    for name in everything:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failed[name] = f"{type(exc).__name__}: {exc}"
    for name in alone:
        for mod in [m for m in sys.modules if m == "bitlens" or m.startswith("bitlens.")]:
            del sys.modules[mod]
        try:
            importlib.import_module(name)
        except Exception as exc:  # what the user would see, one line
            failed[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(failed))
    """
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(APP).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(tree: ast.Module, name: str, is_package: bool) -> set[str]:
    """bitlens modules ``name`` imports while it runs (not under TYPE_CHECKING or in defs)."""
    out: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                stack.extend(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend(node.body + node.orelse + node.finalbody)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name.split(".") if is_package else name.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join(pkg + ([node.module] if node.module else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # kept if a submodule
    return {m for m in out if m.startswith("bitlens")}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in CORE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges = set()
        for target in top_level_imports(tree, name, path.name == "__init__.py"):
            parts = target.split(".")
            # importing a.b.c runs a, a.b and a.b.c
            edges.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {m for m in edges if m in files and m != name}
    return graph


def on_cycles(graph: dict[str, set[str]]) -> set[str]:
    """Modules in a strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[str] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.update(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_core_module_imports_alone() -> None:
    graph = import_graph()
    alone = sorted(on_cycles(graph))
    # the engine package's __init__ imports its engine, which imports sibling modules
    assert "bitlens.core.engine" in alone
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(APP), os.environ.get("PYTHONPATH", "")]))
    arg = json.dumps([sorted(graph), alone])
    run = subprocess.run([sys.executable, "-c", SCRIPT, arg], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {}
