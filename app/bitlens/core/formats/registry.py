"""Every format family Bitlens knows, registered in one place.

The parser, codec, engine, exporter, views and Help look a format's family
up here (:func:`family_of`) rather than switching on it. To add a format:
write one module with a :class:`~bitlens.core.formats.family.FormatFamily`
subclass (see ``families/`` and the README's "Adding a format") and add its
instance(s) to :data:`FAMILIES` below; ``tests/core/test_format_registry.py``
then runs every part of it on its examples.
"""

from __future__ import annotations

from functools import cache

from bitlens.core.errors import FormatError
from bitlens.core.formats.families import floating, integer, kmeans, mx, nvfp4, signs, tables
from bitlens.core.formats.family import FormatFamily

# The order is the order names are offered in the table, the sandbox and the Help.
FAMILIES: tuple[FormatFamily, ...] = (
    floating.FloatFamily(),
    integer.IntFamily(),
    tables.NormalFloatFamily(),
    kmeans.KMeansFamily(),
    tables.Log2Family(),
    signs.TernaryFamily(),
    signs.BinaryFamily(),
    *mx.FAMILIES,  # OCP microscaling: mxfp8_e4m3, mxfp8_e5m2, mxfp6_e3m2, mxfp6_e2m3, mxfp4, mxint8
    nvfp4.NVFP4Family(),
)


@cache
def _by_name() -> dict[str, FormatFamily]:
    table: dict[str, FormatFamily] = {}
    for fam in FAMILIES:
        if str(fam.family) in table:
            raise FormatError(f"format family {fam.family!r} is registered twice")
        table[str(fam.family)] = fam
    return table


def family_names() -> tuple[str, ...]:
    return tuple(_by_name())


def get(name: str) -> FormatFamily:
    """The family registered as ``name`` (a Format's ``family`` value)."""
    try:
        return _by_name()[str(name)]
    except KeyError:
        known = ", ".join(_by_name())
        raise FormatError(f"invalid format: unknown family {name!r} (known: {known})") from None


def family_of(fmt: object) -> FormatFamily:
    """The family object of a :class:`Format`."""
    return get(fmt.family)  # type: ignore[attr-defined]


def parse_head(head: str) -> dict[str, object] | None:
    """Format fields for a name's first word, from the first family that reads it."""
    for fam in FAMILIES:
        kw = fam.parse_head(head)
        if kw is not None:
            return kw
    return None


def weight_choices() -> tuple[str, ...]:
    """The weight formats the table and the sandbox offer, family by family."""
    return tuple(name for fam in FAMILIES for name in fam.weight_choices)
