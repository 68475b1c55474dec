"""The activation side of the layer sandbox: every activation format on one layer's input,
with a calibrated (static) range and, where the format allows it, a range taken from
each input at run time (dynamic), side by side. At run time the range is the
input's minimum and maximum, whatever clipping method the static format names.

Errors are those of the input activation itself (quantized against float) over the
evaluation feeds, as the weight sandbox shows the weight's own error. Static uses
the engine's calibrated range, exactly what the plan would use; dynamic takes each
feed's own minimum and maximum (zero included), which is what ONNX Runtime's
``DynamicQuantizeLinear`` computes per call
(https://onnx.ai/onnx/operators/onnx__DynamicQuantizeLinear.html) and what the
engine simulates for a dynamic choice, one run per feed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bitlens.core.engine import quantizers
from bitlens.core.formats import (
    Family,
    Format,
    Granularity,
    fake_quantize,
    parse_format,
)
from bitlens.core.metrics import ErrorSums
from bitlens.core.results import TensorError

MAX_FEEDS = 8  # the sandbox is a quick look: at most this many evaluation feeds


@dataclass(frozen=True)
class ActivationRow:
    format: str
    static: TensorError
    dynamic: TensorError | None  # None: this format cannot take its range at run time


def can_be_dynamic(fmt: Format | str) -> bool:
    """Integer, per tensor: what a range computed at run time can serve."""
    f = parse_format(fmt)
    return f.family is Family.INT and f.granularity is Granularity.TENSOR


def dynamic_fake_quantize(x: np.ndarray, fmt: Format) -> np.ndarray:
    """``x`` through a dynamic quantizer: the engine's own numpy twin of the graph it runs
    (float32 arithmetic, as DynamicQuantizeLinear: a float64 scale differs in the last bit)."""
    params = quantizers.param_feeds("int-dyn", "p", fmt, 0.0, 0.0)
    return quantizers.numpy_reference("int-dyn", x, params, "p")


def activation_rows(
    feeds: Sequence[np.ndarray],
    formats: Sequence[Format | str],
    bind: Callable[[Format], Format],
    static_range: Callable[[Format], tuple[Any, Any] | None],
) -> Iterator[ActivationRow]:
    """One row per format, computed lazily (a newer request can stop between formats).

    ``bind`` resolves a per-channel format's axis for this layer; ``static_range`` gives
    the calibrated range of a bound format (None for formats without a scale).
    """
    feeds = [np.asarray(f) for f in feeds[:MAX_FEEDS]]
    for f in formats:
        name = parse_format(f).name  # as the plan names it (a per-channel axis unbound)
        fmt = bind(parse_format(f))
        rng = static_range(fmt) if fmt.has_scale else None
        if rng is not None and np.ndim(rng[0]) > 0:
            # per channel: the engine shapes ranges to broadcast, the codec wants one per group
            rng = (np.ravel(rng[0]), np.ravel(rng[1]))
        static = ErrorSums()
        dynamic = ErrorSums() if can_be_dynamic(fmt) else None
        for x in feeds:
            static.add(x, fake_quantize(x, fmt, value_range=rng) if rng else fake_quantize(x, fmt))
            if dynamic is not None:
                dynamic.add(x, dynamic_fake_quantize(x, fmt))
        yield ActivationRow(name, static.result(), None if dynamic is None else dynamic.result())
