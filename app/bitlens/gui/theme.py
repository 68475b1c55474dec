"""Light and dark palettes for the Fusion style, and the system default."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("system", "light", "dark")


def apply_theme(app: QApplication, name: str) -> None:
    """Switch the application palette; unknown names fall back to the system palette."""
    # Remember what the platform gave us, to go back to it.
    if not hasattr(app, "_bitlens_system"):
        app._bitlens_system = (app.style().name(), QPalette(app.palette()))  # type: ignore[attr-defined]
    style, palette = app._bitlens_system  # type: ignore[attr-defined]
    if name in ("dark", "light"):
        # Fusion follows the palette everywhere; native styles may ignore parts of it.
        app.setStyle("Fusion")
        app.setPalette(dark_palette() if name == "dark" else light_palette())
    else:
        app.setStyle(style)
        app.setPalette(palette)


def light_palette() -> QPalette:
    return _palette(
        window=QColor(239, 239, 239), base=QColor(255, 255, 255), text=QColor(20, 20, 20),
        button=QColor(232, 232, 232), highlight=QColor(48, 140, 198),
        alt_base=QColor(245, 245, 248), disabled=QColor(150, 150, 150), link=QColor(0, 90, 200),
    )  # fmt: skip


def dark_palette() -> QPalette:
    return _palette(
        window=QColor(45, 45, 48), base=QColor(30, 30, 32), text=QColor(230, 230, 230),
        button=QColor(58, 58, 62), highlight=QColor(42, 130, 218),
        alt_base=QColor(40, 40, 44), disabled=QColor(120, 120, 120), link=QColor(110, 170, 255),
    )  # fmt: skip


def _palette(
    *,
    window: QColor,
    base: QColor,
    text: QColor,
    button: QColor,
    highlight: QColor,
    alt_base: QColor,
    disabled: QColor,
    link: QColor,
) -> QPalette:
    p = QPalette()
    R = QPalette.ColorRole
    for role, color in (
        (R.Window, window), (R.WindowText, text), (R.Base, base), (R.AlternateBase, alt_base),
        (R.ToolTipBase, base), (R.ToolTipText, text), (R.PlaceholderText, disabled),
        (R.Text, text), (R.Button, button), (R.ButtonText, text), (R.BrightText, QColor("red")),
        (R.Link, link), (R.Highlight, highlight), (R.HighlightedText, QColor(255, 255, 255)),
        (R.Mid, button.darker(130)), (R.Dark, button.darker(160)), (R.Light, button.lighter(130)),
    ):  # fmt: skip
        p.setColor(role, color)
    G = QPalette.ColorGroup.Disabled
    for role in (R.WindowText, R.Text, R.ButtonText):
        p.setColor(G, role, disabled)
    return p
