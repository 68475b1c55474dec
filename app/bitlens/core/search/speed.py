"""The chosen plan's deployed latency against the float model and W8A8, in plain ONNX Runtime.

The search ranks plans by size and error; speed is another matter. Formats without integer
kernels on ONNX Runtime CPU (fp16 weights, int4 blocked or asymmetric weights, int16
activations) run as float convolutions and matmuls with quantize/dequantize work around
them, so a plan mixing them runs at float speed or slower while W8A8 runs on QLinearConv
and QGemm (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html,
"QDQ format"). Measured on vietcombank-captcha's searched plan: 1.05x the float time at its
fastest, W8A8 0.57x. The result says so, in numbers, where the search exported its plan.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Generator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from bitlens.core import lstm_kernel
from bitlens.core.engine import Engine
from bitlens.core.engine.session import requested_providers
from bitlens.core.errors import BitlensError
from bitlens.core.export.deployed import open_session
from bitlens.core.export.exporter import Prepared
from bitlens.core.export.kernels import integer_kernel_layers
from bitlens.core.export.latency import fastest_ratio, judged_ratio, median_latencies
from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search.deployed import write_export
from bitlens.core.targets import ORT_CPU

if TYPE_CHECKING:
    from bitlens.core.search.filesize import FileSizes
    from bitlens.core.search.points import SearchResult

W8A8 = "W8A8"
# Seconds of timing per session (each of float, W8A8 and the plan): the rounds interleave,
# so the whole check costs about three times this, up to PATIENCE times that while the
# machine is too busy for a meaningful band (core/export/latency.py), whose fastest runs
# then give the ratios. A window's search waits for it: kept short.
BUDGET_S = 0.5
PATIENCE = 2


@dataclass(frozen=True)
class PlanSpeed:
    """Milliseconds per run of one evaluation feed in default ONNX Runtime sessions, and the
    plan's time against the float model's and W8A8's as a verdict may use them (None: not
    measured, :func:`bitlens.core.export.latency.judged_ratio`)."""

    providers: tuple[str, ...]
    plan_ms: float
    float_ms: float
    w8a8_ms: float | None  # None: W8A8 could not be exported
    vs_float: float | None
    vs_w8a8: float | None
    how: str  # how the ratio to float was read
    # quantized layers the export writes without an integer kernel, per weight format (they
    # run as float operators with quantize work around them: core/export/kernels.py)
    float_run: tuple[tuple[str, int], ...] = ()

    @property
    def slower_than_float(self) -> bool:
        return self.vs_float is not None and self.vs_float > 1.0

    def short(self) -> str:
        """A few words: the deployed time against float and W8A8."""
        if self.vs_float is None:
            return "deployed speed not measured"
        w = "" if self.vs_w8a8 is None else f", x{self.vs_w8a8:.2f} W8A8's"
        slower = " (SLOWER than float)" if self.slower_than_float else ""
        return f"measured in ONNX Runtime at x{self.vs_float:.2f} float's time{w}{slower}"

    def describe(self) -> str:
        """One line: the deployed times and ratios."""
        where = ", ".join(p.removesuffix("ExecutionProvider") for p in self.providers)
        parts = [f"deployed latency ({where}, default session): {self.plan_ms:.3g} ms"]
        if self.vs_float is None:
            parts.append(f"against float {self.float_ms:.3g} ms: {self.how}")
        else:
            parts.append(f"x{self.vs_float:.2f} float ({self.float_ms:.3g} ms)")
        if self.w8a8_ms is not None:
            parts.append(
                f"x{self.vs_w8a8:.2f} W8A8 ({self.w8a8_ms:.3g} ms)"
                if self.vs_w8a8 is not None
                else f"W8A8 {self.w8a8_ms:.3g} ms (ratio not measured)"
            )
        return ", ".join(parts) + (f"; {self.how}" if self.vs_float is not None else "")

    def warning(self) -> str | None:
        """One line when the plan runs slower than the float model, else None."""
        if not self.slower_than_float:
            return None
        w = (
            f"; W8A8 runs at x{self.w8a8_ms / self.float_ms:.2f} of float"
            if self.w8a8_ms is not None and self.float_ms > 0
            else ""
        )
        why = ""
        if self.float_run:
            n = sum(c for _f, c in self.float_run)
            kinds = ", ".join(f"{c}× {f}" for f, c in self.float_run)
            why = (
                f": {n} quantized layer(s) get no integer kernel ({kinds}; only 8-bit integer "
                "weights with 8-bit activations do) and run as float plus quantize work"
            )
        return (
            f"warning: the plan runs SLOWER than the float model in ONNX Runtime "
            f"(x{self.vs_float:.2f}){why}{w}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "providers": list(self.providers),
            "plan_ms": self.plan_ms,
            "float_ms": self.float_ms,
            "w8a8_ms": self.w8a8_ms,
            "vs_float": self.vs_float,
            "vs_w8a8": self.vs_w8a8,
            "how": self.how,
        }


def plan_speed(
    engine: Engine,
    plan: Plan,
    w8a8: Plan | onnx.ModelProto | None,
    budget_s: float = BUDGET_S,
    prepare: Callable[[Plan], Prepared] | None = None,
    built: Callable[[Plan, Prepared], bytes | None] | None = None,
) -> Generator[Progress, None, PlanSpeed | None]:
    """Export ``plan`` (and ``w8a8``, unless given as its export built in memory) to a
    temporary folder and time them against the float model, runs interleaved, on the first
    evaluation feed; None when the plan cannot be exported or loaded (W8A8 failing only
    leaves its figures out). ``prepare``: the export's preflight for a plan (the search's
    FileSizes.prepared, its opset conversion done once); ``built``: the export the search
    built in memory from that preparation, if kept (FileSizes.built_file)."""
    data = engine.data
    if data is None or not data.evaluation:
        return None
    feed = data.samples[next(iter(data.evaluation))]
    providers = requested_providers(engine.device)
    with tempfile.TemporaryDirectory(prefix="bitlens-speed-") as tmp:
        paths: list[str | onnx.ModelProto] = []
        for k, p in enumerate((plan, w8a8)):
            if not isinstance(p, Plan):
                paths += [] if p is None else [p]  # the search's own W8A8 build
                continue
            path = str(Path(tmp) / f"plan{k}.onnx")
            yield Progress(k, 3, "exporting to time it" if k == 0 else "exporting W8A8 to time it")
            try:
                prepared = None if prepare is None else prepare(p)
                write_export(engine, p, Path(path), prepared, built)
            except BitlensError:
                if k == 0:
                    return None
                continue
            paths.append(path)
        yield Progress(2, 3, "timing the plan, float and W8A8 in ONNX Runtime")
        try:
            sessions = [open_session(engine.model.runnable(), providers, mode="deployed")]
            sessions += [open_session(p, providers, mode="deployed") for p in paths]
        except BitlensError:
            return None
        times = median_latencies(sessions, feed, budget_s, patience=PATIENCE)
        used = tuple(sessions[0].get_providers())
        del sessions
    # one reading for all three: the medians where every band is tight, else the fastest
    # runs (load only adds time); the times shown are those the ratios are made of
    flt, got = times[0], times[1]
    spread = max(t.ratio_spread for t in times[1:])
    vs_float, how = judged_ratio(
        got.median_ms / flt.median_ms, spread, fastest_ratio(got, flt), got.runs
    )
    tight = how.startswith("median")
    ms = [t.median_ms if tight else t.min_ms for t in times]
    w8a8_ms = ms[2] if len(ms) == 3 else None
    vs_w8a8 = None
    if vs_float is not None and w8a8_ms:
        vs_w8a8 = ms[1] / w8a8_ms
    return PlanSpeed(used, ms[1], ms[0], w8a8_ms, vs_float, vs_w8a8, how, _float_run(engine, plan))


def _float_run(engine: Engine, plan: Plan) -> tuple[tuple[str, int], ...]:
    """Weight formats of the plan's quantized layers the export writes without an integer
    kernel, most common first."""
    kernels = integer_kernel_layers(engine.info, plan, engine.placement(plan))
    kernels |= lstm_kernel.kernel_layers(plan)  # DynamicQuantizeLSTM: an integer kernel too
    counts = Counter(
        "float weights" if c.weight is None else c.weight.name
        for name, c in plan.choices.items()
        if name not in kernels and (c.weight is not None or c.activation is not None)
    )
    return tuple(counts.most_common())


def with_speed(
    engine: Engine,
    result: SearchResult,
    target: str,
    sizes: FileSizes | None = None,
    budget_s: float = BUDGET_S,
) -> Generator[Progress, None, SearchResult]:
    """``result`` with its plan's deployed speed (:meth:`PlanSpeed.warning` says when it is
    slower than the float model), where the search exported the plan for ONNX Runtime CPU;
    else as it is. ``sizes``: the search's accounting, whose W8A8 export (built in memory
    for its sizes or the speed steering) is timed rather than exported again."""
    if target != ORT_CPU or result.best.exported_bytes is None:
        return result
    w8a8: Plan | onnx.ModelProto | None = Plan.preset(engine.info, W8A8).with_target(target)
    if sizes is not None:
        if sizes.keep is None:
            sizes.keep = w8a8
        try:
            w8a8 = sizes.kept_export() if sizes.keep == w8a8 else w8a8
        except BitlensError:
            w8a8 = None
    prepare = None if sizes is None else sizes.prepared
    built = None if sizes is None else sizes.built_file
    speed = yield from plan_speed(engine, result.best.plan, w8a8, budget_s, prepare, built)
    if speed is None:
        return result
    # not a note: the notes are part of what a seed reproduces, and timings are not
    return replace(result, speed=speed)
