"""The search's latency model counts an int8 LSTM that W8A8 runs as ONNX Runtime's
DynamicQuantizeLSTM (core/lstm_kernel.py) as an integer-kernel layer, and its speed steering
locks such an LSTM to the formats that keep that kernel: int8 symmetric weights without
recovery and the kernel's own per-run uint8 input (no calibrated activation quantizer).

Before, the model counted the LSTM as a float layer: g2p-id's encoder (one LSTM) was
predicted at x1.00 and not steered while W8A8 measured about x0.58 of the float time, and
a search there could give the LSTM int4 weights (a float LSTM) whatever --max-latency said.
"""

from __future__ import annotations

import dataclasses

from bitlens.core import lstm_kernel
from bitlens.core.formats import parse_format
from bitlens.core.plan import Plan
from bitlens.core.search import Budget, SearchOptions
from bitlens.core.search.activations import _keeps_fast_input
from bitlens.core.search.latency import NotSteered, Speed, layer_macs, plan_kernels, speed_limit
from bitlens.core.search.layer_cost import (
    LSTM_FLOAT,
    LSTM_FLOAT_SPILLED,
    LSTM_KERNEL,
    LSTM_KERNEL_MID,
    LSTM_KERNEL_SMALL,
    lstm_cost,
)
from bitlens.core.search.options import HALF_W8A8
from bitlens.core.search.runner import _Search
from bitlens.core.search.speed import _float_run
from bitlens.core.targets import ORT_CPU
from tests.builders import lstm_recognizer
from tests.core.test_search import FAST, _engine, _run

INT8 = parse_format("int8 sym ch")


def _lstm_engine():
    """A CRNN tail whose LSTM carries nearly all the MACs (4.7M; the Gemm 29k), at 256 hidden
    units: where DynamicQuantizeLSTM runs faster than the float LSTM (layer_cost.py)."""
    return _engine(lstm_recognizer(steps=8, inp=32, hidden=256))


def test_w8a8s_dynamic_lstm_is_an_integer_kernel_layer_in_the_prediction() -> None:
    engine = _lstm_engine()
    w8a8 = Plan.preset(engine.info, "W8A8", target=ORT_CPU)
    assert "lstm" in lstm_kernel.kernel_layers(w8a8)
    assert "lstm" in plan_kernels(engine, w8a8)
    macs = layer_macs(engine)
    verdict = speed_limit(engine, w8a8, HALF_W8A8, dict.fromkeys(macs, True))
    assert isinstance(verdict, Speed)  # was NotSteered at x1.00
    assert "lstm" in verdict.kernels and "lstm" in verdict.locked
    # the LSTM's time at the kernel's cost per MAC against the float LSTM's (the Gemm, under
    # 1% of the MACs, aside): W8A8 faster than float, by about the kernel's factor
    assert verdict.w8a8 < 1.0
    assert abs(verdict.w8a8 - LSTM_KERNEL / LSTM_FLOAT) < 0.02
    # the same LSTM on a plan that does not mark it dynamic runs float: predicted x1.00 there
    assert verdict.predict(verdict.kernels - {"lstm"}) > 0.99


def test_an_lstm_is_locked_to_the_formats_that_keep_dynamic_quantize_lstm() -> None:
    """Its candidates are int8 symmetric weights only (int4, fp16, blocked formats would run
    the float LSTM); its input keeps the kernel's uint8 quantizer: an 8-bit swap to another
    activation format (int8 sym, uint8 asym ch) would lose the kernel."""
    engine = _lstm_engine()
    s = _Search(engine, SearchOptions(Budget(size_ratio=0.3), target=ORT_CPU, **FAST), None)
    layer = engine.info.layer("lstm")
    s.base_act = parse_format("uint8 asym")
    assert s._keeps_kernel(layer, INT8)
    assert not s._keeps_kernel(layer, parse_format("int4 sym ch"))
    assert not s._keeps_kernel(layer, parse_format("fp16"))
    assert _keeps_fast_input(layer, parse_format("uint8 asym"))
    for other in ("int8 sym", "uint8 asym ch", "int8 sym ch"):
        assert not _keeps_fast_input(layer, parse_format(other))
    # a Conv/Gemm keeps its fast kernel on any unsigned 8-bit input, as before
    head = engine.info.layer("head")
    assert _keeps_fast_input(head, parse_format("uint8 asym"))
    assert not _keeps_fast_input(head, parse_format("int8 sym"))


def test_a_default_search_keeps_the_lstm_on_its_kernel() -> None:
    """With the default --max-latency (half of W8A8's speed-up), the plan returned keeps the
    LSTM on DynamicQuantizeLSTM and within the limit; the result says it steered."""
    engine = _lstm_engine()
    result, _ = _run(engine, Budget(size_ratio=0.3), target=ORT_CPU)
    steer = result.steering
    assert steer is not None and steer.limit is not None
    assert steer.text.startswith("speed: plans are kept to")
    plan = result.best.plan
    assert "lstm" in lstm_kernel.kernel_layers(plan)
    assert plan["lstm"].weight == INT8 and plan["lstm"].recovery is None
    assert plan["lstm"].activation == parse_format(lstm_kernel.KERNEL_ACTIVATION)
    macs = layer_macs(engine)
    verdict = speed_limit(
        engine, Plan.preset(engine.info, "W8A8", target=ORT_CPU), HALF_W8A8,
        dict.fromkeys(macs, True),
    )  # fmt: skip
    assert not isinstance(verdict, NotSteered)
    assert verdict.predict(plan_kernels(engine, plan)) <= steer.limit + 1e-9


def test_the_lstm_cost_follows_its_hidden_size() -> None:
    """Measured (layer_cost.py, lstm_kernel.py): below the crossover (98,304 weights per step
    and direction, hidden 128 x 64 inputs) DynamicQuantizeLSTM is slower than the float LSTM,
    from there to 256 hidden units 0.62-0.89x its time, beyond faster still; a recurrent
    weight over LSTM_SPILL_BYTES per direction (hidden 512: 4 MiB) makes the float LSTM many
    times slower per MAC; the kernel leaves no quantize work."""
    layer = _engine(lstm_recognizer(steps=4, inp=8, hidden=16)).info.layer("lstm")

    def sized(hidden: int, inp: int = 8):
        w, r = layer.weights
        return dataclasses.replace(layer, weights=(
            dataclasses.replace(w, shape=(2, 4 * hidden, inp)),
            dataclasses.replace(r, shape=(2, 4 * hidden, hidden)),
        ))  # fmt: skip

    small, below, mid, wide, big = (
        lstm_cost(sized(h, k), 1000.0) for h, k in ((64, 8), (112, 64), (128, 64), (256, 8), (512, 8))
    )  # fmt: skip
    assert small.float == 1000 * LSTM_FLOAT and small.kernel == 1000 * LSTM_KERNEL_SMALL
    assert below.kernel == 1000 * LSTM_KERNEL_SMALL and mid.kernel == 1000 * LSTM_KERNEL_MID
    assert small.saved < 0 < mid.saved < wide.saved < big.saved
    assert wide.kernel == 1000 * LSTM_KERNEL and big.float == 1000 * LSTM_FLOAT_SPILLED
    assert small.boundary == mid.boundary == wide.boundary == big.boundary == 0.0


def test_a_small_lstm_whose_kernel_is_slower_stays_float_and_is_not_held() -> None:
    """At 64 hidden units DynamicQuantizeLSTM ran 1.37x the float LSTM's time: W8A8 keeps the
    float LSTM (before: the kernel, predicted x1.13 of float and not steered), so only the
    small Gemm head is an integer kernel: nothing is steered, and the line says why."""
    engine = _engine(lstm_recognizer(steps=32, inp=64, hidden=64))
    macs = layer_macs(engine)
    w8a8 = Plan.preset(engine.info, "W8A8", target=ORT_CPU)
    assert not lstm_kernel.kernel_layers(w8a8)
    assert "lstm" not in plan_kernels(engine, w8a8)
    verdict = speed_limit(engine, w8a8, HALF_W8A8, dict.fromkeys(macs, True))
    assert isinstance(verdict, NotSteered) and verdict.w8a8 > 0.99
    assert verdict.kernel_macs == macs["head"]  # the LSTM's MACs are float ones
    assert "not steered" in verdict.describe()


def test_the_slower_than_float_warning_does_not_count_the_kernel_lstm_as_float() -> None:
    """The speed check's list of quantized layers without an integer kernel (its warning's
    reason) left DynamicQuantizeLSTM out of the kernels: W8A8's LSTM read as 'int8 sym ch
    run as float plus quantize work'."""
    engine = _lstm_engine()
    assert _float_run(engine, Plan.preset(engine.info, "W8A8", target=ORT_CPU)) == ()
