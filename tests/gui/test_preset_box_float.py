"""The preset box says a model opened from a file is all float, not "(mixed plan)".

A model file opens with every layer float; the box showed "(mixed plan)", as if some plan
had been applied (seen opening PP-OCRv5's models, tests/real/test_real_vision5.py).
"""

from __future__ import annotations

from pathlib import Path

from bitlens.core.plan import Plan
from bitlens.gui.layer_table import ALL_FLOAT, MIXED
from tests.gui.conftest import open_model, wait_idle


def test_an_all_float_plan_is_named_so(qtbot, window, cnn_path: Path) -> None:
    open_model(qtbot, window, cnn_path)
    doc, box = window.document, window.table.preset_combo
    assert doc.plan is not None and all(c.is_float for c in doc.plan.choices.values())
    assert box.currentIndex() == -1 and box.placeholderText() == ALL_FLOAT
    assert not window.table.preset_all.isEnabled()
    window.set_weight_format(doc.info.layer_names[0], "int4 sym ch")
    wait_idle(qtbot, window)
    assert box.currentIndex() == -1 and box.placeholderText() == MIXED
    doc.replace_plan(Plan.float(doc.info), "float")
    wait_idle(qtbot, window)
    assert box.placeholderText() == ALL_FLOAT
