"""Activation quantizers as ONNX subgraphs whose parameters are graph inputs.

Each quantizer is built once per session and fed its parameters at run
time, so changing a layer's activation range or bit width costs no model
rewrite. The quantizer kinds and their nodes belong to the format families
(``core/formats/families``: ``int`` and ``int-dyn`` in ``int_activation.py``,
the float casts and fp8 in ``floating.py``); this module names the kind a
format needs and hands each request to the family that builds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from onnx import NodeProto

from bitlens.core.errors import EngineError
from bitlens.core.formats import Format, family_of
from bitlens.core.formats.families.int_activation import qdq_fits
from bitlens.core.formats.family import FormatFamily
from bitlens.core.formats.registry import FAMILIES

# quantizer kind -> the family that builds it, and the minimum opset of the ops it uses
_BUILDERS: dict[str, FormatFamily] = {k: f for f in FAMILIES for k in f.activation_kinds}
KIND_MIN_OPSET: dict[str, int] = {k: f.activation_kinds[k] for k, f in _BUILDERS.items()}


@lru_cache(maxsize=4096)  # formats are frozen; asked per layer of every evaluation
def kind_of(fmt: Format | None, dynamic: bool = False) -> str | None:
    """The quantizer structure a format needs (None: no quantizer)."""
    if fmt is None:
        return None
    kind = family_of(fmt).activation_kind(fmt, dynamic)
    if kind is not None:
        return kind
    raise EngineError(f"activation format {fmt.name} cannot be simulated")


# The Q/Clip/DQ form of ``int`` (int_activation.qdq_nodes) and the opset it needs.
QDQ_KIND = "int-q"


@lru_cache(maxsize=4096)
def engine_kind(fmt: Format | None, dynamic: bool, opset: int, qdq: bool = True) -> str | None:
    """The quantizer structure the engine's graphs use for ``fmt``: :func:`kind_of`, with a
    per-tensor ``int`` of at most 256 codes run as real QuantizeLinear/DequantizeLinear
    (``qdq`` and opset 12+: the same values, a third of the cost). Exports keep
    :func:`kind_of`'s forms."""
    kind = kind_of(fmt, dynamic)
    if kind == "int" and qdq and opset >= KIND_MIN_OPSET[QDQ_KIND]:
        assert fmt is not None
        if qdq_fits(fmt):
            return QDQ_KIND
    return kind


def target_kind(opset: int, qdq: bool = True) -> str:
    """The kind of a deployment target's tensor quantizers (8-bit per tensor, targets.py)."""
    return QDQ_KIND if qdq and opset >= KIND_MIN_OPSET[QDQ_KIND] else "int"


@dataclass(frozen=True)
class QuantizerIO:
    """Names of a quantizer's parameter inputs (empty for parameter-free casts)."""

    params: tuple[str, ...]


def _builder(kind: str) -> FormatFamily:
    try:
        return _BUILDERS[kind]
    except KeyError:
        raise EngineError(f"unknown activation quantizer kind {kind!r}") from None


def build(kind: str, x: str, y: str, prefix: str) -> tuple[list[NodeProto], QuantizerIO]:
    """Nodes computing ``y = quantize(x)`` for ``kind``; parameters named ``<prefix>__*``."""
    nodes, params = _builder(kind).activation_nodes(kind, x, y, prefix)
    return nodes, QuantizerIO(params)


def param_feeds(kind: str, prefix: str, fmt: Format, lo: Any, hi: Any) -> dict[str, np.ndarray]:
    """Parameter values for a calibrated range ``[lo, hi]``."""
    return _builder(kind).activation_feeds(kind, prefix, fmt, lo, hi)


def numpy_reference(
    kind: str, x: np.ndarray, feeds: dict[str, np.ndarray], prefix: str
) -> np.ndarray:
    """The same quantizer in numpy (tests compare the ONNX subgraph against it)."""
    return _builder(kind).activation_reference(kind, x, feeds, prefix)
