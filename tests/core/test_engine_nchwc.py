"""The engine's fed-filter convolutions on ONNX Runtime's NCHWc kernels
(bitlens.core.engine.nchwc): the filters reordered in numpy are the very filters ONNX
Runtime writes, the rewritten graph computes what the plain one does (within float
reassociation), and what the engine predicts is still what the exported file computes."""

from __future__ import annotations

import gc
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.engine import Engine, nchwc
from bitlens.core.engine.session import make_session
from bitlens.core.export import verdict
from bitlens.core.export.exporter import ExportOptions, export
from bitlens.core.export.fidelity import check_fidelity
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from bitlens.core.results import drain
from tests.core.export_models import random_feeds

BLOCK = nchwc.block_size()
needs_nchwc = pytest.mark.skipif(
    BLOCK is None, reason="ONNX Runtime has no NCHWc kernels on this machine"
)


def test_the_probe_finds_nchwc_kernels_on_x86() -> None:
    """MLAS's NCHWc kernels exist on every x86-64 CPU with AVX2 (block 8) or AVX-512
    (block 16), onnxruntime/core/mlas/lib/snchwc.cpp; the probe must find them there."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the block size is only known for x86-64")
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2" not in flags:
        pytest.skip("no AVX2 reported by /proc/cpuinfo")
    expected = 16 if " avx512f" in flags else 8
    assert expected == BLOCK


def _ort_reordered(w: np.ndarray, b: np.ndarray, cin_first: int) -> tuple[np.ndarray, np.ndarray]:
    """x[1,cin_first,9,9] -> Conv(48, 3x3) -> Conv(w, b): the second conv's filter and bias
    as ONNX Runtime's NchwcTransformer writes them (constant filters, ORT_ENABLE_ALL)."""
    w0 = np.random.default_rng(1).standard_normal((48, cin_first, 3, 3)).astype(np.float32)
    _, i, kh, kw = w.shape
    assert i == 48
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["h"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "w", "b"], ["y"], pads=[kh // 2, kw // 2] * 2),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin_first, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in ((w0, "w0"), (w, "w"), (b, "b"))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(so.optimized_model_filepath)
    inits = {t.name: numpy_helper.to_array(t) for t in opt.graph.initializer}
    conv = [n for n in opt.graph.node if n.domain == nchwc.DOMAIN and n.op_type == "Conv"][1]
    return inits[conv.input[1]], inits[conv.input[2]]


@needs_nchwc
def test_numpy_reorder_equals_onnx_runtimes_filters() -> None:
    """A partial output block (20 of 32), a non-square kernel: the layout's corners."""
    assert BLOCK is not None
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 48, 3, 5)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    filt, bias = _ort_reordered(w, b, 3)
    np.testing.assert_array_equal(nchwc.reorder_filter(w, BLOCK, "bibo"), filt)
    np.testing.assert_array_equal(nchwc.pad_bias(b, BLOCK), bias)


SPECS = [  # (out channels, kernel, attributes, bias, group, Relu after)
    (24, 3, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, True, 1, True),  # 3 in: NCHW input
    (20, 3, {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, True, 1, False),  # partial blocks
    (36, 1, {}, False, 1, True),  # pointwise, no bias
    (36, 3, {"pads": [1, 1, 1, 1]}, True, 36, False),  # depthwise, 36 of 48 channels
    (40, 3, {"auto_pad": "SAME_UPPER", "strides": [2, 1]}, True, 2, False),  # grouped: plain
    (32, 5, {"pads": [0, 2, 1, 2]}, True, 1, True),  # asymmetric pads
    (18, 1, {}, True, 1, False),  # 18 out: not a multiple of 4, kept plain
    (8, 3, {}, True, 1, False),  # 18 in, not a multiple of 4: kept plain
]
REWRITTEN = [0, 1, 2, 3, 5]  # the convs of SPECS on the NCHWc kernels


def conv_net() -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """x[N,3,H,W] -> the convs of SPECS in turn, filters and biases fed as graph inputs
    (as the engine's graphs feed them); every conv output is a graph output."""
    rng = np.random.default_rng(0)
    nodes, feeds = [], {}
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])]
    x, c = "x", 3
    for k, (o, ks, attrs, has_bias, group, relu) in enumerate(SPECS):
        feeds[f"w{k}"] = (rng.standard_normal((o, c // group, ks, ks)) / ks).astype(np.float32)
        names = [x, f"w{k}"]
        if has_bias:
            feeds[f"b{k}"] = rng.standard_normal(o).astype(np.float32)
            names.append(f"b{k}")
        for n in names[1:]:
            inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, feeds[n].shape))
        nodes.append(
            helper.make_node("Conv", names, [f"c{k}"], name=f"conv{k}", group=group, **attrs)
        )
        x, c = f"c{k}", o
        if relu:
            nodes.append(helper.make_node("Relu", [x], [f"r{k}"], name=f"relu{k}"))
            x = f"r{k}"
    outputs = [
        helper.make_tensor_value_info(f"c{k}", TensorProto.FLOAT, [None] * 4)
        for k in range(len(SPECS))
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "convs", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 13)],
    )
    model.ir_version = 8
    return model, feeds


def _close(got: np.ndarray, want: np.ndarray) -> None:
    """Within the fidelity check's float-reassociation bound (verdict.py)."""
    tol = verdict.reassociation_tolerance(want, verdict.UNIT_ROUNDOFF["fp32"])
    assert got.shape == want.shape
    assert float(np.max(np.abs(got - want))) <= tol


@needs_nchwc
def test_fed_convs_run_on_nchwc_and_equal_the_plain_convs() -> None:
    model, feeds = conv_net()
    x = np.random.default_rng(2).standard_normal((2, 3, 21, 25)).astype(np.float32)
    names = [o.name for o in model.graph.output]
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    fast = make_session(model, "cpu")
    assert isinstance(fast, nchwc.NchwcSession)
    rewritten = nchwc.rewrite(model, BLOCK)
    assert rewritten is not None
    graph, fed = rewritten
    assert {f.layout for f in fed.values()} == {"bo", "bibo", "bias"}
    on_nchwc = sorted(
        n.name for n in graph.graph.node if n.domain == nchwc.DOMAIN and n.op_type == "Conv"
    )
    assert on_nchwc == sorted(f"conv{k}{nchwc.SUFFIX}" for k in REWRITTEN)
    assert {n.name for n in graph.graph.node if n.op_type == "Conv" and not n.domain} == {
        "conv4", "conv6", "conv7"
    }  # fmt: skip
    assert [i.name for i in fast.get_inputs()] == [i.name for i in model.graph.input]
    want = plain.run(names, {"x": x, **feeds})
    for got, ref in zip(fast.run(names, {"x": x, **feeds}), want, strict=True):
        _close(got, ref)
    # new filter values in new arrays (a new format): reordered again, not the kept ones
    changed = {k: (v * 0.5 if k.startswith("w") else v) for k, v in feeds.items()}
    want2 = plain.run(names, {"x": x, **changed})
    for got, ref in zip(fast.run(names, {"x": x, **changed}), want2, strict=True):
        _close(got, ref)
    assert not np.allclose(want2[-1], want[-1])
    # a reordered copy is held only while its source array lives (no memory kept after)
    assert f"w0{nchwc.SUFFIX}" in nchwc.REORDERED._kept
    del changed
    gc.collect()
    assert f"w0{nchwc.SUFFIX}" not in nchwc.REORDERED._kept


def _conv_engine() -> Engine:
    model, feeds = conv_net()
    g = model.graph  # the filters as the file's constants, as a user's model has them
    init = {n: numpy_helper.from_array(v, n) for n, v in feeds.items()}
    g.initializer.extend(init.values())
    keep = [v for v in g.input if v.name not in init]
    del g.input[:]
    g.input.extend(keep)
    g.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    g.input[0].type.tensor_type.shape.dim[2].dim_value = 21
    g.input[0].type.tensor_type.shape.dim[3].dim_value = 25
    loaded = from_proto(model)
    return Engine(loaded, random_feeds(loaded.info, 4), device="cpu")


@needs_nchwc
def test_engine_on_nchwc_predicts_the_plain_engine_and_the_exported_file(
    tmp_path: Path, monkeypatch
) -> None:
    engine = _conv_engine()
    plan = Plan.preset(engine.info, "W8A8")
    got = engine.run_outputs(plan)
    sessions = [entry[1] for entry in engine._sessions.values() if entry[1] is not None]
    assert sessions and all(isinstance(s, nchwc.NchwcSession) for s in sessions)
    monkeypatch.setattr(nchwc, "ENABLED", False)
    plain = _conv_engine()
    want = plain.run_outputs(Plan.preset(plain.info, "W8A8"))
    assert not any(isinstance(e[1], nchwc.NchwcSession) for e in plain._sessions.values())
    monkeypatch.setattr(nchwc, "ENABLED", True)
    # Float reassociation can move an activation across a rounding boundary of its
    # quantizer: at most one step of that quantizer, a small share of the values.
    for name, values in want.items():
        for g, w in zip(got[name], values, strict=True):
            assert np.mean(np.abs(g - w) > 1e-5 * np.abs(w).max()) < 0.02
    result = drain(export(engine, plan, tmp_path / "w8a8.onnx", ExportOptions()))
    report = drain(check_fidelity(engine, plan, result, latency_budget_s=0.0))
    assert report.passed, report.failures


@needs_nchwc
def test_a_filter_a_subgraph_also_reads_stays_an_input() -> None:
    """x -> Conv(w) -> y, and an If whose branches read w from the outer scope: the rewrite
    feeds the conv the reordered filter and keeps w, which the If still reads."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    branch = lambda n: helper.make_graph(  # noqa: E731
        [helper.make_node("ReduceSum", ["w"], [f"s{n}"], keepdims=0)],
        f"b{n}",
        [],
        [helper.make_tensor_value_info(f"s{n}", TensorProto.FLOAT, [])],
    )
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("If", ["c"], ["s"], then_branch=branch(0), else_branch=branch(1)),
    ]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
        helper.make_tensor_value_info("w", TensorProto.FLOAT, [16, 3, 3, 3]),
        helper.make_tensor_value_info("c", TensorProto.BOOL, []),
    ]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, 8, 8]),
        helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs), opset_imports=[helper.make_opsetid("", 13)]
    )
    model.ir_version = 8
    fast = make_session(model, "cpu")
    assert isinstance(fast, nchwc.NchwcSession)
    assert "w" in {i.name for i in fast._session.get_inputs()}
    feeds = {"x": rng.standard_normal((1, 3, 8, 8)).astype(np.float32), "w": w, "c": np.array(True)}
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(fast.run(["y", "s"], feeds), plain.run(["y", "s"], feeds), strict=True):
        _close(got, want)


@needs_nchwc
def test_a_rewritten_graph_onnx_runtime_refuses_leaves_the_plain_graph(monkeypatch) -> None:
    model, feeds = conv_net()
    rewrite = nchwc.nchwc_graph

    def refused(m: onnx.ModelProto, providers):
        graph, wrap = rewrite(m, providers)
        for node in graph.graph.node:
            if node.op_type == "ReorderOutput":
                del node.attribute[:]  # its required "channels"
        return graph, wrap

    monkeypatch.setattr(nchwc, "nchwc_graph", refused)
    sess = make_session(model, "cpu")
    assert not isinstance(sess, nchwc.NchwcSession)
    x = np.random.default_rng(2).standard_normal((1, 3, 21, 25)).astype(np.float32)
    plain = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for got, want in zip(
        sess.run(["c7"], {"x": x, **feeds}), plain.run(["c7"], {"x": x, **feeds}), strict=True
    ):
        np.testing.assert_array_equal(got, want)
