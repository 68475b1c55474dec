"""The loader's faster passes (issue 11, openload) give what the straightforward ones give:
the Mul fold's float32 product, the folds' new bias names, the tensor checks' messages and
the UTF-8 check's field paths."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.errors import ModelLoadError
from bitlens.core.model import validate
from bitlens.core.model.loader import from_proto
from tests import builders

vi = helper.make_tensor_value_info


def _conv_mul(w: np.ndarray, b: np.ndarray | None, s: np.ndarray) -> onnx.ModelProto:
    c = w.shape[0]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(s, "s")]
    ins = ["x", "w"]
    if b is not None:
        inits.append(numpy_helper.from_array(b, "b"))
        ins.append("b")
    nodes = [
        helper.make_node("Conv", ins, ["c"], name="conv"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
    ]
    g = helper.make_graph(
        nodes, "g", [vi("x", TensorProto.FLOAT, [1, w.shape[1], 4, 4])],
        [vi("y", TensorProto.FLOAT, [1, c, 4, 4])], inits,
    )  # fmt: skip
    return builders.model(g, 13)


@pytest.mark.parametrize("bias", [True, False])
def test_mul_fold_in_float32_is_the_float64_product_rounded(bias: bool) -> None:
    """Weights spanning float32's range (subnormal products, halfway cases, large values)
    times per-channel scales: every folded weight and bias equals, bit for bit, the product
    computed in float64 and rounded to float32 (how the fold computed it before)."""
    rng = np.random.default_rng(5)
    c = 6
    mant = rng.uniform(1, 2, (c, 3, 3, 3)) * rng.choice([-1, 1], (c, 3, 3, 3))
    w = (mant * 2.0 ** rng.integers(-140, 100, (c, 3, 3, 3))).astype(np.float32)
    w[0, 0, 0, :] = [1 + 2**-23, 1 + 3 * 2**-23, 1.5]  # products at and near ties
    s = np.array([1 + 2**-23, 3.0, 2.0**-20, 0.1, 7e9, -1.75], np.float32).reshape(1, c, 1, 1)
    b = rng.normal(0, 1, c).astype(np.float32) if bias else None
    assert np.isfinite(w.astype(np.float64) * s.reshape(c, 1, 1, 1)).all()
    model = from_proto(_conv_mul(w, b, s))
    assert model.mul_folded == 1
    want_w = (w.astype(np.float64) * s.astype(np.float64).reshape(c, 1, 1, 1)).astype(np.float32)
    got_w = model.weight("w")
    assert got_w.dtype == np.float32
    assert np.array_equal(got_w.view(np.uint32), want_w.view(np.uint32))
    assert (got_w != 0).any() and (np.abs(got_w[got_w != 0]) < 2.0**-126).any()  # subnormals
    if bias:
        assert b is not None
        want_b = (b.astype(np.float64) * s.astype(np.float64).ravel()).astype(np.float32)
        assert np.array_equal(model.weight("b").view(np.uint32), want_b.view(np.uint32))


def _conv_bn_pair(i: int, x: str, out: str, bn_name: str) -> tuple[list, list]:
    rng = np.random.default_rng(i)
    params = {
        f"g{i}": rng.uniform(0.5, 2, 4), f"be{i}": rng.normal(0, 1, 4),
        f"m{i}": rng.normal(0, 1, 4), f"v{i}": rng.uniform(0.5, 2, 4),
    }  # fmt: skip
    inits = [numpy_helper.from_array(rng.normal(0, 1, (4, 4, 1, 1)).astype(np.float32), f"w{i}")]
    inits += [numpy_helper.from_array(v.astype(np.float32), k) for k, v in params.items()]
    nodes = [
        helper.make_node("Conv", [x, f"w{i}"], [f"conv{i}_out"], name=f"conv{i}"),
        helper.make_node("BatchNormalization", [f"conv{i}_out", *params], [out], name=bn_name),
    ]
    return nodes, inits


def test_new_bias_names_skip_taken_names_and_reuse_freed_ones() -> None:
    """Three bias-less Conv -> BatchNormalization pairs: the first BN's bias name is taken
    by a tensor (it gets ``_1``); the second's is conv0's output name, which the first fold
    frees (it gets the name itself, as the scan over the graph found); the third's is free."""
    n0, i0 = _conv_bn_pair(0, "x", "a", "bn0")
    n1, i1 = _conv_bn_pair(1, "a", "b", "conv0_out")  # its bias: "conv0_out_folded_bias"
    n2, i2 = _conv_bn_pair(2, "b", "y", "bn2")
    n0[0].output[0] = n0[1].input[0] = "conv0_out_folded_bias"  # freed by the first fold
    taken = numpy_helper.from_array(np.zeros(4, np.float32), "bn0_folded_bias")
    extra = helper.make_node("Add", ["y", "bn0_folded_bias"], ["z"], name="uses_taken")
    g = helper.make_graph(
        [*n0, *n1, *n2, extra], "g", [vi("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [vi("z", TensorProto.FLOAT, [1, 4, 2, 2])], [*i0, *i1, *i2, taken],
    )  # fmt: skip
    model = from_proto(builders.model(g, 13))
    assert model.bn_folded == 3
    biases = {n.name: n.input[2] for n in model.graph_proto.graph.node if n.op_type == "Conv"}
    assert biases == {
        "conv0": "bn0_folded_bias_1",
        "conv1": "conv0_out_folded_bias",
        "conv2": "bn2_folded_bias",
    }


def _straightforward(model: onnx.ModelProto, label: str) -> str | None:
    """The tensor checks one by one, each description written first (the old pass)."""
    try:
        for what, t in validate.walk_tensors(model):
            if isinstance(t, onnx.TensorProto):
                validate._check_tensor_slowly(t, f"{label}: {what}", None)
    except ModelLoadError as exc:
        return str(exc)
    return None


def _damaged(kind: str) -> onnx.ModelProto:
    """A model whose Constant node in an If branch holds a tensor damaged as ``kind``."""
    t = numpy_helper.from_array(np.zeros((2, 3), np.float32), "cv")
    if kind == "two negative dims":  # their product is positive
        del t.dims[:]
        t.dims.extend([-2, -3])
    elif kind == "unknown type":
        t.data_type = 77
    elif kind == "no type":
        t.data_type = TensorProto.UNDEFINED
    elif kind == "segment":
        t.segment.begin = 0
        t.segment.end = 1
    elif kind == "over the budget":
        del t.dims[:]
        t.dims.extend([1 << 20, 1 << 20])
    elif kind == "short raw data":
        t.raw_data = t.raw_data[:7]
    elif kind == "typed values":
        t.ClearField("raw_data")
        t.float_data.extend([0.0] * 5)
    elif kind == "no values":
        t.ClearField("raw_data")
    elif kind == "string raw data":
        t.data_type = TensorProto.STRING
    branch = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], name="inner_const", value=t)],
        "then", [], [vi("c", TensorProto.FLOAT, [2, 3])],
    )  # fmt: skip
    node = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=branch,
                            else_branch=branch)  # fmt: skip
    g = helper.make_graph(
        [node], "g", [vi("cond", TensorProto.BOOL, [])], [vi("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(np.ones(3, np.float32), "ok")],
    )  # fmt: skip
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])  # unchecked


@pytest.mark.parametrize(
    "kind",
    [
        "two negative dims", "unknown type", "no type", "segment", "over the budget",
        "short raw data", "typed values", "no values", "string raw data",
    ],
)  # fmt: skip
def test_tensor_checks_name_each_problem_as_the_straightforward_pass(kind: str) -> None:
    model = _damaged(kind)
    want = _straightforward(model, "m.onnx")
    assert want is not None and "inner_const" in want
    with pytest.raises(ModelLoadError) as info:
        validate.check_model(model, "m.onnx")
    assert str(info.value) == want


def test_utf8_check_names_the_field_path_in_a_subgraph() -> None:
    """An invalid name deep in an If branch: the message's path is written out in full,
    and an invalid doc string is made readable in place."""
    model = _damaged("none")
    model.graph.node[0].attribute[0].g.node[0].doc_string = "DOCX"
    model.graph.node[0].attribute[0].g.node[0].output[0] = "OUTX"
    data = model.SerializeToString().replace(b"DOCX", b"D\xffCX").replace(b"OUTX", b"O\xfeTX")
    parsed = onnx.ModelProto()
    parsed.ParseFromString(data)
    with pytest.raises(ModelLoadError) as info:
        validate.check_model(parsed, "m.onnx")
    assert str(info.value) == (
        "m.onnx: graph.node[0].attribute[0].g.node[0].output b'O\\xfeTX' is not valid UTF-8 "
        "(corrupt model?)"
    )
    data = model.SerializeToString().replace(b"DOCX", b"D\xffCX")
    parsed.ParseFromString(data)
    validate.check_model(parsed, "m.onnx")
    assert parsed.graph.node[0].attribute[0].g.node[0].doc_string == "D\\xffCX"


def _slots(slots: list) -> list[tuple]:
    return [(s.name, s.index, s.graph_path, s.parent, s.node.op_type) for s in slots]


@pytest.mark.parametrize("shuffled", [False, True])
def test_normalize_walks_as_a_fresh_walk_does(shuffled: bool) -> None:
    """normalize skips the second sort of graphs it found in order: its walk is the one a
    fresh walk of the normalized model gives, for a model in order and one out of order
    (an If whose branch's nodes are listed backwards)."""
    from bitlens.core.model.graph import normalize, walk

    branch_nodes = [
        helper.make_node("Relu", ["x"], ["t"], name="relu_in"),
        helper.make_node("Neg", ["t"], ["b"], name="neg_in"),
    ]
    if shuffled:
        branch_nodes.reverse()
    branch = helper.make_graph(branch_nodes, "then", [], [vi("b", TensorProto.FLOAT, [2])])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch),
        helper.make_node("Add", ["y", "r"], ["z"]),
    ]
    g = helper.make_graph(
        nodes, "g", [vi("x", TensorProto.FLOAT, [2]), vi("c", TensorProto.BOOL, [])],
        [vi("z", TensorProto.FLOAT, [2])],
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    got = normalize(model)
    assert _slots(got) == _slots(walk(model))
    then = [s.node.op_type for s in got if s.graph_path.endswith("then_branch")]
    assert then == ["Relu", "Neg"]


def test_value_info_dims_of_each_kind() -> None:
    """A fixed size, a named size and an unknown one read as int, str and None."""
    from bitlens.core.model.tensors import value_info_to_tensor

    v = vi("t", TensorProto.FLOAT16, [3, "batch", None])
    assert value_info_to_tensor(v).shape == (3, "batch", None)
    assert value_info_to_tensor(v).dtype == "float16"
    assert value_info_to_tensor(vi("u", TensorProto.INT64, None)).shape is None
