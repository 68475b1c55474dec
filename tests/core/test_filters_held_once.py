"""A conv model's filters of 64 KiB to 1 MiB (most of a conv model's weights: the benchmark
CRNN has none of 1 MiB) are held once: written at load to the scratch map and gone from
the parsed proto (core/model/rawspill.py), fed by the engine as views of that map
(core/engine/weightspill.py), with every number the same as with decoded filters. Below
1 MiB they were held twice, in the proto and decoded."""

from __future__ import annotations

import errno

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, rewrite, weightspill
from bitlens.core.model import rawspill
from bitlens.core.model.external import is_external, release_pages
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.plan import LayerChoice, Plan


def conv_stack() -> onnx.ModelProto:
    """3 -> 64 -> 64 -> 64 channels, 3x3 convs with biases and Relus: filters of 6.75 KiB
    (stays in the proto) and two of 144 KiB."""
    rng = np.random.default_rng(7)
    shapes = [(64, 3, 3, 3), (64, 64, 3, 3), (64, 64, 3, 3)]
    inits, nodes, x = [], [], "x"
    for i, shape in enumerate(shapes):
        w = (rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        b = (0.1 * rng.standard_normal(shape[0])).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1] * 4))
        x = f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [x]))
    graph = helper.make_graph(
        nodes,
        "conv_stack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 64, 12, 12])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def _plans(info) -> list[Plan]:
    base = Plan.preset(info, "W8A8")
    names = info.layer_names
    return [base, base.with_choices({names[1]: LayerChoice.of("int4 sym ch", "uint8 asym")})]


def test_filters_under_one_mib_are_held_once_and_change_no_number(tmp_path, monkeypatch) -> None:
    proto = conv_stack()
    path = tmp_path / "convs.onnx"
    onnx.save(proto, path)
    mid = {"w1", "w2"}  # 147456 bytes each
    loaded = load_model(path)
    inits = {t.name: t for t in loaded.graph_proto.graph.initializer}
    assert {n for n, t in inits.items() if is_external(t)} == mid  # the proto holds none
    assert inits["w0"].raw_data  # small: stays in the proto
    data = Dataset.random(loaded.info, n=4, seed=3, dims={"N": 2})
    engine = Engine(loaded, data, device="cpu")
    got = [engine.evaluate(p) for p in _plans(loaded.info)]
    feeds = engine._float_weights()
    for t in proto.graph.initializer:
        if t.name in mid:
            assert release_pages(feeds[t.name]), f"{t.name} is fed decoded, not from the map"
            np.testing.assert_array_equal(feeds[t.name], numpy_helper.to_array(t))
    assert not release_pages(feeds["w0"])
    # the straightforward way: every filter decoded from the proto
    monkeypatch.setattr(rawspill, "RAW_SPILL_MIN_BYTES", 1 << 62)
    monkeypatch.setattr(weightspill, "SPILL_MIN_BYTES", 1 << 62)
    plain = load_model(path)
    assert not any(is_external(t) for t in plain.graph_proto.graph.initializer)
    fed = [w for la in plain.info.layers for w in rewrite.fed_constants(la)]
    plain_engine = Engine(plain, data, device="cpu")
    assert [plain_engine.evaluate(p) for p in _plans(plain.info)] == got
    assert not any(release_pages(plain.weight(w)) for w in fed)


def test_no_room_for_the_scratch_file_keeps_the_decoded_filters(monkeypatch) -> None:
    """A full temporary folder is not an error: the engine feeds the decoded filters, with
    the same numbers as when they are mapped (the loader's spill already falls back so)."""
    monkeypatch.setattr(weightspill, "SPILL_MIN_BYTES", 0)  # whatever the bound
    proto = conv_stack()
    mapped = from_proto(proto)  # no file: the engine's spill, not the loader's
    data = Dataset.random(mapped.info, n=4, seed=3, dims={"N": 2})
    want = [Engine(mapped, data, device="cpu").evaluate(p) for p in _plans(mapped.info)]
    assert release_pages(mapped.weight("w1"))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(weightspill.tempfile, "TemporaryFile", full)
    decoded = from_proto(proto)
    engine = Engine(decoded, data, device="cpu")
    assert [engine.evaluate(p) for p in _plans(decoded.info)] == want
    assert not release_pages(engine._float_weights()["w1"])


def test_a_plan_larger_than_the_weight_cache_quantizes_each_weight_once(monkeypatch) -> None:
    """The integer-kernel biases round on the scales of the weights the plan's feeds just
    quantized; with the weight cache too small for the plan (a 2.68 GB model against 512
    MiB) each weight was quantized a second time for it. The same evaluations either way."""
    proto = conv_stack()
    roomy, tight = from_proto(proto), from_proto(proto)
    data = Dataset.random(roomy.info, n=4, seed=3, dims={"N": 2})
    want = [Engine(roomy, data, device="cpu").evaluate(p) for p in _plans(roomy.info)]
    engine = Engine(tight, data, device="cpu")
    engine.__dict__["_wcache_limit"] = 1  # room for one weight at a time
    made: list[tuple[str, str]] = []
    in_feeds: list[list[tuple[str, str]]] = []  # what each plan's feeds quantized
    real, real_feeds = engine._quantize_now, engine._plan_feeds

    def counted(w, fmt):
        made.append((w.name, fmt.name))
        return real(w, fmt)

    def plan_feeds(*args, **kwargs):
        start = len(made)
        out = real_feeds(*args, **kwargs)
        in_feeds.append(made[start:])
        return out

    monkeypatch.setattr(engine, "_quantize_now", counted)
    monkeypatch.setattr(engine, "_plan_feeds", plan_feeds)
    assert [engine.evaluate(p) for p in _plans(tight.info)] == want
    assert sorted(in_feeds[0]) == [(f"w{i}", "int8 sym ch0") for i in range(3)], in_feeds
