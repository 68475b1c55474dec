"""Steering the search toward plans that deploy as fast as W8A8: a per-layer latency model.

On ONNX Runtime CPU a quantized layer runs on an integer kernel (QLinearConv, QGemm,
MatMulIntegerToFloat) only where its formats fit one (:func:`bitlens.core.targets.kernel_format`,
and for a Conv an 8-bit requantized output: :func:`bitlens.core.export.kernels.integer_kernel_layers`),
an LSTM (DynamicQuantizeLSTM) only with int8 symmetric weights, no recovery and the kernel's
own per-run uint8 input (:func:`bitlens.core.lstm_kernel.runs_kernel`: a locked LSTM keeps
those; before, g2p-id's encoder was predicted at the float time while W8A8 ran at 0.58x);
every other quantized layer runs as a float Conv/MatMul on dequantized weights with quantize
work around it (https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html).
Session 8 measured searched plans that gave the heavy convolutions int4 or fp16 weights at
1.02-1.09x the float time on vietcombank-captcha where W8A8 ran at 0.47-0.59x.

The model (:mod:`bitlens.core.search.layer_cost`): a layer costs its multiply-accumulates
(MACs, :mod:`bitlens.core.compute`), a depthwise convolution more per MAC, and less on an
integer kernel (a depthwise one more: QLinearConv is slower there than the float kernel);
the quantize work ONNX Runtime leaves around W8A8's integer-kernel layers costs a fixed
amount per output element of theirs, in every plan the search makes (its activations stay
8-bit). A plan's predicted time is the sum against the float model's. Where W8A8 itself is
predicted no faster than float (channels-poor detectors: PP-OCRv6's tiny one ran at 1.4x),
nothing is steered. Bytes live in weights and time in MACs, so the layers whose integer
kernel saves the least time per weight byte (a classifier's Gemm: one MAC per weight per
row; a depthwise convolution: none) are the ones allowed to leave it; the others are
*locked*: the search offers them only formats that keep their kernel, keeps their input
activation 8-bit unsigned per tensor, and no plan it returns predicts slower than the limit
(by default halfway between W8A8's predicted time and the float model's; W8A8's plus SLACK
with ``W8A8``). A size budget too small for the locked layers' formats frees more of them,
those with the most bytes per saved time first: the budget comes first, speed where it can
(and where the real exports still do not fit, the search runs again without the limit). Where the
default limit's search returns the same-size preset itself, or W8A8's predicted saving is
marginal (MARGINAL), the weights-only search runs too, and its plan, at the float model's
speed, says so (core/search/runner.py).

Below MIN_MACS per sample nothing is steered: there ONNX Runtime's per-node work outweighs
the arithmetic and W8A8 runs slower than float (measured, interleaved medians, one thread
each: a 3-layer CNN of 88k MACs at 1.18x and 1.65x, a 1.7k-MAC MLP at 1.14x; a 3.7M-MAC CNN
at 0.73x, the bundled samples of 1.1M to 2.5M MACs at 0.50x to 0.77x). The rule depends on
the model only, so a seed still reproduces the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from bitlens.core import lstm_kernel
from bitlens.core.compute import compute_of
from bitlens.core.engine import Engine
from bitlens.core.export.kernels import integer_kernel_layers
from bitlens.core.formats import Format
from bitlens.core.plan import Plan
from bitlens.core.search.layer_cost import LayerCost, layer_cost
from bitlens.core.search.options import AS_W8A8, HALF_W8A8
from bitlens.core.search.points import Steering

# The default limit: W8A8's predicted time plus this fraction of it (the deployed timing's
# own noise on a busy machine is about as large: core/export/latency.py PRECISION).
SLACK = 0.05
# Models with fewer MACs per sample (in layers W8A8 gives integer kernels) are not steered.
MIN_MACS = 1_000_000
# W8A8's predicted time (of the float model's) from which its saving is marginal: the default
# limits then also let the weights-only search run (core/search/runner.py). Predicted /
# measured (docs/finding-a-plan.md, one thread): at 0.83-1.21 predicted W8A8 measured
# 0.72-1.47x float (rapidocr-det 0.88 / 0.93-1.05, PP-OCRv5's detector 0.88 / 0.72-0.89,
# ppocrv6-rec-tiny 0.83 / 1.03-1.40, ppocrv6-det-tiny 1.21 / 1.35-1.47): the model's error
# there (+-0.2) is the whole predicted saving; at 0.46-0.61 it measured 0.28-0.69x
# (malviz 0.46, vietcombank-captcha 0.57, open_nsfw 0.61). 0.8 lies between the two groups.
MARGINAL = 0.8


@dataclass(frozen=True)
class Speed:
    """The search's latency limit for one model: cost per layer, the locked layers."""

    costs: Mapping[str, LayerCost]
    limit: float  # the predicted time a returned plan may take, of the float model's
    w8a8: float  # W8A8's predicted time, of the float model's
    kernels: frozenset[str]  # W8A8's integer-kernel layers the candidates can keep so
    locked: frozenset[str]  # layers that keep their integer kernel

    def predict(self, kernels: Iterable[str]) -> float:
        """A plan's predicted time against the float model's, from its integer-kernel layers."""
        total = sum(c.float for c in self.costs.values())
        k = set(kernels)
        # a W8A8 kernel layer left off its kernel runs between its 8-bit activations
        t = sum(
            c.kernel if n in k else c.off if n in self.kernels else c.float
            for n, c in self.costs.items()
        )
        # W8A8's activations stay 8-bit in every plan the search makes: its quantize work
        t += sum(self.costs[n].boundary for n in self.kernels)
        return t / total if total > 0 else 1.0

    def describe(self) -> str:
        """The result's line on speed."""
        return (
            f"speed: plans are kept to x{self.limit:.2f} of the float time as predicted from "
            f"MACs, integer kernels and quantize work (W8A8 x{self.w8a8:.2f}); {len(self.locked)} of "
            f"{len(self.kernels)} layer(s) keep their integer kernel"
        )

    def steering(self) -> Steering:
        return Steering(self.describe(), self.w8a8, self.limit)


@dataclass(frozen=True)
class NotSteered:
    """Why a limit set from W8A8's speed holds no layer to its integer kernel: the result
    says so with W8A8's predicted time, or a user who asked for half of W8A8's speed-up
    could not tell that there was none to keep (PP-OCRv6's tiny detector: W8A8 predicted at
    1.21x the float time, measured 1.36-1.47x)."""

    w8a8: float  # W8A8's predicted time, of the float model's
    kernel_macs: float  # MACs per sample in W8A8's integer-kernel layers

    def describe(self) -> str:
        """The result's line on speed."""
        if self.kernel_macs <= 0:
            why = "none of its layers runs on an integer kernel"
        elif self.kernel_macs < MIN_MACS:
            why = (
                f"its integer-kernel layers do {self.kernel_macs:,.0f} MACs per sample, under "
                f"{MIN_MACS:,}, where ONNX Runtime's per-node work outweighs the arithmetic"
            )
        else:
            why = (
                "no faster than float: the quantize work and depthwise kernels outweigh what "
                "its integer kernels save"
            )
        return (
            f"speed: not steered: W8A8 is predicted at x{self.w8a8:.2f} of the float time "
            f"({why}); no plan is held to integer kernels"
        )

    def steering(self) -> Steering:
        return Steering(self.describe(), self.w8a8, None)


def marginal(verdict: Speed | NotSteered) -> bool:
    """Whether W8A8's predicted saving over float is marginal or none (at or above MARGINAL),
    where the prediction holds at all (not under MIN_MACS: there W8A8 ran slower than float
    whatever the model said, and small models are searched once, as before)."""
    if isinstance(verdict, NotSteered) and verdict.kernel_macs < MIN_MACS:
        return False
    return verdict.w8a8 >= MARGINAL


def plan_kernels(engine: Engine, plan: Plan) -> set[str]:
    """Layers of ``plan`` the export writes for ONNX Runtime's fast integer kernels: with an
    unsigned activation, and its DynamicQuantizeLSTM LSTMs. A signed 8-bit input (int8 sym) still runs as QLinearConv, but
    ONNX Runtime's x86 kernels are built for u8 x s8 products (VPMADDUBSW: "U8S8",
    https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html, data type
    selection): vietcombank-captcha's four convs with int8 sym inputs ran at 0.88-0.89x of the
    float time, against 0.46-0.51x for W8A8's uint8 ones (medians, interleaved runs)."""
    kernels = integer_kernel_layers(engine.info, plan, engine.placement(plan))
    # and the LSTMs it writes as DynamicQuantizeLSTM (uint8 inputs, quantized per run)
    return {n for n in kernels if not _signed(plan[n].activation)} | lstm_kernel.kernel_layers(plan)


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


def speed_limit(
    engine: Engine, w8a8: Plan, max_latency: float | str, able: Mapping[str, bool]
) -> Speed | NotSteered:
    """The limit for ``max_latency`` (AS_W8A8, HALF_W8A8 or a ratio of the float time), or
    NotSteered where speed is not steered (fewer than MIN_MACS in W8A8's integer-kernel
    layers, or W8A8 predicted no faster than float). ``able``: per layer, whether the
    search's candidate formats can keep its integer kernel at all."""
    macs = layer_macs(engine)
    kern = frozenset(n for n in plan_kernels(engine, w8a8) if n in macs and able.get(n, False))
    costs = layer_costs(engine, macs)
    ref = Speed(costs, 1.0, 1.0, kern, frozenset()).predict(kern)
    kernel_macs = sum(macs[n] for n in kern)
    if kernel_macs < MIN_MACS or ref >= 1.0:
        # too small, or no kernel makes it faster: locking layers would only cost error
        return NotSteered(ref, kernel_macs)
    if max_latency == AS_W8A8:
        limit = ref * (1 + SLACK)
    elif max_latency == HALF_W8A8:
        limit = max(ref * (1 + SLACK), (ref + 1.0) / 2)
    else:
        limit = max(float(max_latency), ref)
    # free the layers whose kernel buys the least time per weight byte while the plan with
    # all of them off their kernels stays within the limit
    total = sum(c.float for c in costs.values())
    spent = ref
    locked = set(kern)
    for n in _by_time_per_byte(engine, kern, costs):
        step = costs[n].saved / total
        if spent + step <= limit + 1e-12:
            spent += step
            locked.discard(n)
    return Speed(costs, limit, ref, kern, frozenset(locked))


def layer_costs(engine: Engine, macs: Mapping[str, float]) -> dict[str, LayerCost]:
    """Each layer's cost (core/search/layer_cost.py) at its MACs per sample."""
    return {n: layer_cost(engine.info.layer(n), m) for n, m in macs.items()}


def unlocked(speed: Speed, names: Iterable[str]) -> Speed:
    """``speed`` with ``names`` free to leave their kernels, the limit raised to what the
    remaining locked layers alone reach."""
    locked = speed.locked - set(names)
    return replace(speed, locked=locked, limit=max(speed.limit, speed.predict(locked)))


def _by_time_per_byte(
    engine: Engine, names: Iterable[str], costs: Mapping[str, LayerCost]
) -> list[str]:
    """``names``, the least time saved per weight byte first (the first to leave a kernel;
    a kernel slower than float first of all)."""
    return sorted(names, key=lambda n: (costs[n].saved / max(1, engine.info.layer(n).nbytes), n))


def freeing_order(engine: Engine, speed: Speed) -> list[str]:
    """The locked layers in the order a size budget frees them: most bytes per saved time first."""
    return _by_time_per_byte(engine, speed.locked, speed.costs)
