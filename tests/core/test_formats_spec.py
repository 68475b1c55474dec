"""Format names: every valid format round-trips through its name; bad names and
impossible combinations raise a FormatError that names the problem."""

from __future__ import annotations

import itertools

import pytest

from bitlens.core.errors import BitlensError, FormatError
from bitlens.core.formats import (
    FLOAT_KINDS,
    INSPECT_LADDER,
    Family,
    Format,
    Granularity,
    RangeMethod,
    parse_format,
)

_GRANULARITY_TOKENS = ("", "ch", "ch0", "ch3", "blk32", "blk16@1", "blk2@0", "blk7@4")
_RANGE_TOKENS = ("", "minmax", "mse", "p99.9", "p99.99", "p99.99999", "p50", "p100")


def _candidate_names() -> list[str]:
    """Every head with every granularity and range token; invalid ones are skipped later."""
    heads: list[str] = []
    for bits in (2, 3, 4, 5, 6, 7, 8, 16):
        for sign in ("", "u"):
            for sym in ("sym", "asym", "sym narrow"):
                heads.append(f"{sign}int{bits} {sym}")
    heads += [*FLOAT_KINDS, "tern", "bin"]
    heads += [f"{p}{b}" for p in ("nf", "km", "log") for b in range(2, 9)]
    return [
        " ".join(t for t in (h, g, r) if t)
        for h, g, r in itertools.product(heads, _GRANULARITY_TOKENS, _RANGE_TOKENS)
    ]


def _valid_formats() -> list[Format]:
    out: list[Format] = []
    for text in _candidate_names():
        try:
            out.append(parse_format(text))
        except FormatError:
            continue
    return out


VALID = _valid_formats()


def test_the_candidate_list_is_broad() -> None:
    families = {f.family for f in VALID}
    assert families == set(Family)
    assert {f.granularity for f in VALID} == set(Granularity)
    assert {f.range_method for f in VALID} == set(RangeMethod)
    assert len(VALID) > 1500


def test_every_valid_format_round_trips_through_its_name() -> None:
    for f in VALID:
        again = parse_format(f.name)
        assert again == f, f.name
        assert again.name == f.name
        assert str(f) == f.name
        assert hash(again) == hash(f)


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("int8", "int8 sym"),
        ("INT8  Sym", "int8 sym"),
        ("uint8", "uint8 asym"),
        ("uint8 sym", "uint8 sym"),
        ("int4 sym blk32@1", "int4 sym blk32@1"),
        ("int4 blk32@0", "int4 sym blk32@0"),
        ("int8 sym narrow ch0", "int8 sym narrow ch0"),
        ("int3 asym mse", "int3 asym mse"),
        ("int8 minmax", "int8 sym"),
        ("int8 p99.90", "int8 sym p99.9"),
        ("float16", "fp16"),
        ("float32", "fp32"),
        ("float64", "fp64"),
        ("fp8e4m3", "fp8e4m3fn"),
        ("fp8e5m2 ch0", "fp8e5m2 ch0"),
        ("tern ch0", "tern ch0"),
        ("bin", "bin"),
        ("nf4 blk64", "nf4 blk64"),
        ("km4 ch", "km4 ch"),
        ("log4", "log4"),
        ("int8 sym asym", "int8 asym"),  # the last of two conflicting tokens wins
    ],
)
def test_typed_spellings_parse_to_the_canonical_name(typed: str, canonical: str) -> None:
    assert parse_format(typed).name == canonical


def test_parse_accepts_a_format_and_returns_it() -> None:
    f = parse_format("int4 sym ch0")
    assert parse_format(f) is f


def test_the_inspect_ladder_parses() -> None:
    fmts = [parse_format(n) for n in INSPECT_LADDER]
    assert [f.bits for f in fmts] == sorted((f.bits for f in fmts), reverse=True)


@pytest.mark.parametrize(
    ("name", "qmin", "qmax"),
    [
        ("int8 sym", -128, 127),
        ("int8 sym narrow", -127, 127),
        ("uint8 asym", 0, 255),
        ("uint8 sym", 0, 255),
        ("int4 asym", -8, 7),
        ("uint4", 0, 15),
        ("int2 sym", -2, 1),
        ("int2 sym narrow", -1, 1),
        ("int16 sym", -32768, 32767),
        ("uint16", 0, 65535),
    ],
)
def test_integer_code_ranges(name: str, qmin: int, qmax: int) -> None:
    f = parse_format(name)
    assert (f.qmin, f.qmax) == (qmin, qmax)


@pytest.mark.parametrize("name", ["fp16", "nf4", "tern", "bin", "km4", "log4"])
def test_code_range_of_a_non_integer_format_raises(name: str) -> None:
    with pytest.raises(FormatError, match="no integer code range"):
        _ = parse_format(name).qmin


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("int8 foo", "foo"),
        ("float8", "float8"),
        ("fp8", "fp8"),
        ("int8 ch-1", "ch-1"),
        ("int8 blk", "blk"),
        ("int8 blk32@", "blk32@"),
        ("int8 @1", "@1"),
        ("int8 sym p", "p"),
        ("int8 sym p99%", "p99%"),
        ("nf", "nf"),
        ("km", "km"),
        ("int", "int"),
        ("uint8 signed", "signed"),
        ("ternary", "ternary"),
        ("int8,sym", "int8,sym"),
    ],
)
def test_bad_tokens_are_named(name: str, bad: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_format(name)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("name", ["", "   "])
def test_empty_names_raise(name: str) -> None:
    with pytest.raises(FormatError, match="empty"):
        parse_format(name)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("int9", "width 9"),
        ("int1", "width 1"),
        ("int32", "width 32"),
        ("uint12", "width 12"),
        ("nf9", "width 9"),
        ("km1", "width 1"),
        ("log16", "width 16"),
        ("uint8 narrow", "narrow"),
        ("uint8 sym narrow", "narrow"),
        ("int8 asym narrow", "narrow"),
        ("nf4 narrow", "narrow"),
        ("fp8e4m3fn narrow", "narrow"),
        ("bin blk32", "per tensor or per channel"),
        ("tern blk32@1", "per tensor or per channel"),
        ("km4 blk64", "per tensor or per channel"),
        ("fp16 ch0", "plain cast"),
        ("bf16 blk32", "plain cast"),
        ("fp32 mse", "plain cast"),
        ("fp16 p99", "plain cast"),
        ("bin mse", "binary"),
        ("bin p99", "binary"),
        ("tern p99.9", "ternary"),
        ("km4 mse", "k-means"),
        ("km4 asym", "symmetric"),
        ("nf4 asym", "symmetric"),
        ("tern asym", "symmetric"),
        ("fp8e5m2 asym", "symmetric"),
        ("int8 blk1", "block size"),
        ("int8 blk0@1", "block size"),
        ("int8 p49", "percentile"),
        ("int8 p101", "percentile"),
    ],
)
def test_impossible_combinations_raise(name: str, reason: str) -> None:
    with pytest.raises(FormatError) as info:
        parse_format(name)
    msg = str(info.value)
    assert repr(name) in msg  # the whole name the user typed
    assert reason in msg


def test_format_errors_are_user_errors() -> None:
    with pytest.raises(BitlensError):
        parse_format("int9")
    with pytest.raises(ValueError):
        parse_format("int9")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"family": Family.INT, "bits": 8, "axis": 0},  # per tensor with an axis
        {"family": Family.INT, "bits": 8, "block_size": 32},  # block size, no blocks
        {"family": Family.INT, "bits": 8, "granularity": Granularity.CHANNEL, "axis": -1},
        {"family": Family.INT, "bits": 8, "float_kind": "fp16"},
        {"family": Family.FLOAT, "bits": 8, "float_kind": "fp16"},
        {"family": Family.FLOAT, "bits": 16, "float_kind": "fp12"},
        {"family": Family.FLOAT, "bits": 16},
        {"family": Family.TERNARY, "bits": 3},
        {"family": Family.BINARY, "bits": 2},
        {"family": "integer", "bits": 8},
        {"family": Family.INT, "bits": 8, "granularity": "rows"},
        {"family": Family.INT, "bits": 8, "range_method": "kl"},
        {"family": Family.INT, "bits": 8, "range_method": RangeMethod.PERCENTILE,
         "percentile": float("nan")},
    ],
)
def test_direct_construction_is_validated(kwargs: dict[str, object]) -> None:
    with pytest.raises(FormatError, match="invalid format"):
        Format(**kwargs)  # type: ignore[arg-type]


def test_enum_fields_given_as_strings_are_coerced() -> None:
    f = Format(family="int", bits=4, granularity="channel", axis=0, range_method="mse")  # type: ignore[arg-type]
    assert f == parse_format("int4 sym ch0 mse")
    assert f.family is Family.INT


def test_an_unused_percentile_does_not_change_the_format() -> None:
    # The percentile only matters for the percentile method; otherwise two
    # formats that behave identically must compare (and name) equal.
    f = Format(Family.INT, 8, percentile=97.0)
    assert f == parse_format("int8 sym")
    assert parse_format(f.name) == f


def test_with_axis_binds_channel_and_block_but_not_tensor() -> None:
    assert parse_format("int4 sym ch").with_axis(1).name == "int4 sym ch1"
    assert parse_format("int4 sym blk32").with_axis(0).name == "int4 sym blk32@0"
    assert parse_format("int4 sym").with_axis(1).name == "int4 sym"
    assert parse_format("nf4 blk64 mse").with_axis(2) == parse_format("nf4 blk64@2 mse")


def test_has_scale_and_lut_flags() -> None:
    assert not parse_format("fp16").has_scale
    assert not parse_format("fp64").has_scale
    assert parse_format("fp8e4m3fn").has_scale
    assert parse_format("int8").has_scale
    assert parse_format("nf4").is_lut and parse_format("km3").is_lut
    assert parse_format("log4").is_lut and not parse_format("int4").is_lut
