"""Render resources/icons/bitlens.svg to bitlens.png (256 px) with Qt's SVG renderer.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python resources/scripts/make_icon.py
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "icons"


def main() -> None:
    app = QGuiApplication([])
    image = QImage(256, 256, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    QSvgRenderer(str(ICONS / "bitlens.svg")).render(painter)
    painter.end()
    image.save(str(ICONS / "bitlens.png"))
    del app


if __name__ == "__main__":
    main()
