"""Render ``resources/icons/bitlens.svg`` to ``bitlens.png`` (256 px) with Qt's SVG renderer.

Uses only what the app already depends on (PySide6-Essentials ships QtSvg)::

    QT_QPA_PLATFORM=offscreen /work/venv/bin/python resources/scripts/render_icon.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

ICONS = Path(__file__).resolve().parents[1] / "icons"
SIZE = 256


def main() -> None:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(ICONS / "bitlens.svg"))
    if not renderer.isValid():
        raise SystemExit("bitlens.svg is not a valid SVG for Qt")
    image = QImage(SIZE, SIZE, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    fd, tmp = tempfile.mkstemp(dir=ICONS, prefix=".bitlens.", suffix=".png")
    os.close(fd)
    try:
        if not image.save(tmp, "PNG"):
            raise SystemExit("could not write the PNG")
        os.chmod(tmp, 0o644)
        os.replace(tmp, ICONS / "bitlens.png")
    finally:
        Path(tmp).unlink(missing_ok=True)
    del app


if __name__ == "__main__":
    main()
