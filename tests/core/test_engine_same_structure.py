"""Plans whose target quantizes the same tensors the same way, listed in another order or
for another reason, share one simulation graph and the values kept before a change
(structure.py ``_structure_of``, prefix.placed_in_order): the first layer of a residual
block at int4 no longer built a new graph and sessions, and gives the same numbers as the
straightforward engine."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core import targets
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, rewrite
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from tests.core.engine_models import IR_VERSION


def residual_cnn(seed: int = 0) -> onnx.ModelProto:
    """x[N,3,8,8] -> conv0 -> Relu -> r0; conv1 (3x3) -> Relu -> conv2 (1x1); Add(r0, c2) ->
    Relu -> conv3 -> y: a CRNN's residual block, whose first conv's output the target
    quantizes both as a QLinearConv's output and as the Add's input."""
    rng = np.random.default_rng(seed)

    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        fan = int(np.prod(shape[1:]))
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * np.sqrt(2.0 / fan)).astype(np.float32), name
        )

    def b(name: str, n: int) -> onnx.TensorProto:
        return numpy_helper.from_array((0.05 * rng.standard_normal(n)).astype(np.float32), name)

    inits = [w("W0", (8, 3, 3, 3)), b("B0", 8), w("W1", (8, 8, 3, 3)), b("B1", 8)]
    inits += [w("W2", (8, 8, 1, 1)), b("B2", 8), w("W3", (4, 8, 3, 3)), b("B3", 4)]
    pads = {"pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "W0", "B0"], ["c0"], name="conv0", **pads),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "W1", "B1"], ["c1"], name="conv1", **pads),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "W2", "B2"], ["c2"], name="conv2"),
        helper.make_node("Add", ["r0", "c2"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["sr"], name="addrelu"),
        helper.make_node("Conv", ["sr", "W3", "B3"], ["y"], name="conv3", **pads),
    ]
    g = helper.make_graph(
        nodes,
        "residual_cnn",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, 8, 8])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    onnx.checker.check_model(m)
    return m


def test_same_target_quantizers_in_another_order_are_one_structure(monkeypatch) -> None:
    loaded = from_proto(residual_cnn())
    info = loaded.info
    base = Plan.preset(info, "W8A8")
    # int3 in blocks: no integer kernel (every width per tensor or channel is one since
    # session 10)
    first = base.with_choices({"conv0": LayerChoice.of("int3 sym blk16", "uint8 asym")})
    a, b = targets.placement(base), targets.placement(first)
    # the case: one set of tensors, in another order, r0 placed for another reason
    assert set(a) == set(b) and list(a) != list(b)
    assert a["r0"].grid == b["r0"].grid and a["r0"].reason != b["r0"].reason
    data = Dataset.random(info, n=4, seed=3, dims={"N": 2})
    built = []
    real = rewrite.build_sim
    monkeypatch.setattr(rewrite, "build_sim", lambda *a, **k: built.append(1) or real(*a, **k))
    fast = Engine(loaded, data, device="cpu")
    plans = [base, first, base.with_choices({"conv0": LayerChoice.of("int2 sym blk16", "uint8 asym")})]
    plans += [base, base.with_choices({"conv3": LayerChoice.of("int4 sym ch", "uint8 asym")})]
    got = [fast.evaluate(p) for p in plans]
    simulated = len(built)
    slow = Engine(loaded, data, device="cpu")
    slow.reuse_prefix = False
    slow.skip_redundant = False
    want = [slow.evaluate(p) for p in plans]
    assert got == want
    # the float reference's graph and W8A8's, shared by conv0 at int3 and int2 and conv3 at
    # int4 (its output is the model's: no target quantizer moves)
    assert simulated == 2
    assert fast._structure_of(base)[1] == fast._structure_of(first)[1]
    cuts = fast._cuts[fast._structure(*fast._structure_of(base))]
    keys_base, _ = fast._state_keys(base, cuts)
    keys_first, _ = fast._state_keys(first, cuts)
    assert keys_base[0] == keys_first[0]  # before conv0: nothing differs
