"""Steering the search toward plans that deploy as fast as W8A8: a per-layer latency model.

On ONNX Runtime CPU a quantized layer runs on an integer kernel (QLinearConv, QGemm,
MatMulIntegerToFloat) only where its formats fit one (:func:`bitlens.core.targets.kernel_format`,
and for a Conv an 8-bit requantized output: :func:`bitlens.core.export.kernels.integer_kernel_layers`);
every other quantized layer runs as a float Conv/MatMul on dequantized weights with quantize
work around it (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
Session 8 measured searched plans that gave the heavy convolutions int4 or fp16 weights at
1.02-1.09x the float time on vietcombank-captcha where W8A8 ran at 0.47-0.59x.

The model: a layer costs its multiply-accumulates (MACs, :mod:`bitlens.core.compute`), times
INTEGER_COST where it keeps an integer kernel; a plan's predicted time is the sum over layers
against the float model's. Bytes live in weights and time in MACs, so the layers whose
integer kernel costs the least time per weight byte (a classifier's Gemm: one MAC per weight
per row) are the ones allowed to leave it; the others are *locked*: the search offers them
only formats that keep their kernel, keeps their input activation 8-bit per tensor, and no
plan it returns predicts slower than the limit (W8A8's predicted time plus SLACK by default).

Whether speed matters at all is measured, once: the W8A8 export the search builds for its
sizes (kept in memory, :class:`bitlens.core.search.filesize.FileSizes`) is timed against the
float model. Where W8A8 runs no faster than SPEED_MATTERS of float (small transformers, whose
quantize work outweighs their few MACs), integer kernels buy nothing and nothing is locked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bitlens.core.compute import compute_of
from bitlens.core.engine import Engine
from bitlens.core.engine.session import requested_providers
from bitlens.core.errors import BitlensError
from bitlens.core.export.deployed import open_session
from bitlens.core.export.kernels import integer_kernel_layers
from bitlens.core.export.latency import fastest_ratio, judged_ratio, median_latencies
from bitlens.core.formats import Format
from bitlens.core.plan import Plan
from bitlens.core.search.options import AS_W8A8

# An integer kernel's time per MAC against the float kernel's. ONNX Runtime 1.31 CPU, whole
# models at W8A8 against float (session 8, interleaved fastest runs): malviz's ResNet-18
# 0.29x, vietcombank-captcha 0.47-0.59x, open_nsfw's ResNet-50 0.73x; the convolutions'
# share of those times is larger than the model's, so a layer's own ratio is lower still.
INTEGER_COST = 0.4
# The default limit: W8A8's predicted time plus this fraction of it (the deployed timing's
# own noise on a busy machine is about as large: core/export/latency.py PRECISION).
SLACK = 0.05
# W8A8 measured at this fraction of the float time or more: speed is not steered.
SPEED_MATTERS = 0.9
TIMING_S = 0.3  # seconds of timing per session for that measurement


@dataclass(frozen=True)
class Speed:
    """The search's latency limit for one model: MACs per layer, the locked layers."""

    macs: Mapping[str, float]
    limit: float  # the predicted time a returned plan may take, of the float model's
    w8a8: float  # W8A8's predicted time, of the float model's
    measured: float | None  # W8A8's measured time against float (None: not measured)
    locked: frozenset[str]  # layers that keep their integer kernel

    def predict(self, kernels: Iterable[str]) -> float:
        """A plan's predicted time against the float model's, from its integer-kernel layers."""
        total = sum(self.macs.values())
        k = set(kernels)
        t = sum(m * (INTEGER_COST if n in k else 1.0) for n, m in self.macs.items())
        return t / total if total > 0 else 1.0

    def describe(self) -> str:
        """One line for the result's notes (no timing in it: a seed reproduces the notes)."""
        return (
            f"speed: W8A8 runs faster than float here, so plans are kept to x{self.limit:.2f} "
            f"of the float time as predicted from MACs and integer kernels (W8A8 "
            f"x{self.w8a8:.2f}); {len(self.locked)} layer(s) keep their integer kernel"
        )


def plan_kernels(engine: Engine, plan: Plan) -> set[str]:
    """Layers of ``plan`` the export writes for ONNX Runtime's fast integer kernels: with an
    unsigned activation. A signed 8-bit input (int8 sym) still runs as QLinearConv, but
    ONNX Runtime's x86 kernels are built for u8 x s8 products (VPMADDUBSW: "U8S8",
    https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html, data type
    selection): vietcombank-captcha's four convs with int8 sym inputs ran at 0.88-0.89x of the
    float time, against 0.46-0.51x for W8A8's uint8 ones (medians, interleaved runs)."""
    kernels = integer_kernel_layers(engine.info, plan, engine.placement(plan))
    return {n for n in kernels if not _signed(plan[n].activation)}


def _signed(act: Format | None) -> bool:
    return act is not None and act.signed


def layer_macs(engine: Engine) -> dict[str, float]:
    """MACs per layer with weights at the first evaluation feed's sizes; where shapes are not
    known, the weight count (one row's MACs) stands in."""
    macs = compute_of(engine).macs
    out: dict[str, float] = {}
    for layer in engine.info.layers:
        if not layer.weights:
            continue
        m = macs.get(layer.name)
        out[layer.name] = float(m if m else sum(w.numel for w in layer.weights))
    return out


def measure_w8a8(engine: Engine, w8a8_model) -> float | None:
    """W8A8's deployed time against the float model's (fastest interleaved runs where the
    band is loose), on the first evaluation feed; None when it cannot be timed."""
    data = engine.data
    if data is None or not data.evaluation:
        return None
    feed = data.samples[next(iter(data.evaluation))]
    providers = requested_providers(engine.device)
    try:
        sessions = [
            open_session(engine.model.runnable(), providers, mode="deployed"),
            open_session(w8a8_model, providers, mode="deployed"),
        ]
    except BitlensError:
        return None
    flt, got = median_latencies(sessions, feed, TIMING_S, patience=1)
    del sessions
    ratio, _how = judged_ratio(
        got.median_ms / flt.median_ms, got.ratio_spread, fastest_ratio(got, flt), got.runs
    )
    return ratio if ratio is not None else fastest_ratio(got, flt)


def speed_limit(
    engine: Engine,
    w8a8: Plan,
    measured: float | None,
    max_latency: float | str,
    able: Mapping[str, bool],
) -> Speed | None:
    """The limit for ``max_latency`` (AS_W8A8 or a ratio of the float time), or None where
    speed is not steered (W8A8 measured at SPEED_MATTERS of float or more). ``able``: per
    layer, whether the search's candidate formats can keep its integer kernel at all."""
    if measured is not None and measured >= SPEED_MATTERS:
        return None
    macs = layer_macs(engine)
    kern = [n for n in plan_kernels(engine, w8a8) if n in macs and able.get(n, False)]
    if not kern:
        return None  # no layer could keep an integer kernel
    base = Speed(macs, 1.0, 1.0, measured, frozenset())
    ref = base.predict(kern)
    limit = ref * (1 + SLACK) if max_latency == AS_W8A8 else max(float(max_latency), ref)
    # free the layers whose kernel buys the least time per weight byte while the plan with
    # all of them off their kernels stays within the limit
    order = sorted(
        kern, key=lambda n: (macs[n] / max(1, engine.info.layer(n).nbytes), n)
    )
    total = sum(macs.values())
    spent = ref
    freed: set[str] = set()
    for n in order:
        step = macs[n] * (1.0 - INTEGER_COST) / total
        if spent + step > limit + 1e-12:
            continue
        spent += step
        freed.add(n)
    return Speed(macs, limit, ref, measured, frozenset(set(kern) - freed))
