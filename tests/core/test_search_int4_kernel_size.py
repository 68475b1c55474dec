"""The search's size accounting of 4-bit integer-kernel layers (int4 codes Cast to int8 before
their DequantizeLinear; below opset 21 packed codes unpacked by opset-13 operators) against
the bytes of the real export, at opset 21 and in the packed fallback."""

from __future__ import annotations

import pytest

from bitlens.core.engine import Engine
from bitlens.core.errors import ExportError
from bitlens.core.export import opsets
from bitlens.core.export.exporter import integer_kernel_layers
from bitlens.core.formats import parse_format
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from bitlens.core.search.candidates import _parse_all
from bitlens.core.search.measures import exported_size
from bitlens.core.search.options import Budget, SearchOptions
from bitlens.core.search.overheads import measure_overheads
from bitlens.core.search.runner import _Search
from tests.core.engine_models import small_cnn
from tests.core.test_search import _engine

FORMATS = ("int8 sym ch", "int4 sym ch", "uint4 asym")


@pytest.fixture(scope="module")
def cnn() -> Engine:
    return _engine(small_cnn())  # opset 17: Conv, Conv, Gemm


def _sizes(engine: Engine, formats: tuple[str, ...] = FORMATS):
    """A size search's accounting after its overhead step (no plan's export learnt yet)."""
    w8a8 = Plan.preset(engine.info, "W8A8")
    opts = SearchOptions(
        Budget(max_bytes=exported_size(engine, w8a8)),
        weight_formats=formats,
        activation_formats=("int8 sym",),
        references=("W8A8",),
        check_export=True,
    )
    s = _Search(engine, opts)
    wlayers = [la for la in engine.info.layers if la.weights]
    drain(measure_overheads(s, wlayers, _parse_all(formats, "weight"), parse_format("int8 sym")))
    return s.size, w8a8


def _check(
    engine: Engine, opset: int, tolerance: dict[str, int], formats: tuple[str, ...] = FORMATS
) -> None:
    size, w8a8 = _sizes(engine, formats)
    # what the file holds besides the layers (the export record) is learnt from whole
    # exports: the accounting is compared on what a plan adds to W8A8's file
    acc0, real0 = size.file_bytes(w8a8), exported_size(engine, w8a8)
    for name, tol in tolerance.items():
        fmt = parse_format(name)
        for layers in (["conv1"], ["conv2"], ["fc"], ["conv1", "conv2", "fc"]):
            choices = {n: LayerChoice(fmt, w8a8[n].activation) for n in layers}
            plan = Plan(engine.info, {**w8a8.choices, **choices})
            assert set(layers) <= integer_kernel_layers(engine.info, plan, engine.placement(plan))
            assert size.opset(plan) == opset
            # before: the folded format's overhead (its unpacking nodes and shared constants,
            # ~1 kB here) plus the int8 kernel group's, and opset 21 where the export was 17
            acc = size.file_bytes(plan) - acc0
            assert abs(acc - (exported_size(engine, plan) - real0)) <= tol, (name, layers)


def test_int4_kernel_layers_are_accounted_as_exported_at_opset_21(cnn: Engine) -> None:
    # uint4 asym per tensor: conv2's group costs 44 bytes more than conv1's, where the
    # Conv group's cost is measured (learnt once the search exports a plan with it)
    _check(cnn, 21, {"int4 sym ch": 4, "uint4 asym": 48})


def test_int4_kernel_layers_in_the_packed_fallback(monkeypatch) -> None:
    """A model that cannot be upgraded to opset 21 (ONNX INT4): the codes are stored packed
    and the file stays at the model's opset, which the accounting knows. An engine of its
    own: the module's has its conversion to 21 kept (core/export/conversions.py)."""
    real = opsets.convert

    def convert(model, target, *args, **kw):  # the converter fails as for PP-OCRv4 rec
        if target < 21:
            return real(model, target, *args, **kw)
        raise ExportError(f"upgrading the model to opset {target} changed output 'y'")

    monkeypatch.setattr(opsets, "convert", convert)
    _check(_engine(small_cnn()), 17, {"int4 sym ch": 4, "uint4 asym": 48})
