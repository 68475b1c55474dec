"""The app icon: a valid SVG and its 256 px PNG render (read without Qt)."""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

ICONS = Path(__file__).resolve().parents[2] / "resources" / "icons"


def test_svg_is_well_formed_and_square() -> None:
    root = ET.parse(ICONS / "bitlens.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.get("viewBox") == "0 0 256 256"


def test_png_render_is_256_px_rgba() -> None:
    data = (ICONS / "bitlens.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    # IHDR is the first chunk: length, type, width, height, depth, colour type
    _, kind, width, height, depth, colour = struct.unpack(">I4sIIBB", data[8:26])
    assert (kind, width, height, depth, colour) == (b"IHDR", 256, 256, 8, 6)
