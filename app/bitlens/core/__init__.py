"""Qt-free core of Bitlens: load, quantize, evaluate, export.

Nothing under ``bitlens.core`` may import Qt (an import-linter contract in
``pyproject.toml`` and ``tests/core/test_no_qt.py`` enforce it), so the CLI,
scripts and a future search can use it headless.
"""

from __future__ import annotations
