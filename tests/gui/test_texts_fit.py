"""At 1280 px wide the status bar and the error-kind explanation fit: long lines end in
"…" with the whole text in their tooltip, instead of running off the window (issue 15)."""

from __future__ import annotations

from PySide6.QtWidgets import QApplication

from bitlens.gui.elided_label import ElidedLabel
from tests.gui.conftest import open_model


def test_status_bar_and_explanations_fit_1280(qtbot, window, cnn_path) -> None:
    open_model(qtbot, window, cnn_path)  # random inputs: the long orange warning shows
    window.resize(1280, 720)
    QApplication.processEvents()
    assert window.width() == 1280
    status = window.status
    labels = [status.size_label, status.bits_label, status.output_label, status.data_label,
              status.providers_label]  # fmt: skip
    assert "Random inputs" in status.data_label.text()
    bar = window.statusBar()
    for label in labels:
        right = label.mapTo(window, label.rect().topRight()).x()
        assert right <= bar.width(), (label.objectName(), right)
        if label.elided:
            assert label.shown_text().endswith("…")
            assert label.text() in label.toolTip()  # the whole line, on hover
    # the short figures are never cut
    for label in (status.size_label, status.bits_label, status.providers_label):
        assert not label.elided, label.text()
    help_line = window.plots.kind_help
    assert isinstance(help_line, ElidedLabel)
    window.docks["plots"].raise_()
    QApplication.processEvents()
    assert help_line.elided  # the accumulated-error explanation is longer than 1280 allows
    assert help_line.shown_text().endswith("…")
    assert window.document.error_kind.explanation in help_line.toolTip()


def test_elided_label_keeps_its_own_tooltip(qtbot) -> None:
    label = ElidedLabel("a fairly long line of status text that will not fit")
    qtbot.addWidget(label)
    label.setToolTip("what it means")
    label.resize(60, 20)
    label.show()
    assert label.elided and label.toolTip().startswith(label.text())
    assert label.toolTip().endswith("what it means")
    label.resize(2000, 20)
    assert not label.elided and label.toolTip() == "what it means"
    assert label.minimumSizeHint().width() < 100  # it never forces its parent wider
    whole = ElidedLabel("12.00 bits/weight", shrink=False)
    qtbot.addWidget(whole)
    assert whole.minimumSizeHint().width() >= whole.fontMetrics().horizontalAdvance(whole.text())
