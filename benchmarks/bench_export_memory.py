"""Export and evaluation time and memory on a real model (issue 11's memory and export rows).

For a model and its data (``--data``, any layout ``bitlens`` reads), each in a fresh process
so that its peak RSS is its own, as a user runs them:

- ``bitlens export MODEL --preset W8A8 --data D -o OUT`` (calibration, export, the whole
  fidelity check with its default latency row): wall and CPU time, peak RSS;
- ``bitlens eval MODEL --preset W8A8 --data D``: peak RSS.

Each peak is taken above the RSS of the interpreter and the libraries once imported (the
high-water mark restarts there, Linux ``clear_refs``), and set against issue 11's bound:
4 x the model file's size + 2 x the float activations of one batch (every float tensor the
model computes for one evaluation feed, bench_engine.batch_activations). Time baselines,
measured in the same run: one float forward pass of the evaluation feeds (a plain default
session, built beforehand) and ``quantize_static`` (QDQ W8A8, min-max on the calibration
feeds) + a new session + that pass, the route without Bitlens. The export row's target is
< 20 s including the fidelity check; on a shared machine its CPU time says more than its
wall time, and the ratios to the float pass more than either.

Run: ``PYTHONPATH=app python benchmarks/bench_export_memory.py MODEL --data D.npz
[--memory-budget 2G]`` (inputs for the real-model suite's models: benchmarks/real_inputs.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MIB = 1 << 20


def _child(kind: str, model: str, data: str, out: str, budget: str | None) -> dict:
    """One ``bitlens`` command in this process, after the imports: its peak RSS above them."""
    from bench_engine import peak_rss, restart_peak
    from bitlens.cli import main

    args = ["--data", data, "--preset", "W8A8"] + (["--memory-budget", budget] if budget else [])
    argv = ["export", model, *args, "-o", out] if kind == "export" else ["eval", model, *args]
    base = restart_peak()
    cpu0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            rc = main(argv)
        finally:
            sys.stdout = stdout
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"rc": rc, "base": base, "peak": peak_rss(), "wall": wall, "cpu": cpu}


def _run_child(kind: str, model: str, data: str, out: str, budget: str | None) -> dict:
    cmd = [sys.executable, __file__, model, "--data", data, "--child", kind, "--out", out]
    if budget:
        cmd += ["--memory-budget", budget]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _baselines(model: str, data: str, rounds: int) -> dict:
    """The bound and the time baselines, in this process."""
    import onnx
    import onnxruntime as ort
    from onnx import version_converter

    from bench_engine import batch_activations, timed
    from bitlens.cli.common import load_data
    from bitlens.core.input_values import compared_constants
    from bitlens.core.model.loader import load_model
    from export_speed import _session, ort_route

    ort.set_default_logger_severity(3)  # quantize_static's calibration session warns per run
    logging.getLogger().setLevel(logging.ERROR)  # and it advises pre-processing
    loaded = load_model(model)
    ns = argparse.Namespace(data=data, calib_data=None, eval_data=None, calib_fraction=0.5,
                            samples=8, dim=[], rate=16000)  # fmt: skip
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            ds = load_data(ns, loaded.info, compared_constants(loaded.graph_proto))
        finally:
            sys.stdout = stdout
    per_feed = batch_activations(Path(model), ds.samples[ds.evaluation[0]])
    plain = _session(Path(model))

    def float_pass() -> None:
        for i in ds.evaluation:
            plain.run(None, ds.samples[i])

    float_pass()  # warm
    passes = sorted(timed(float_pass) for _ in range(5))
    with tempfile.TemporaryDirectory(prefix="bitlens-memb-") as tmp:
        src = Path(model)
        proto = onnx.load(model)
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:  # quantize_static writes per-channel DequantizeLinear (opset 13)
            src = Path(tmp) / "opset13.onnx"
            onnx.save(version_converter.convert_version(proto, 13), str(src))
        del proto
        routes = sorted(ort_route(src, ds, Path(tmp) / f"q{r}.onnx") for r in range(rounds))
    return {
        "size": Path(model).stat().st_size,
        "per_feed": per_feed,
        "float": passes[len(passes) // 2],
        "ort": routes[len(routes) // 2],
        "feeds": f"{len(ds.calibration)} calibrate / {len(ds.evaluation)} evaluate",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data", required=True, help="the data, as bitlens --data reads it")
    ap.add_argument("--memory-budget", help="passed to bitlens (e.g. 2G)")
    ap.add_argument("--rounds", type=int, default=1, help="quantize_static routes timed (1)")
    ap.add_argument("--child", choices=("export", "eval"), help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child, args.model, args.data, args.out, args.memory_budget)))
        return
    with tempfile.TemporaryDirectory(prefix="bitlens-memb-") as tmp:
        out = str(Path(tmp) / "export.onnx")
        exp = _run_child("export", args.model, args.data, out, args.memory_budget)
        ev = _run_child("eval", args.model, args.data, out, args.memory_budget)
    b = _baselines(args.model, args.data, args.rounds)
    bound = 4 * b["size"] + 2 * b["per_feed"]
    print(
        f"\n== {args.model}: {b['size'] / 1e6:.1f} MB, {b['feeds']} feeds ({args.data}), "
        f"load average {os.getloadavg()[0]:.1f}\n"
        f"  baselines: one float pass of the evaluation feeds {1000 * b['float']:.0f} ms; "
        f"quantize_static + session + pass {b['ort']:.2f} s; one feed's float activations "
        f"{b['per_feed'] / MIB:.0f} MiB; bound 4 x model + 2 x activations {bound / MIB:.0f} MiB"
    )
    print(
        f"export W8A8 + fidelity check: {exp['wall']:.1f} s wall, {exp['cpu']:.1f} s CPU "
        f"(target < 20 s) = {exp['wall'] / b['float']:.0f}x a float pass = "
        f"{exp['wall'] / b['ort']:.1f}x the quantize_static route; exit {exp['rc']}"
    )
    for label, r in (("export", exp), ("eval  ", ev)):
        above = r["peak"] - r["base"]
        print(
            f"{label} peak RSS: {r['peak'] / MIB:.0f} MiB, {above / MIB:.0f} MiB above "
            f"{r['base'] / MIB:.0f} MiB of interpreter and libraries = {above / bound:.2f}x "
            "the bound (target <= 1x)"
        )


if __name__ == "__main__":
    main()
