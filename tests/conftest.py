from __future__ import annotations

import os

# GUI tests must never need a display; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
