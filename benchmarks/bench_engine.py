"""Re-evaluation speed: Bitlens's engine vs the route users take today.

Today: change one layer's quantization, run ``onnxruntime.quantization.
quantize_static`` (QDQ, per-channel) for that layer, open a new
InferenceSession on the result and run the samples. Bitlens: change the
layer in the plan and call ``Engine.evaluate`` (one numpy quantization,
one run of a session that already exists). Both on the same ~10 MB CNN and
the same 8 samples (4 calibrate, 4 evaluate). Also times a full sensitivity
sweep at 4 formats per layer.

Run: ``.venv/bin/python benchmarks/bench_engine.py`` (targets: ratio >= 20x,
re-evaluation < 1 s, sweep < 60 s on a 2-core machine).
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan

CHANNELS = (3, 32, 64, 128, 256, 512)
CLASSES = 1000
SIDES = (64, 128)  # input sizes; the engine's cost grows with compute, quantize_static's barely


def cnn(side: int) -> onnx.ModelProto:
    """Conv(3x3, stride 2)+Relu x5 -> GlobalAveragePool -> Gemm: about 2.1 M weights (8.5 MB)."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "x"
    for i, (cin, cout) in enumerate(itertools.pairwise(CHANNELS)):
        w = rng.normal(0, np.sqrt(2 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.01, cout).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"W{i}", f"B{i}"],
                [f"c{i}"],
                name=f"conv{i}",
                pads=[1, 1, 1, 1],
                strides=[2, 2],
            )
        )
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        x = f"r{i}"
    wf = rng.normal(0, np.sqrt(1 / CHANNELS[-1]), (CLASSES, CHANNELS[-1])).astype(np.float32)
    inits += [
        numpy_helper.from_array(wf, "Wfc"),
        numpy_helper.from_array(np.zeros(CLASSES, np.float32), "Bfc"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bench_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return model


def today_route(path: Path, weight: str, bits: int, data: Dataset, out: Path) -> float:
    """The whole W8A8 plan with one layer's weights at ``bits`` through quantize_static
    (the change as a TensorQuantOverrides entry), then a new session and a run."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter([data.samples[i] for i in data.calibration])

        def get_next(self):  # type: ignore[override]
            return next(self.it, None)

    qtype = {8: QuantType.QInt8, 4: QuantType.QInt4}[bits]
    t0 = time.perf_counter()
    quantize_static(
        str(path),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["Conv", "Gemm"],
        extra_options={"TensorQuantOverrides": {weight: [{"quant_type": qtype, "axis": 0}]}},
    )
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for i in data.evaluation:
        sess.run(None, data.samples[i])
    return time.perf_counter() - t0


def bench(side: int) -> None:
    model = cnn(side)
    nbytes = sum(t.ByteSize() for t in model.graph.initializer)
    loaded = from_proto(model)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 3, side, side)).astype(np.float32)
    data = Dataset.from_arrays(loaded.info, {"x": x})  # 4 calibrate, 4 evaluate, batched
    engine = Engine(loaded, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    layers = [layer.name for layer in loaded.info.layers]
    target = layers[len(layers) // 2]
    plan = Plan.preset(loaded.info, "W8A8")
    engine.evaluate(plan)  # warm: sessions built, weights quantized once

    changes = [4, 8, 4, 8, 4]  # the target layer's weight bits, alternating
    bitlens_times = []
    for bits in changes:
        plan = plan.with_choices({target: LayerChoice.of(f"int{bits} sym ch", "uint8 asym")})
        t0 = time.perf_counter()
        engine.evaluate(plan)
        bitlens_times.append(time.perf_counter() - t0)
    # The worst case for the engine's caches: the first layer changes, so every layer
    # downstream is re-measured.
    first_times = []
    for bits in changes:
        plan = plan.with_choices({layers[0]: LayerChoice.of(f"int{bits} sym ch", "uint8 asym")})
        t0 = time.perf_counter()
        engine.evaluate(plan)
        first_times.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "cnn.onnx"
        onnx.save(model, src)
        weight = loaded.info.layer(target).weights[0].name
        today = [
            today_route(src, weight, bits, data, Path(tmp) / f"q{i}.onnx")
            for i, bits in enumerate(changes[:3])
        ]

    t0 = time.perf_counter()
    gen = engine.sweep(["int8 sym ch", "int4 sym ch", "int2 sym ch", "bin ch"])
    try:
        while True:
            next(gen)
    except StopIteration:
        pass
    sweep_s = time.perf_counter() - t0

    b, t = statistics.median(bitlens_times), statistics.median(today)
    print(
        f"\nmodel: {len(layers)} layers, {nbytes / 1e6:.1f} MB of weights, input {side}x{side}, "
        "8 samples (4 calibrate / 4 evaluate)"
    )
    print(f"providers: {', '.join(engine.providers)}")
    print(
        f"re-evaluate one layer, Bitlens engine     : {1000 * b:8.1f} ms (median of {len(bitlens_times)})"
    )
    print(
        f"quantize_static + new session + run       : {1000 * t:8.1f} ms (median of {len(today)})"
    )
    f = statistics.median(first_times)
    print(f"  ... when the first layer changes        : {1000 * f:8.1f} ms ({t / f:.1f}x)")
    print(f"speed-up                                  : {t / b:8.1f}x  (target >= 20x, < 1 s)")
    print(f"full sweep, {len(layers)} layers x 4 formats      : {sweep_s:8.1f} s   (target < 60 s)")


def main() -> None:
    for side in SIDES:
        bench(side)


if __name__ == "__main__":
    main()
