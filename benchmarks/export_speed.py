"""The export row of issue 11: calibrate + W8A8 export + fidelity check, timed against one
float forward pass and against ONNX Runtime's ``quantize_static`` route, in the same run.

What is timed is what ``bitlens export MODEL --preset W8A8`` does after reading the model
and the data: the engine, min-max calibration, the preflight (opset), the export and the
whole fidelity check with its default latency budget (the report's latency row times the
export and the float model for at least 1.5 s each). Baselines:

- one float forward pass: a plain ONNX Runtime session (default options, built beforehand)
  running the evaluation feeds once;
- the ``quantize_static`` route: QDQ W8A8 (per-channel int8 weights, uint8 activations,
  min-max on the same calibration feeds), a new session on its file and one run of the
  evaluation feeds; that route checks nothing.

Rounds interleave the two routes so that load from other processes hits both alike; each
ratio is the median over rounds of the within-round ratio. Peak RSS is the process's.

Run: ``PYTHONPATH=app python benchmarks/bench_export.py --speed`` (the realistic CRNN of
bench_models.py, 8 samples of 1x3x48x320) or ``--speed --model FILE --dim NAME=SIZE``.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import version_converter
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import crnn
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.export import fidelity
from bitlens.core.export.exporter import ExportOptions, preflight
from bitlens.core.export.fidelity import export_and_check
from bitlens.core.export.latency import median_latencies
from bitlens.core.model.loader import load_model
from bitlens.core.plan import Plan
from bitlens.core.results import drain


class _Reader:
    """A CalibrationDataReader (duck-typed: quantize_static only calls get_next)."""

    def __init__(self, feeds):
        self._it = iter(feeds)

    def get_next(self):
        return next(self._it, None)


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()  # default options, all threads: what a user's session gets
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


_latency_s: list[float] = []  # seconds spent in the report's latency row, per check


def _timed_latency(*args, **kwargs):
    t0 = time.perf_counter()
    try:
        return median_latencies(*args, **kwargs)
    finally:
        _latency_s.append(time.perf_counter() - t0)


fidelity.median_latencies = _timed_latency  # the fidelity check looks it up at call time


def bitlens_route(path: Path, data: Dataset, out: Path) -> dict[str, float]:
    """Seconds of each step of `bitlens export --preset W8A8` after loading, and of the
    fidelity check's latency row within the export + check."""
    _latency_s.clear()
    t0 = time.perf_counter()
    model = load_model(path)
    engine = Engine(model, data, device="cpu")
    plan = Plan.preset(model.info, "W8A8")
    prepared = preflight(engine, plan, ExportOptions(), out)
    t1 = time.perf_counter()
    drain(engine.calibrate("minmax"))
    t2 = time.perf_counter()
    report = drain(export_and_check(engine, plan, out, ExportOptions(), prepared=prepared))
    t3 = time.perf_counter()
    engine.close()
    if not report.passed:
        raise SystemExit(f"the fidelity check failed: {report.failures}")
    return {
        "open": t1 - t0, "calibrate": t2 - t1, "export": t3 - t2, "total": t3 - t0,
        "latency": sum(_latency_s),
    }  # fmt: skip


def ort_route(src: Path, data: Dataset, out: Path) -> float:
    t0 = time.perf_counter()
    quantize_static(
        str(src), str(out), _Reader([data.samples[i] for i in data.calibration]),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )  # fmt: skip
    sess = _session(out)
    for i in data.evaluation:
        sess.run(None, data.samples[i])
    return time.perf_counter() - t0


def export_speed(
    path: Path | None, dims: dict[str, int], samples: int = 8, rounds: int = 3
) -> None:
    with tempfile.TemporaryDirectory(prefix="bitlens-speed-") as tmp:
        if path is None:
            path = Path(tmp) / "crnn.onnx"
            onnx.save(crnn(), path)
            dims = {"N": 1, **dims}
        label = "generated CRNN-like recognizer" if path.parent == Path(tmp) else str(path)
        model = load_model(path)
        data = Dataset.random(model.info, n=samples, dims=dims, seed=1)
        ort_src = path
        proto = onnx.load(str(path))
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:  # quantize_static writes per-channel DequantizeLinear (opset 13)
            ort_src = Path(tmp) / "opset13.onnx"
            onnx.save(version_converter.convert_version(proto, 13), str(ort_src))
        del proto, model
        plain = _session(path)

        def float_pass() -> float:
            t0 = time.perf_counter()
            for i in data.evaluation:
                plain.run(None, data.samples[i])
            return time.perf_counter() - t0

        float_pass()  # warm
        rows = []
        for r in range(rounds):
            f = statistics.median(float_pass() for _ in range(5))
            b = bitlens_route(path, data, Path(tmp) / f"b{r}.onnx")
            q = ort_route(ort_src, data, Path(tmp) / f"q{r}.onnx")
            rows.append({"float": f, "ort": q, **b})

    def med(key: str) -> float:
        return statistics.median(row[key] for row in rows)

    def ratio(key: str, base: str) -> float:
        return statistics.median(row[key] / row[base] for row in rows)

    print(
        f"\n== export speed: {label}, {samples} samples: {len(data.calibration)} calibration "
        f"and {len(data.evaluation)} evaluation feeds (batched), {rounds} rounds, load "
        f"average {os.getloadavg()[0]:.1f}"
    )
    print(f"  one float forward pass of the evaluation feeds: {1000 * med('float'):.0f} ms")
    print(
        f"  quantize_static + session + run             : {med('ort'):.2f} s "
        f"= {ratio('ort', 'float'):.0f}x a float pass"
    )
    print(
        f"  bitlens: open {med('open'):.2f} s, calibrate {med('calibrate'):.2f} s, export + "
        f"fidelity check {med('export'):.2f} s"
    )
    print(
        f"  of which the report's latency row (export and float model timed in turn): "
        f"{med('latency'):.2f} s = {ratio('latency', 'float'):.0f}x a float pass; the rest "
        f"{statistics.median(r['total'] - r['latency'] for r in rows):.2f} s = "
        f"{statistics.median((r['total'] - r['latency']) / r['float'] for r in rows):.0f}x"
    )
    print(
        f"calibrate + export + fidelity: {med('total'):.2f} s = {ratio('total', 'float'):.0f}x "
        f"a float pass = {ratio('total', 'ort'):.1f}x the quantize_static route "
        f"(target < 20 s); peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    np.seterr(all="ignore")
    export_speed(Path(sys.argv[1]) if len(sys.argv) > 1 else None, {})
