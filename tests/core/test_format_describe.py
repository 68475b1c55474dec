"""Format descriptions come from the spec: every family, granularity, range method and
offered name is described, and the cost matches the storage accounting."""

from __future__ import annotations

import pytest

from bitlens.core.formats import Granularity, RangeMethod, parse_format, storage_bits
from bitlens.core.formats.describe import (
    EXAMPLE_SHAPE,
    FAMILY_GRID,
    GRANULARITY_TEXT,
    MODIFIERS,
    RANGE_TEXT,
    describe_format,
    format_reference,
)
from bitlens.core.formats.registry import family_names
from bitlens.core.formats.spec import FLOAT_KINDS
from bitlens.core.plan import ACTIVATION_CHOICES, WEIGHT_CHOICES


def test_every_enum_member_is_described() -> None:
    assert set(FAMILY_GRID) == set(family_names())
    assert set(GRANULARITY_TEXT) == set(Granularity)
    assert set(RANGE_TEXT) == set(RangeMethod)


@pytest.mark.parametrize("name", sorted(set(WEIGHT_CHOICES) | set(ACTIVATION_CHOICES)))
def test_offered_formats_are_described_with_their_real_cost(name: str) -> None:
    d = describe_format(name)
    f = parse_format(name)
    assert d.name == f.name and d.bits == f.bits
    axis = 1 if f.granularity is Granularity.BLOCK else 0
    bound = f if f.axis is not None else f.with_axis(axis)
    n = EXAMPLE_SHAPE[0] * EXAMPLE_SHAPE[1]
    assert d.bits_per_value == pytest.approx(storage_bits(bound, EXAMPLE_SHAPE) / n)
    assert d.bits_per_value >= d.bits  # the scales and tables cost something, never less
    assert len(d.tooltip().splitlines()) == 4


def test_levels_follow_the_grid() -> None:
    assert describe_format("int8 sym").levels == 256
    assert describe_format("int8 sym narrow").levels == 255
    assert describe_format("uint4 asym").levels == 16
    assert describe_format("tern ch").levels == 3
    assert describe_format("bin ch").levels == 2
    assert describe_format("fp16").levels is None
    # int4 per block of 32: 4 bits per code plus one float32 scale per 32 values
    assert describe_format("int4 sym blk32").bits_per_value == pytest.approx(4 + 32 / 32)


def test_reference_covers_every_family_and_modifier() -> None:
    rows = dict(format_reference())
    for kind in FLOAT_KINDS:
        assert kind in rows
    for word in ("sym", "asym", "narrow", "mse", "tern", "bin"):
        assert word in rows
    # every modifier example spelled in the reference parses as part of a name
    for example, _meaning in MODIFIERS:
        for token in example.replace("…", "").split(", "):
            if token:
                parse_format(f"int4 {token}" if token != "sym" else "int4 sym")
