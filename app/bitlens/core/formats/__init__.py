"""Numeric formats from fp64 down to 1 bit: specs, quantizers, storage accounting.

Each format family is one object registered in :mod:`bitlens.core.formats.registry`.
"""

from __future__ import annotations

from bitlens.core.formats.codec import (
    QTensor,
    check_finite,
    dequantize,
    fake_quantize,
    fitted,
    quantize,
    storage_bits,
    storage_bytes,
)
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.registry import family_of
from bitlens.core.formats.spec import (
    FLOAT_KINDS,
    INSPECT_LADDER,
    SWEEP_LADDER,
    Family,
    Format,
    Granularity,
    RangeMethod,
    format_name,
    parse_format,
)

__all__ = [
    "FLOAT_KINDS",
    "INSPECT_LADDER",
    "SWEEP_LADDER",
    "Family",
    "Format",
    "Granularity",
    "Grouping",
    "QTensor",
    "RangeMethod",
    "check_finite",
    "dequantize",
    "fake_quantize",
    "family_of",
    "fitted",
    "format_name",
    "parse_format",
    "quantize",
    "storage_bits",
    "storage_bytes",
]
