"""What a format family is: one object with every part the rest of Bitlens needs.

A family (integers, floats, NF, k-means, MX, ...) is a :class:`FormatFamily`
registered once in :mod:`bitlens.core.formats.registry`. The parser, the
codec, the engine's activation quantizers, the exporter, the views and the
Help text look the family of a :class:`~bitlens.core.formats.spec.Format`
up there and ask it, instead of switching on the family themselves. Every
part is an abstract method, so a family that lacks one cannot be built (and
``tests/core/test_format_registry.py`` checks each part on the family's
examples).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
from onnx import NodeProto

from bitlens.core.errors import FormatError
from bitlens.core.formats import ranges
from bitlens.core.formats.groups import Grouping
from bitlens.core.formats.qtensor import SCALE_BITS, QTensor
from bitlens.core.formats.spec import Format, Granularity, RangeMethod

GRANULARITY_TEXT = {
    Granularity.TENSOR: "one scale for the whole tensor",
    Granularity.CHANNEL: "one scale per channel (a weight's output channels by default)",
    Granularity.BLOCK: "one scale per block of values along the reduction axis",
}
RANGE_TEXT = {
    RangeMethod.MINMAX: "range from the min and max (nothing clipped)",
    RangeMethod.PERCENTILE: "range clipped at a percentile of |x| (outliers saturate)",
    RangeMethod.MSE: "range clipped where the reconstruction error is smallest",
}

Range = tuple[Any, Any]


@dataclass(frozen=True)
class Encoded:
    """What a family's export subgraph produced: the float32 output and how it reads."""

    output: str  # the float32 tensor holding the rebuilt weight (weight's shape)
    scheme: str  # "packed" (n-bit streams) or "native" (an ONNX element type)
    text: str  # for the export report, e.g. "4-bit packed codes, float32 scale per channel"
    min_opset: int = 13


class FoldContext(Protocol):
    """The exporter's side of a folded weight encoding (see ``core/export/weights.py``).

    Families write their decode subgraph through it, so the formats package
    never imports the exporter; every stored tensor is recorded for the
    fidelity check and the accounting.
    """

    grouping: Grouping
    granularity_text: str  # "per tensor", "per channel (axis 0)", "blocks of 32 (axis 1)"

    def node(self, op: str, inputs: list[str], **attrs: object) -> str: ...

    def const(self, hint: str, value: np.ndarray) -> str: ...

    def to_float(self, name: str) -> str: ...

    def store(self, array: np.ndarray, role: str, hint: str, *, bits: int | None = None,
              label: str | None = None) -> str: ...  # fmt: skip

    def codes(self, codes: np.ndarray, bits: int, role: str = "codes") -> str:
        """Unsigned codes below 2**bits, stored packed; an int64 tensor of the weight's shape."""
        ...

    def packed_params(
        self, values: np.ndarray, bits: int, role: str, hint: str, shape_hint: str
    ) -> str:
        """Unsigned per-group codes stored packed, as float32 broadcast against the weight."""
        ...

    def param(self, values: np.ndarray, role: str, hint: str) -> str:
        """A float32 per-group parameter stored and broadcast against the weight."""
        ...

    def broadcast(self, name: str, hint: str) -> str: ...


class FormatFamily(ABC):
    """One format family. Subclasses set the class attributes and implement every method."""

    family: str  # the value of Format.family
    grid_text: str  # what the family's grid is, in plain words (tooltips, Help)
    weight_choices: tuple[str, ...] = ()  # names the table and sandbox offer for weights
    examples: tuple[str, ...] = ()  # valid names covering the family (tests run each)
    # Fitting iterates over the values (k-means): the sandbox computes these formats last,
    # after every cheaper row is on screen.
    iterative_fit: bool = False

    # -- names --------------------------------------------------------------------------
    @abstractmethod
    def parse_head(self, head: str) -> dict[str, object] | None:
        """Format fields for a name's first word, or None when it is not this family's."""

    @abstractmethod
    def head(self, fmt: Format) -> str:
        """The first word(s) of ``fmt``'s name (the rest is granularity and range)."""

    @abstractmethod
    def validate(self, fmt: Format) -> str | None:
        """Why ``fmt`` is impossible for this family, or None when it is valid."""

    def has_scale(self, fmt: Format) -> bool:
        """Whether the format stores a scale per group (plain casts do not)."""
        return self.plain_dtype(fmt) is None

    def plain_dtype(self, fmt: Format) -> np.dtype | None:
        """The numpy dtype of a plain cast (values stored as that type, no scale), else None."""
        return None

    # -- numerics -----------------------------------------------------------------------
    @abstractmethod
    def quantize(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, value_range: Range | None, what: str
    ) -> QTensor:
        """Codes and parameters of finite, numeric, non-empty ``x``."""

    def fitted(self, q: QTensor) -> object | None:
        """What :meth:`quantize` fitted to the values to give ``q`` and is worth keeping
        (k-means: its codebooks), for :meth:`quantize_fitted` on the same values; None:
        nothing (a range is recomputed faster than looked up)."""
        return None

    def quantize_fitted(
        self, x: np.ndarray, fmt: Format, grouping: Grouping, fit: object, what: str
    ) -> QTensor:
        """:meth:`quantize` of ``x`` given :meth:`fitted` of an earlier quantize of the same
        ``x`` in ``fmt``: the same codes and parameters, without fitting again."""
        return self.quantize(x, fmt, grouping, None, what)

    @abstractmethod
    def dequantize(self, q: QTensor) -> np.ndarray:
        """The values a runtime reconstructs from ``q`` (float32)."""

    @abstractmethod
    def storage_bits(self, fmt: Format, g: Grouping) -> int:
        """Exact bits of a tensor grouped as ``g``: codes and every parameter."""

    def range_qdq(self, fmt: Format) -> ranges.QdqFn | None:
        """``(groups, lo, hi) -> reconstruction`` for the MSE range search (None: no search)."""
        return None

    # -- engine -------------------------------------------------------------------------
    # activation quantizer kinds this family builds -> the lowest opset of their operators
    activation_kinds: Mapping[str, int] = MappingProxyType({})

    @abstractmethod
    def activation_kind(self, fmt: Format, dynamic: bool) -> str | None:
        """The engine's activation quantizer kind (engine/quantizers.py), None if unsupported."""

    def activation_nodes(
        self, kind: str, x: str, y: str, prefix: str
    ) -> tuple[list[NodeProto], tuple[str, ...]]:
        """Nodes computing ``y = quantize(x)`` for ``kind``, and the names of their parameter
        inputs (``<prefix>__*``), fed at run time (a family with activation kinds overrides)."""
        raise FormatError(f"{self.family} formats have no activation quantizer")

    def activation_feeds(
        self, kind: str, prefix: str, fmt: Format, lo: Any, hi: Any
    ) -> dict[str, np.ndarray]:
        """The parameter values of ``kind`` for a calibrated range ``[lo, hi]``."""
        raise FormatError(f"{self.family} formats have no activation quantizer")

    def activation_reference(
        self, kind: str, x: np.ndarray, feeds: Mapping[str, np.ndarray], prefix: str
    ) -> np.ndarray:
        """The quantizer in numpy (tests compare the ONNX subgraph against it)."""
        raise FormatError(f"{self.family} formats have no activation quantizer")

    # -- export -------------------------------------------------------------------------
    @abstractmethod
    def native_qdq_dtype(self, fmt: Format, allow_int2: bool) -> np.dtype | None:
        """The numpy dtype DequantizeLinear reads the codes as on ORT CPU, if any."""

    @abstractmethod
    def encode(self, ctx: FoldContext, q: QTensor) -> Encoded:
        """Store ``q`` compactly and add the exact decode subgraph (folded at session start)."""

    @abstractmethod
    def export_min_opset(self, fmt: Format, native_qdq: bool) -> int:
        """The lowest opset of the export's encoding (folded, or native DequantizeLinear)."""

    # -- views and help -----------------------------------------------------------------
    @abstractmethod
    def grid(self, q: QTensor) -> tuple[np.ndarray, tuple[float, float] | None]:
        """Every value one group of ``q`` can reconstruct (empty when too many) and its ends."""

    def group_grid(
        self, x: np.ndarray, fmt: Format, group: int, values: np.ndarray, value_range: Range | None
    ) -> QTensor:
        """Group ``group`` of ``x`` (its ``values``) quantized so :meth:`grid` gives its grid.

        Here each group's parameters depend on that group's values only, so the
        group quantized alone per tensor has exactly its grid in the full tensor;
        a family with tensor-wide parameters overrides this.
        """
        from bitlens.core.formats.codec import quantize

        per_tensor = fmt.replace(granularity=Granularity.TENSOR, axis=None, block_size=0)
        return quantize(values, per_tensor, value_range=value_range, what="tensor")

    @abstractmethod
    def levels(self, fmt: Format) -> int | None:
        """Distinct values on one group's grid (None: too many to matter, a plain cast)."""

    @abstractmethod
    def grid_description(self, fmt: Format) -> str:
        """The grid of ``fmt`` in plain words."""

    @abstractmethod
    def stores(self, fmt: Format) -> str:
        """What is stored besides the codes, in plain words."""

    @abstractmethod
    def reference(self) -> list[tuple[str, str]]:
        """Help rows (name pattern, meaning) for every name of this family the parser takes."""


class FoldedWeightFamily(FormatFamily):
    """A family for weights only, always exported as folded codes: no activation quantizer,
    no native DequantizeLinear type, opset-13 decode operators."""

    def activation_kind(self, fmt: Format, dynamic: bool) -> str | None:
        return None

    def native_qdq_dtype(self, fmt: Format, allow_int2: bool) -> np.dtype | None:
        return None

    def export_min_opset(self, fmt: Format, native_qdq: bool) -> int:
        return 13


def scale_where(fmt: Format) -> str:
    """Where a format's per-group parameters sit, in words."""
    if fmt.granularity is Granularity.BLOCK:
        return f"one per block of {fmt.block_size} values"
    return GRANULARITY_TEXT[fmt.granularity].replace("scale", "set")


def float_scales_text(fmt: Format) -> str:
    return f"float{SCALE_BITS} scale(s): {scale_where(fmt)}"
