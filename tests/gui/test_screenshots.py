"""Screenshots of the window on the bundled samples, light and dark, for a human to look at.

They land in ``screenshots/`` (git-ignored). The assertions check what a
screenshot cannot: that each pane drew something rather than staying empty.
"""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QApplication

from bitlens.gui.theme import apply_theme
from tests.gui.conftest import screenshot, wait_idle


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
        timeout=30_000,
    )
    window.docks["outputs"].raise_()  # outputs are computed while their dock shows
    qtbot.waitUntil(lambda: bool(window.document.outputs), timeout=30_000)
    wait_idle(qtbot, window)
    window.docks["detail"].raise_()
    QApplication.processEvents()


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_screenshot_digits(qtbot, window, theme: str, restore_theme) -> None:
    window.set_theme(theme)
    window.resize(1500, 950)
    layer = "/conv2/Conv"
    _prepare(qtbot, window, "digits_cnn", layer)
    assert window.detail.sandbox.rowCount() > 10
    assert window.plots.error_bars.opts["height"].size > 0
    screenshot(window, f"main_digits_{theme}")
    window.docks["outputs"].raise_()
    QApplication.processEvents()
    screenshot(window.outputs, f"outputs_digits_{theme}")


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
    qtbot.waitUntil(lambda: window.message_bar.isVisible() and not window.runner.busy)
    window.message_bar.details_button.setChecked(True)
    QApplication.processEvents()
    assert window.stack.currentWidget() is window.welcome
    screenshot(window, "welcome_with_error")
    window.open_sample("speech_kws")
    wait_idle(qtbot, window)
    with qtbot.waitSignal(window.controller.sweepFinished, timeout=30_000):
        window.controller.run_sweep(["int8 sym ch", "int4 sym ch", "int2 sym ch", "tern ch"])
    wait_idle(qtbot, window)
    QApplication.processEvents()
    assert window.sweep.table.rowCount() == 3 * 4
    screenshot(window, "sweep_speech")
