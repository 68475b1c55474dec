"""Candidate formats: parsing the names, which a layer can take, the anchors measured."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bitlens.core.errors import BitlensError, PlanError, SearchError
from bitlens.core.formats import Family, Format, Granularity, parse_format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, validate_choice
from bitlens.core.search.options import FLOAT_NAME


def _parse_all(names: Iterable[str], what: str) -> list[Any]:
    out: list[Any] = []
    for name in names:
        if what == "activation" and name == FLOAT_NAME:
            out.append(None)
            continue
        try:
            out.append(parse_format(name))
        except BitlensError as exc:
            raise SearchError(f"{what} format {name!r}: {exc}") from None
    if not out:
        raise SearchError(f"no {what} formats to try")
    return out


def _anchors(cands: Sequence[tuple[int, float, Format]]) -> list[Format]:
    """Two formats measured for every layer: the smallest integer ones nearest 8 and 4 bits
    per weight (per-channel int8 and int4 with the default candidates; a codebook format
    of as many bits is smaller, but the integer grid is the one most formats resemble)."""
    if len(cands) <= 2:
        return [f for _, _, f in cands]
    picks: list[Format] = []
    for bits in (8, 4):
        best = min(
            cands, key=lambda c: (abs(c[2].bits - bits), c[2].family is not Family.INT, c[0])
        )[2]
        if best not in picks:
            picks.append(best)
    return picks


def _wider(fmt: Format, base: Format) -> bool:
    """Wider than the base: more bits, or as many but per channel (no integer kernel)."""
    if fmt.bits > base.bits:
        return True
    return fmt.bits == base.bits and fmt.granularity is Granularity.CHANNEL


def _fits(layer: Layer, fmt: Format) -> bool:
    try:
        validate_choice(layer, LayerChoice(None, fmt))
    except PlanError:
        return False
    return True


def _fits_weight(layer: Layer, fmt: Format) -> bool:
    try:
        validate_choice(layer, LayerChoice(fmt))
    except PlanError:
        return False
    return True
