"""``inspect_model`` against an independent numpy computation of SQNR and bytes."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bitlens.core.errors import FormatError
from bitlens.core.formats import INSPECT_LADDER
from bitlens.core.model import from_proto
from bitlens.core.report import inspect_model, sqnr_json
from tests import builders as b


def _int_sym_per_channel(w: np.ndarray, bits: int, axis: int) -> np.ndarray:
    """Reference symmetric per-channel fake quantization (round half to even, x/s).

    The format maps [-amax, amax] onto the full code range [-2^(b-1), 2^(b-1)-1],
    so the scale is 2*amax / (2^b - 1).
    """
    qmax = 2 ** (bits - 1) - 1
    other = tuple(i for i in range(w.ndim) if i != axis)
    w64 = w.astype(np.float64)
    scale = (2 * np.abs(w64).max(axis=other, keepdims=True) / (2**bits - 1)).astype(np.float32)
    q = np.clip(np.round(w.astype(np.float32) / scale), -qmax - 1, qmax)
    return (q * scale).astype(np.float32)


def _sqnr(ref: np.ndarray, approx: np.ndarray) -> float:
    r = ref.astype(np.float64)
    return 10 * math.log10(float((r**2).sum()) / float(((r - approx) ** 2).sum()))


def test_conv_net_against_reference() -> None:
    lm = from_proto(b.conv_net())
    rep = inspect_model(lm)
    assert rep.formats == INSPECT_LADDER
    conv1 = rep.layers[0]
    w = lm.weight("conv1.w")
    costs = {c.format: c for c in conv1.costs}
    assert costs["int8 sym ch"].sqnr_db == pytest.approx(
        _sqnr(w, _int_sym_per_channel(w, 8, 0)), abs=1e-6
    )
    assert costs["int4 sym ch"].sqnr_db == pytest.approx(
        _sqnr(w, _int_sym_per_channel(w, 4, 0)), abs=1e-6
    )
    assert costs["fp16"].sqnr_db == pytest.approx(_sqnr(w, w.astype(np.float16)), abs=1e-6)
    # bytes: packed codes + one float32 scale per output channel (8 channels)
    assert costs["fp16"].nbytes == 216 * 2
    assert costs["int8 sym ch"].nbytes == 216 + 8 * 4
    assert costs["int4 sym ch"].nbytes == 108 + 8 * 4
    assert costs["bin ch"].nbytes == 27 + 8 * 4
    # SQNR falls and size shrinks down the ladder
    sq = [c.sqnr_db for c in conv1.costs]
    assert sq[0] > sq[1] > sq[2] > sq[3]
    assert rep.params == 216 + 1152 + 160 and rep.nbytes == rep.params * 4
    fp16 = rep.totals[0]
    assert fp16.nbytes == rep.params * 2 and fp16.compression == pytest.approx(2.0)


def test_multi_weight_layer_sqnr_is_over_all_weights() -> None:
    lm = from_proto(b.stateful_gru())
    rep = inspect_model(lm, ["int8 sym ch"])
    (layer,) = rep.layers
    refs = [lm.weight("gru.W"), lm.weight("gru.R")]
    approx = [_int_sym_per_channel(r, 8, 1) for r in refs]
    ref = np.concatenate([r.ravel() for r in refs])
    app = np.concatenate([a.ravel() for a in approx])
    assert layer.costs[0].sqnr_db == pytest.approx(_sqnr(ref, app), abs=1e-6)
    assert layer.costs[0].nbytes == (60 + 12 * 4) + (48 + 12 * 4)


def test_block_axis_binding() -> None:
    """ "int4 sym blk8" blocks MatMul B [K, N] along K (axis 0)."""
    lm = from_proto(b.mlp())
    rep = inspect_model(lm, ["int4 sym blk8"])
    # fc1.w [16, 32]: 2 blocks x 32 columns = 64 scales
    assert rep.layers[0].costs[0].nbytes == 16 * 32 // 2 + 64 * 4


def test_tied_weight_counted_once() -> None:
    """A Gather embedding and a Gemm head sharing one table::

    ids -> Gather(E[20,8]) -> ReduceMean(axis 1) -> Gemm(E, transB=1) -> logits
    """
    e = b.weights((20, 8), seed=7, fan_in=8)
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["h"], name="embed"),
        helper.make_node("ReduceMean", ["h"], ["m"], name="mean", axes=[1], keepdims=0),
        helper.make_node("Gemm", ["m", "E"], ["logits"], name="head", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "tied",
        [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [2, 20])],
        [numpy_helper.from_array(e, "E")],
    )
    rep = inspect_model(from_proto(b.model(g, opset=17)), ["int8 sym ch"])
    assert [layer.params for layer in rep.layers] == [160, 160]
    assert rep.params == 160 and rep.nbytes == 640
    assert rep.totals[0].nbytes == 160 + 20 * 4


def test_bad_explicit_axis_names_the_layer() -> None:
    with pytest.raises(FormatError, match="layer fc"):
        inspect_model(from_proto(b.conv_net()), ["int8 sym ch3"])


def test_sqnr_json() -> None:
    assert sqnr_json(math.inf) == "inf"
    assert sqnr_json(-math.inf) == "-inf"
    assert sqnr_json(12.345678) == 12.3457


def test_model_without_layers_reports_empty_totals() -> None:
    """x[2,3] -> Relu -> y: nothing to quantize, text and JSON still complete."""
    from bitlens.cli.inspect import to_json, to_text

    g = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "plain",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 3])],
    )
    rep = inspect_model(from_proto(b.model(g)))
    assert rep.layers == () and rep.params == 0
    assert all(t.nbytes == 0 and t.compression is None for t in rep.totals)
    text = to_text(rep)
    assert "no quantizable layers" in text and "0 layers" in text
    assert to_json(rep)["totals"]["formats"]["fp16"] == {"bytes": 0, "compression": None}
