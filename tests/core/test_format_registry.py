"""Every registered format family has every part, and each part works on its examples.

The registry (``bitlens.core.formats.registry``) is the one place formats are
added; these tests run over whatever it holds, so a new family is checked
end to end (name, codec, storage, engine quantizer kind, export encoding
rebuilt bit for bit by plain ONNX Runtime, the view's grid, the Help text)
without editing this file. ::

    codes, scales --(the family's folded decode subgraph)--> W == dequantize(quantize(W))
"""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from bitlens.core.engine import bind, quantizers
from bitlens.core.errors import FormatError
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.weights import FOLD, encode_weight
from bitlens.core.formats import Granularity, dequantize, parse_format, quantize, storage_bits
from bitlens.core.formats.describe import describe_format, format_reference
from bitlens.core.formats.family import FormatFamily
from bitlens.core.formats.registry import FAMILIES, family_of, weight_choices
from bitlens.core.model.types import Storage, WeightInfo
from bitlens.core.viewdata import distribution
from tests.core.test_formats_properties import tensors

SHAPE = (6, 40)  # axis 1 holds one full block of 32 and a partial one
EXAMPLES = [(type(f).__name__, name) for f in FAMILIES for name in f.examples]
PARTS = sorted(FormatFamily.__abstractmethods__)


def _weight(seed: int = 0) -> tuple[WeightInfo, np.ndarray]:
    value = np.random.default_rng(seed).normal(0, 0.3, SHAPE).astype(np.float32)
    value[0, :5] = 0.0  # exact zeros in the first block
    return WeightInfo("W", SHAPE, "float32", Storage.INITIALIZER, "", 0, 1), value


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: type(f).__name__)
def test_every_family_implements_every_part(family: FormatFamily) -> None:
    assert not inspect.isabstract(type(family)), type(family).__abstractmethods__
    for part in PARTS:  # overridden somewhere below FormatFamily, not inherited abstract
        assert getattr(type(family), part) is not getattr(FormatFamily, part), part
    assert family.grid_text and family.examples
    for name in family.examples:
        assert family_of(parse_format(name)) is family
    assert family.reference()


def test_a_family_missing_a_part_cannot_be_built() -> None:
    class Partial(FormatFamily):
        family = "partial"
        grid_text = "incomplete"

        def parse_head(self, head):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Partial()  # type: ignore[abstract]


def test_family_names_are_unique_and_every_name_reads_back() -> None:
    names = [str(f.family) for f in FAMILIES]
    assert len(names) == len(set(names))
    for name in weight_choices():
        assert parse_format(parse_format(name).name) == parse_format(name)


@pytest.mark.parametrize(("family", "name"), EXAMPLES)
def test_name_round_trips_and_unknown_family_is_refused(family: str, name: str) -> None:
    fmt = parse_format(name)
    assert parse_format(fmt.name) == fmt
    with pytest.raises(FormatError, match="unknown family"):
        fmt.replace(family="no-such-family")


@pytest.mark.parametrize(("family", "name"), EXAMPLES)
def test_codec_storage_view_and_help_agree(family: str, name: str) -> None:
    w, value = _weight()
    fmt = bind(parse_format(name), w)
    fam = family_of(fmt)
    q = quantize(value, fmt)
    got = dequantize(q)
    assert got.shape == SHAPE and np.isfinite(got).all()
    assert storage_bits(fmt, SHAPE) >= fmt.bits * value.size
    kind = fam.activation_kind(fmt, False)
    assert kind is None or kind in quantizers.KIND_MIN_OPSET
    d = distribution(value, fmt)
    if d.clip is not None:
        assert d.clip[0] <= d.clip[1]
        lo, hi = d.clip
        assert (d.levels >= lo).all() and (d.levels <= hi).all()
    assert len(describe_format(fmt).tooltip().splitlines()) == 4
    assert any(meaning == fam.grid_text or fam.grid_text in meaning
               for _, meaning in format_reference())  # fmt: skip


def _run(model: onnx.ModelProto, level: ort.GraphOptimizationLevel) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.zeros(1, np.float32)})[0]


@pytest.mark.parametrize(("family", "name"), EXAMPLES)
def test_export_encoding_rebuilds_the_codec_bit_for_bit(family: str, name: str) -> None:
    w, value = _weight(1)
    fmt = bind(parse_format(name), w)
    b = GraphBuilder("W", {"W", "x"})
    enc = encode_weight(b, w, value, fmt, mode=FOLD)
    if enc is None:  # a plain cast at or above the weight's own precision
        assert not fmt.has_scale
        return
    g = helper.make_graph(
        b.nodes, "weight", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("W", TensorProto.FLOAT, SHAPE)], b.initializers,
    )  # fmt: skip
    opset = max(21, enc.min_opset)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    want = dequantize(quantize(value, fmt)).astype(np.float32)
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  ort.GraphOptimizationLevel.ORT_ENABLE_ALL):  # fmt: skip
        got = _run(model, level)
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    assert enc.min_opset == family_of(fmt).export_min_opset(fmt, False)
    planned = storage_bits(fmt, SHAPE) / 8
    # packed streams round up to whole groups of 8 codes; fixed tables may be stored once
    assert planned - 8 <= enc.nbytes <= planned + fmt.bits * len(enc.stored) + 8


ACT_KINDS = [(type(f).__name__, kind) for f in FAMILIES for kind in f.activation_kinds]


@pytest.mark.parametrize(("family", "kind"), ACT_KINDS)
def test_activation_quantizer_nodes_match_their_numpy_reference(family: str, kind: str) -> None:
    """x -> (the family's quantizer nodes, parameters fed as inputs) -> y == numpy reference."""
    fam = next(f for f in FAMILIES if type(f).__name__ == family)
    for part in ("activation_nodes", "activation_feeds", "activation_reference"):
        assert getattr(type(fam), part) is not getattr(FormatFamily, part), part
    dynamic = kind.endswith("-dyn")
    fmt = next(
        f
        for f in map(parse_format, fam.examples)
        if fam.activation_kind(f, dynamic) == kind
        or (kind == quantizers.QDQ_KIND and quantizers.engine_kind(f, dynamic, 25) == kind)
    )
    nodes, io = quantizers.build(kind, "x", "y", "p")
    feeds = quantizers.param_feeds(kind, "p", fmt, -1.5, 2.0)
    assert set(io.params) == set(feeds)
    x = np.random.default_rng(2).normal(0, 1.2, (4, 33)).astype(np.float32)
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, []) for n in io.params]
    g = helper.make_graph(nodes, "q", inputs, [helper.make_tensor_value_info("y", 1, x.shape)])
    opset = max(quantizers.KIND_MIN_OPSET[kind], 13)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 10
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x, **feeds})[0]
    want = quantizers.numpy_reference(kind, x, feeds, "p")
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize(("family", "name"), EXAMPLES)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_tensor_decodes_to_finite_values_of_its_shape(
    family: str, name: str, data: st.DataObject
) -> None:
    """1-D to 4-D tensors with edge values (zeros, constants, 1e30, denormals), any axis."""
    x = data.draw(tensors())
    fmt = parse_format(name)
    if fmt.granularity is not Granularity.TENSOR:
        fmt = fmt.with_axis(data.draw(st.integers(0, x.ndim - 1)))
    got = dequantize(quantize(x, fmt))
    assert got.shape == x.shape and np.isfinite(got).all()
    zeros = dequantize(quantize(np.zeros_like(x), fmt))
    assert not zeros.any()
