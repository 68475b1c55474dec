"""n-bit packing: numpy round trip, the LSB-first layout, and the ONNX unpack subgraph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from bitlens.core.errors import ExportError
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.packing import (
    FUNCTION_DOMAIN,
    pack,
    packed_size,
    unpack,
    unpack_nodes,
)


@settings(max_examples=200, deadline=None)
@given(
    bits=st.integers(1, 8),
    data=st.data(),
)
def test_pack_unpack_round_trip(bits: int, data: st.DataObject) -> None:
    codes = data.draw(st.lists(st.integers(0, (1 << bits) - 1), min_size=1, max_size=300))
    packed = pack(np.array(codes), bits)
    assert packed.dtype == np.uint8
    assert packed.size == packed_size(len(codes), bits) == -(-len(codes) // 8) * bits
    np.testing.assert_array_equal(unpack(packed, bits, len(codes)), codes)


def test_layout_is_lsb_first_bit_stream() -> None:
    """Code i sits at bits [3i, 3i+3) of the little-endian stream (independent reference)."""
    codes = np.array([5, 3, 7, 0, 1, 6, 2, 4, 7])
    stream = "".join(format(int(c), "03b")[::-1] for c in codes)  # LSB of each code first
    stream += "0" * (-len(stream) % 8)
    want = [int(stream[i : i + 8][::-1], 2) for i in range(0, len(stream), 8)]
    got = pack(codes, 3)
    np.testing.assert_array_equal(got[: len(want)], want)
    assert not got[len(want) :].any()  # padding of the last group is zero


def test_pack_rejects_codes_out_of_range() -> None:
    with pytest.raises(ExportError, match=r"outside \[0, 3\]"):
        pack(np.array([0, 4]), 2)
    with pytest.raises(ExportError, match="9-bit"):
        pack(np.array([0]), 9)


def _run_unpack(
    packed: np.ndarray,
    bits: int,
    count: int,
    level: ort.GraphOptimizationLevel,
    functions: dict | None = None,
    optimized: str | None = None,
):
    b = GraphBuilder("p", set(), functions=functions)
    out = unpack_nodes(b, b.const("packed", packed), bits, count, "u")
    g = helper.make_graph(
        b.nodes,
        "unpack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info(out, TensorProto.INT64, [count])],
        b.initializers,
    )
    opsets = [helper.make_opsetid("", 13)]
    if functions:
        opsets.append(helper.make_opsetid(FUNCTION_DOMAIN, 1))
    model = helper.make_model(g, opset_imports=opsets, functions=list((functions or {}).values()))
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    if optimized:
        so.optimized_model_filepath = optimized
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": np.zeros(1, np.float32)})[0]


@pytest.mark.parametrize("bits", range(1, 9))
def test_onnx_unpack_subgraph_matches_numpy(bits: int) -> None:
    """Every width, a count that leaves a partial group, all-ones codes (the widest windows),
    run as written and with ORT's constant folding."""
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, 1001)
    codes[:16] = (1 << bits) - 1
    packed = pack(codes, bits)
    for level in (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    ):
        np.testing.assert_array_equal(_run_unpack(packed, bits, codes.size, level), codes)


@pytest.mark.parametrize("bits", [1, 3, 4, 7])
def test_unpack_as_a_local_function_matches_numpy_and_folds(bits: int, tmp_path) -> None:
    """The same unpack written once as a model-local function and called: ORT inlines it and
    constant-folds the inlined nodes (the optimized model keeps no unpack op)."""
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, 1001)
    codes[:16] = (1 << bits) - 1
    packed = pack(codes, bits)
    functions: dict = {}
    got = _run_unpack(
        packed, bits, codes.size, ort.GraphOptimizationLevel.ORT_DISABLE_ALL, functions
    )
    np.testing.assert_array_equal(got, codes)
    assert list(functions) == [f"Unpack{bits}"]
    opt = str(tmp_path / "opt.onnx")
    level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    np.testing.assert_array_equal(_run_unpack(packed, bits, codes.size, level, {}, opt), codes)
    assert not onnx.load(opt).graph.node  # everything folded into the output constant


def test_packed_layers_share_one_function() -> None:
    """Two packed tensors of one width: one function, one call node each (a call is far
    smaller than the subgraph it replaces)."""
    functions: dict = {}
    b = GraphBuilder("p", set(), shared={}, functions=functions)
    unpack_nodes(b, b.const("a", pack(np.arange(16) % 8, 3)), 3, 16, "a")
    unpack_nodes(b, b.const("b", pack(np.arange(32) % 8, 3)), 3, 32, "b")
    assert list(functions) == ["Unpack3"]
    assert [n.op_type for n in b.nodes] == ["Unpack3", "Unpack3"]
    inline = GraphBuilder("q", set(), shared={})
    unpack_nodes(inline, inline.const("a", pack(np.arange(16) % 8, 3)), 3, 16, "a")
    call = sum(n.ByteSize() for n in b.nodes) / 2
    assert call * 5 < sum(n.ByteSize() for n in inline.nodes)
