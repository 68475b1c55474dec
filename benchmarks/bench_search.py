"""Plan search: time and evaluations on a 50-layer model, and its front against the presets.

The model is a residual CNN built in code: a stem conv, 24 residual blocks of
two 3x3 convs each (stages of 16, 32 and 64 channels) and a classifier Gemm:
50 quantizable layers, about 0.7 M weights, on 8 samples
of 4 images (4 calibrate, 4 evaluate). The search runs with a size budget of
a quarter of the float file and its default candidates; its front is then
compared with each uniform preset: the front's error at the preset's size
divided by the preset's error (below 1: the search beats the preset).

Also the "done when" on the bundled samples: the search's plan at the size of
a uniform W8A8 export against W8A8, and at half that size against float
accuracy.

Run: ``.venv/bin/python benchmarks/bench_search.py`` (target: the 50-layer search
in under 2 minutes on a 2-core machine; front/preset ratios below 1).

``--real`` instead runs the search against uniform W8A8 at its exported size on the
real-model suite's models, everything measured on the exported files in plain ONNX Runtime
(benchmarks/search_real.py; ``--models vision|rest`` one list, ``--only ID ...`` picks
models, ``--no-repeat`` skips the second search that checks the seed reproduces the plan
and front, ``--more-held N`` scores N further held-out samples as a third set (default
16), ``--keep DIR`` keeps each model's plan, front and exports in DIR/ID).

``--memory-only MODEL DATA [--code APP ...] [--rounds N]``: only the peak RSS of a default
search, over the model file's size, each in a process of its own (benchmarks/search_memory.py).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitlens.core import samples
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.errors import SearchError
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.search import Budget, Point, SearchOptions, SearchResult, search

STAGES = ((16, 8), (32, 8), (64, 8))  # (channels, residual blocks): 48 convs in blocks


def resnet50_layers(side: int = 32) -> onnx.ModelProto:
    """stem conv + 24 residual blocks (2 convs each) + Gemm = 50 layers."""
    rng = np.random.default_rng(0)
    nodes, inits = [], []
    count = 0

    def conv(x: str, cin: int, cout: int, k: int, stride: int = 1, relu: bool = True) -> str:
        nonlocal count
        i = count
        count += 1
        w = rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        w[rng.integers(cout)] *= 4  # an outlier channel, as trained nets have
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(b, f"B{i}")])
        nodes.append(helper.make_node(
            "Conv", [x, f"W{i}", f"B{i}"], [f"c{i}"], name=f"conv{i}",
            pads=[k // 2] * 4, strides=[stride, stride],
        ))  # fmt: skip
        if not relu:
            return f"c{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        return f"r{i}"

    x = conv("x", 3, STAGES[0][0], 3)
    cin = STAGES[0][0]
    for s, (ch, blocks) in enumerate(STAGES):
        for b in range(blocks):
            stride = 2 if s > 0 and b == 0 else 1
            if stride == 2 or cin != ch:  # downsample the shortcut without a weight
                nodes.append(helper.make_node(
                    "MaxPool", [x], [f"pool{s}"], name=f"pool{s}", kernel_shape=[2, 2], strides=[2, 2]
                ))  # fmt: skip
                pad = np.array([0, 0, 0, 0, 0, ch - cin, 0, 0], np.int64)
                inits.append(numpy_helper.from_array(pad, f"pad{s}"))
                nodes.append(
                    helper.make_node("Pad", [f"pool{s}", f"pad{s}"], [f"sc{s}"], name=f"padc{s}")
                )
                shortcut = f"sc{s}"
            else:
                shortcut = x
            h = conv(x, cin, ch, 3, stride)
            h = conv(h, ch, ch, 3, relu=False)
            nodes.append(helper.make_node("Mul", [h, "half"], [f"{h}_s"], name=f"scale{count}"))
            nodes.append(
                helper.make_node("Add", [f"{h}_s", shortcut], [f"add{count}"], name=f"add{count}")
            )
            nodes.append(
                helper.make_node("Relu", [f"add{count}"], [f"ra{count}"], name=f"ra{count}")
            )
            x, cin = f"ra{count}", ch
    wf = rng.normal(0, np.sqrt(1 / cin), (10, cin)).astype(np.float32)
    inits += [
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(wf, "Wfc"),
        numpy_helper.from_array(np.zeros(10, np.float32), "Bfc"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
        helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "Wfc", "Bfc"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "bench_resnet50", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, side, side])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_search(engine: Engine, budget: Budget, seed: int = 0) -> tuple[SearchResult, float]:
    """The search's result and wall-clock seconds."""
    t = time.perf_counter()
    refs = ("W8A8", "W4A8", "W8A16", "W4A16")
    gen = search(engine, SearchOptions(budget, seed=seed, references=refs))
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        result: SearchResult = stop.value
    return result, time.perf_counter() - t


def front_error_at(front: tuple[Point, ...], nbytes: int) -> float | None:
    """The front's lowest error among points no larger than ``nbytes``."""
    fits = [p.error for p in front if p.file_bytes <= nbytes]
    return min(fits) if fits else None


def bench_50_layers() -> None:
    model = from_proto(resnet50_layers())
    info = model.info
    rng = np.random.default_rng(1)
    images = rng.normal(0, 1, (8, 4, 3, 32, 32)).astype(np.float32)
    data = Dataset(tuple({"x": batch} for batch in images), source="random")
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    print(f"50-layer model: {len(info.layers)} layers, {info.params} weights, "
          f"{len(data.samples)} samples ({len(data.evaluation)} evaluated)")  # fmt: skip
    load = os.getloadavg()[0]
    cpu = time.process_time()
    result, seconds = run_search(engine, Budget(size_ratio=0.25))
    cpu = time.process_time() - cpu
    # the wall time depends on what else runs: the load averages say how busy the machine was
    load = (load + os.getloadavg()[0]) / 2
    print(f"search at 0.25 of float size: {seconds:.1f} s wall, {cpu:.1f} s CPU (all threads), "
          f"{result.evaluations} evaluations, "
          f"{len(result.tried)} whole plans, front of {len(result.front)} points; "
          f"load average {load:.1f} on {os.cpu_count()} cores (target: under 120 s wall on 2 "
          "idle cores)")  # fmt: skip
    print(f"  best: {result.best.file_bytes} B, error {result.best.error:.4g} "
          f"({result.best.sqnr_db:.1f} dB); {result.best.summary()}")  # fmt: skip
    for ref in result.references:
        if ref.label == "float":
            continue
        err = front_error_at(result.front, ref.file_bytes)
        ratio = "-" if err is None else f"{err / ref.error:.3f}"
        print(
            f"  {ref.label}: {ref.file_bytes} B, error {ref.error:.4g}; "
            f"front at that size {'-' if err is None else f'{err:.4g}'}, ratio {ratio}"
        )


def bench_samples() -> None:
    for name in ("digits_cnn", "speech_kws", "text_transformer"):
        sample = samples.get_sample(name)
        model = load_model(sample.model_path)
        arrays, labels = samples.load_sample_data(sample)
        data = Dataset.from_arrays(model.info, arrays, labels, source=name)
        engine = Engine(model, data, device="cpu")
        for _ in engine.calibrate("minmax"):
            pass
        limit = _w8a8_bytes(engine)
        at_w8, s1 = run_search(engine, Budget(max_bytes=limit))
        w8 = next(p for p in at_w8.references if p.label == "W8A8")
        flt = next(p for p in at_w8.references if p.label == "float")
        b = at_w8.best
        try:
            half, s2 = run_search(engine, Budget(max_bytes=limit // 2))
        except SearchError as exc:
            print(f"{name}: W8A8 export {limit} B, error {w8.error:.4g}; search at that size: "
                  f"export {b.exported_bytes} B, error {b.error:.4g}, metric {b.metric} "
                  f"({s1:.1f} s); at half: {exc}")  # fmt: skip
            continue
        h = half.best
        print(
            f"{name}: W8A8 export {limit} B, error {w8.error:.4g}, metric {w8.metric}; search "
            f"at that size: export {b.exported_bytes} B, error {b.error:.4g}, metric {b.metric} "
            f"({s1:.1f} s); at half: export {h.exported_bytes} B, error {h.error:.4g}, metric "
            f"{h.metric} vs float {flt.metric} ({s2:.1f} s)"
        )


def _w8a8_bytes(engine: Engine) -> int:
    """The size of the uniform W8A8 export: the real file, written to a temporary folder."""
    from bitlens.core.plan import Plan
    from bitlens.core.search import exported_size

    return exported_size(engine, Plan.preset(engine.info, "W8A8"))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-samples", action="store_true")
    ap.add_argument("--real", action="store_true", help="the real-model rows instead")
    ap.add_argument("--only", nargs="+", default=[], metavar="ID", help="with --real")
    ap.add_argument("--no-repeat", action="store_true", help="with --real")
    ap.add_argument("--models", choices=("all", "vision", "rest"), default="all",
                    help="with --real: the vision models, the others, or all")  # fmt: skip
    ap.add_argument("--more-held", type=int, default=16, metavar="N",
                    help="with --real: N further held-out samples, scored as a set "
                         "(default 16; 0: none)")  # fmt: skip
    ap.add_argument("--keep", type=Path, metavar="DIR",
                    help="with --real: copy each model's plan, front and exports to DIR/ID")  # fmt: skip
    ap.add_argument("--memory-only", nargs=2, metavar=("MODEL", "DATA"),
                    help="only the peak RSS of a default search of MODEL on DATA, in a "
                    "process of its own (benchmarks/search_memory.py)")  # fmt: skip
    ap.add_argument("--code", nargs="+", default=[], metavar="APP",
                    help="with --memory-only: Bitlens's app folder(s) to run, alternated "
                    "(default: this checkout's)")  # fmt: skip
    ap.add_argument("--rounds", type=int, default=1, help="with --memory-only")
    ap.add_argument("--search-memory", default=None, help="with --memory-only: passed on")
    ap.add_argument("--size-ratio", default=None, help="with --memory-only: passed on")
    args = ap.parse_args()
    if args.memory_only:
        from search_memory import HERE, bench_memory

        extra = [] if args.search_memory is None else ["--search-memory", args.search_memory]
        extra += [] if args.size_ratio is None else ["--size-ratio", args.size_ratio]
        codes = [Path(c) for c in args.code] or [HERE]
        model, data = (Path(p) for p in args.memory_only)
        bench_memory(model, data, codes, args.rounds, extra)
        raise SystemExit(0)
    if args.real:
        from search_real import bench_rest, bench_vision

        kw = {"more_held": args.more_held, "keep": args.keep}
        if args.models in ("all", "vision"):
            bench_vision(args.only, not args.no_repeat, **kw)
        if args.models in ("all", "rest"):
            bench_rest(args.only, not args.no_repeat, **kw)
        raise SystemExit(0)
    bench_50_layers()
    if not args.skip_samples:
        bench_samples()
