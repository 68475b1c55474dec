"""Bitlens's int8 export vs ONNX Runtime's ``quantize_static`` on a CNN and a transformer.

Both quantize the same float model from the same calibration samples with
min-max ranges, QDQ format, per-channel int8 weights and uint8 activations:

* **bitlens W8A8**: ``Plan.preset(W8A8)`` (every Conv/MatMul/Gemm input and
  weight), exported with :func:`bitlens.core.export.fidelity.export_and_check`;
* **ort all ops**: ``quantize_static`` with its defaults (it also quantizes
  pooling, Add, Softmax... outputs: more integer kernels, more error);
* **ort same ops**: ``quantize_static`` restricted to Conv/MatMul/Gemm, i.e.
  the same tensors Bitlens quantizes.

Printed per model: median latency of each export in a default ONNX Runtime
session (single-sample batch, interleaved rounds), the ratio of Bitlens's to
ORT's (target <= 1.0 against "ort same ops"; sessions single-threaded),
the output SQNR of each
against the float model on the evaluation samples, and file sizes. A few
Bitlens-only low-bit exports follow for size and speed.

quantize_static also quantizes every Conv/MatMul *output*; a Bitlens plan
quantizes layer inputs only. Where a Conv's output reaches the next
quantizer only through something like GlobalAveragePool (the CNN's last
conv), ONNX Runtime has no integer kernel for it without that extra
rounding, so Bitlens keeps that conv in float (exactly as simulated, with
its weights folded) while quantize_static runs it as QLinearConv.

Run: ``.venv/bin/python benchmarks/bench_export.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import ExportOptions
from bitlens.core.export.fidelity import export_and_check
from bitlens.core.metrics import sqnr_db
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import Plan

ROUNDS = 7  # interleaved timing rounds
RUNS = 30  # runs per model per round
SAMPLES = 16  # 8 calibrate, 8 evaluate
THREADS = 1


def cnn() -> onnx.ModelProto:
    """x[1,3,96,96] -> 6 x (Conv 3x3 + Relu), stride 2 every other -> GAP -> Gemm(1000)."""
    rng = np.random.default_rng(0)
    chans = [(3, 32, 2), (32, 64, 1), (64, 64, 2), (64, 128, 1), (128, 128, 2), (128, 256, 1)]
    nodes, inits, x = [], [], "x"
    for i, (cin, cout, stride) in enumerate(chans):
        w = rng.normal(0, np.sqrt(2 / (cin * 9)), (cout, cin, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")]
        nodes += [
            helper.make_node("Conv", [x, f"W{i}", f"B{i}"], [f"c{i}"], name=f"conv{i}",
                             pads=[1, 1, 1, 1], strides=[stride, stride]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]  # fmt: skip
        x = f"r{i}"
    wf = rng.normal(0, np.sqrt(1 / 256), (1000, 256)).astype(np.float32)
    inits += [numpy_helper.from_array(wf, "Wfc"), numpy_helper.from_array(np.zeros(1000, np.float32), "Bfc")]  # fmt: skip
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "Wfc", "Bfc"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes, "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 96, 96])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])], inits,
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
    nodes.append(mk("Identity", [x], ["y"]))
    g = helper.make_graph(
        nodes, "transformer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, seq, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, seq, d])], inits,
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
) -> list[dict[str, float]]:
    """Per round, the median ms of each model; rounds interleave the models so that load
    from other processes on a shared machine hits them alike (compare within a round)."""
    for s in sessions.values():
        for _ in range(5):
            s.run(None, feed)
    rounds = []
    for _ in range(ROUNDS):
        times: dict[str, float] = {}
        for name, s in sessions.items():
            runs = []
            for _ in range(RUNS):
                t0 = time.perf_counter()
                s.run(None, feed)
                runs.append(time.perf_counter() - t0)
            times[name] = 1000 * statistics.median(runs)
        rounds.append(times)
    return rounds


def bench(
    name: str, proto: onnx.ModelProto, extra: list[tuple[str, str | None, ExportOptions]], tmp: Path
) -> None:
    src = tmp / f"{name}.onnx"
    onnx.save(proto, str(src))
    model = from_proto(proto, src)
    rng = np.random.default_rng(2)
    shape = [int(d) for d in model.info.inputs[0].shape]  # type: ignore[union-attr]
    feeds = tuple({"x": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(SAMPLES))
    data = Dataset(feeds, source="random")
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    cal = [feeds[i] for i in data.calibration]
    ev = [feeds[i] for i in data.evaluation]

    paths: dict[str, Path] = {"float": src}
    checks: dict[str, str] = {}
    t0 = time.perf_counter()
    plans = [("bitlens W8A8", "W8A8", ExportOptions())] + [
        (f"bitlens {k}", v, o) for k, v, o in extra
    ]
    for label, preset, options in plans:
        out = tmp / f"{name}_{label.split()[1]}.onnx"
        gen = export_and_check(
            engine, Plan.preset(engine.info, preset), out, options, latency_budget_s=0.0
        )
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            report = stop.value
        paths[label] = out
        probed = [q.max_lsb for q in report.quantizers if q.max_lsb is not None]
        kernels = sorted({la.kernel for la in report.layers})
        checks[label] = (
            f"fidelity {'passed' if report.passed else 'FAILED'}"
            + (f", max {max(probed):.0f} LSB" if probed else "")
            + f"; ran {', '.join(kernels)}"
        )
    t_bitlens = time.perf_counter() - t0
    for label, ops in (("ort all ops", None), ("ort same ops", ["Conv", "MatMul", "Gemm"])):
        out = tmp / f"{name}_{label.replace(' ', '_')}.onnx"
        ort_static(src, out, cal, ops)
        paths[label] = out

    sessions = {k: session(p) for k, p in paths.items()}
    ref = [sessions["float"].run(None, f)[0] for f in ev]
    sqnr = {
        k: sqnr_db(np.concatenate(ref), np.concatenate([s.run(None, f)[0] for f in ev]))
        for k, s in sessions.items() if k != "float"
    }  # fmt: skip
    rounds = latencies(sessions, ev[0])
    lat = {k: statistics.median(r[k] for r in rounds) for k in sessions}

    def ratio(a: str, b: str) -> float:  # median over rounds of the within-round ratio
        return statistics.median(r[a] / r[b] for r in rounds)

    print(f"\n{name}: {model.info.params / 1e6:.2f} M weights; "
          f"Bitlens export + fidelity check of {len(plans)} plans took {t_bitlens:.1f} s")  # fmt: skip
    print(
        f"{'model':16s} {'latency ms':>10s} {'vs float':>8s} {'SQNR dB':>8s} {'size KiB':>9s}  notes"
    )
    for k, p in paths.items():
        db = "-" if k == "float" else f"{sqnr[k]:.1f}"
        print(f"{k:16s} {lat[k]:10.3f} {ratio(k, 'float'):8.2f} {db:>8s} "
              f"{p.stat().st_size / 1024:9.0f}  {checks.get(k, '')}")  # fmt: skip
    for ort_label in ("ort same ops", "ort all ops"):
        print(f"latency bitlens W8A8 / {ort_label}: {ratio('bitlens W8A8', ort_label):.2f}")


def main() -> None:
    print(
        f"onnxruntime {ort.__version__} on CPU; default graph optimizations, "
        f"{THREADS} thread, batch 1"
    )
    with tempfile.TemporaryDirectory(prefix="bitlens-bench-") as tmp:
        bench("cnn", cnn(), [("W4A8", "W4A8", ExportOptions())], Path(tmp))
        bench(
            "transformer",
            transformer(),
            [
                ("W4A16", "W4A16", ExportOptions(matmulnbits=True)),
                ("W2A16", "W2A16", ExportOptions()),
            ],
            Path(tmp),
        )


if __name__ == "__main__":
    main()
