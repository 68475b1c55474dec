"""The sweep view says which layers changed no output at any format because the feeds
never ran them (core/unrun_layers.py): their rows read "inf" even at binary weights.

    cond ─> If ─> then_branch: LSTM (then_lstm)  /  else_branch: LSTM (else_lstm)
"""

from __future__ import annotations

import math

import onnx

from bitlens.core.results import SweepEntry, TensorError
from tests import builders
from tests.gui.conftest import open_model


def _entry(layer: str, fmt: str, sqnr_db: float) -> SweepEntry:
    exact = math.isinf(sqnr_db)
    err = TensorError(0.0 if exact else 1e-3, sqnr_db, 1.0 if exact else 0.99, 0.0, 0.0)
    return SweepEntry(layer, fmt, err, 100)


def test_sweep_view_names_the_layers_the_feeds_never_ran(qtbot, window, tmp_path) -> None:
    path = tmp_path / "if.onnx"
    onnx.save(builders.lstm_in_if(), str(path))
    open_model(qtbot, window, path)
    ran = [_entry("then_lstm", f, s) for f, s in (("int8 sym ch", 40.0), ("bin ch", 3.0))]
    never = [_entry("else_lstm", f, math.inf) for f in ("int8 sym ch", "bin ch")]
    window.sweep.show_entries(ran + never)
    note = window.sweep.note.text()
    assert "1 layer(s) in If/Loop bodies changed no output" in note and "'else_lstm'" in note
    assert "then_lstm" not in note
    window.sweep.show_entries(ran)  # every layer ran: nothing to say
    assert "If/Loop" not in window.sweep.note.text()
