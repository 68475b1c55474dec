"""MACs and BOPs per layer, against shapes ONNX Runtime actually produces."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort

from bitlens.core.compute import Compute, count_macs, describe_totals, input_shapes
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from tests import builders
from tests.core.export_models import conv_net, random_feeds


def _ort_shapes(proto, feeds) -> dict[str, tuple[int, ...]]:
    """Every node output's shape as ONNX Runtime computes it (the independent reference)."""
    m = proto.__class__()
    m.CopyFrom(proto)
    known = {o.name for o in m.graph.output}
    for n in m.graph.node:
        for o in n.output:
            if o not in known:
                m.graph.output.add().name = o
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, (v.shape for v in sess.run(names, feeds)), strict=True))


def test_conv_and_gemm_macs_follow_the_run_shapes_and_the_batch() -> None:
    proto = conv_net(channels=8)
    model = from_proto(proto)
    data = random_feeds(model.info, 2, dims={"N": 3})
    comp = count_macs(proto, model.info, {"x": data.samples[0]["x"].shape})  # batch 3
    ran = _ort_shapes(proto, data.samples[0])
    for layer in model.info.layers:
        w = layer.weights[0].shape
        out = ran[layer.outputs[0]]
        k = math.prod(w[1:]) if layer.op_type == "Conv" else w[1]  # Gemm transB=1: [N, K]
        assert comp.macs[layer.name] == math.prod(out) * k, layer.name
    one = count_macs(proto, model.info, input_shapes(model.info))  # no data: batch 1
    assert one.total_macs * 3 == sum(comp.macs.values())
    assert input_shapes(model.info, data) == {"x": (1, 3, 16, 16)}  # per sample


def test_recurrent_and_matmul_macs_and_bops_of_a_plan() -> None:
    gru = from_proto(builders.stateful_gru())
    comp = count_macs(builders.stateful_gru(), gru.info, input_shapes(gru.info))
    assert comp.macs["gru"] == 3 * 1 * 3 * 4 * (5 + 4)  # T * batch * gates * H * (I + H)
    proto = builders.mlp()
    mlp = from_proto(proto)
    comp = count_macs(proto, mlp.info, input_shapes(mlp.info))
    x = np.zeros((2, 16), np.float32)
    ran = _ort_shapes(proto, {"x": x})
    for layer in mlp.info.layers:
        assert comp.macs[layer.name] == math.prod(ran[layer.outputs[0]]) * layer.weights[0].shape[0]
    plan = Plan.uniform(mlp.info, "int4 sym ch", "uint8 asym")
    bops = comp.bops(mlp.info, plan)
    assert all(bops[n] == comp.macs[n] * 4 * 8 for n in bops)
    assert comp.total_bops(mlp.info, None) == comp.total_macs * 32 * 32
    d = comp.to_dict(mlp.info, plan)
    assert d["total_bops"] == comp.total_macs * 32 and d["total_macs"] == comp.total_macs


def test_layers_sized_only_through_computed_pads_and_reshape_targets_are_counted() -> None:
    """Pads through ConstantOfShape/Concat/Cast and a Reshape target through Shape/Concat
    (how open_nsfw's ResNet-50 is exported): plain shape inference sizes neither layer."""
    proto = builders.pad_by_computed_amounts()
    model = from_proto(proto)
    shapes = input_shapes(model.info, dims={"N": 2})
    comp = count_macs(proto, model.info, shapes)
    ran = _ort_shapes(proto, {"x": np.zeros((2, 3, 8, 8), np.float32)})
    assert ran["c"] == (2, 8, 8, 8) and ran["y"] == (2, 4)
    assert comp.macs == {"conv": math.prod(ran["c"]) * 3 * 3 * 3, "fc": math.prod(ran["y"]) * 512}
    assert comp.unknown == ()


def test_unknown_macs_are_said_unknown_and_left_out_of_the_totals() -> None:
    proto = builders.mlp()
    info = from_proto(proto).info
    names = [la.name for la in info.layers]
    none = Compute(dict.fromkeys(names), {"x": (1, 16)})
    assert none.unknown == tuple(names)
    assert describe_totals(none.to_dict(info, None)).startswith("MACs unknown: no layer's sizes")
    some = Compute({names[0]: 100, **dict.fromkeys(names[1:])}, {"x": (1, 16)})
    text = describe_totals(some.to_dict(info, None), bops=False)
    assert text.startswith("100 MACs per sample at x [1, 16]")
    assert f"{len(names) - 1} of {len(names)} layers unknown" in text
    # only zero-MAC layers known (an embedding's Gather before GRUs of unknown length)
    zero = Compute({names[0]: 0, **dict.fromkeys(names[1:])}, {"x": (1, 16)})
    assert describe_totals(zero.to_dict(info, None)).startswith("MACs unknown: no layer's sizes")


def test_an_input_shorter_than_the_kernel_counts_unknown_not_negative() -> None:
    """ONNX inference sizes a Conv over 3 samples with a 5-tap kernel as -1 long (seen on
    openWakeWord's melspectrogram at 32 samples): unknown, never a negative count."""
    from onnx import helper

    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
        "short",
        [helper.make_tensor_value_info("x", builders.FLOAT, [1, 1, "T"])],
        [helper.make_tensor_value_info("y", builders.FLOAT, [1, 2, "U"])],
        [builders.init("w", builders.weights((2, 1, 5), seed=1))],
    )
    proto = builders.model(g)
    info = from_proto(proto).info
    assert count_macs(proto, info, {"x": (1, 1, 3)}).macs == {"conv": None}
    assert count_macs(proto, info, {"x": (1, 1, 9)}).macs == {"conv": 2 * 5 * 5}
