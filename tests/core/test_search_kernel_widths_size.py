"""The search's size accounting of 2- to 7-bit, ternary and binary integer-kernel layers
(codes and zero points stored as n-bit packed streams, unpacked and Cast to int8 before their
DequantizeLinear, at the model's own opset) against the bytes of the real export. Before,
those widths were float layers and the accounting charged their folded format's nodes."""

from __future__ import annotations

from bitlens.core.engine import Engine
from tests.core.test_search_int4_kernel_size import _check, cnn  # noqa: F401 (fixture)

FORMATS = ("int8 sym ch", "int3 sym ch", "uint5 asym ch", "tern ch", "bin ch")


def test_narrow_kernel_layers_are_accounted_as_exported(cnn: Engine) -> None:  # noqa: F811
    # uint5 asym per channel: its zero points too are packed and unpacked per layer;
    # binary's three layers share 7 bytes fewer than its two smallest did
    _check(cnn, 17, {"int3 sym ch": 4, "uint5 asym ch": 4, "tern ch": 4, "bin ch": 8}, FORMATS)
