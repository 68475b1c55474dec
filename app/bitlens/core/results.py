"""Result records the engine returns and every view reads.

Plain frozen dataclasses of numbers: the table, plots, CLI and JSON output
read these and never recompute anything. ``None`` means "not applicable"
(e.g. no activation quantized, output not classifier-like).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class TensorError:
    """Error of an approximation against its float reference."""

    mse: float
    sqnr_db: float  # 10 log10(signal power / noise power); inf when exact
    cosine: float
    max_abs: float
    rel_l2: float


@dataclass(frozen=True)
class LayerResult:
    name: str
    weight_format: str | None  # format name, None = kept float
    activation_format: str | None
    weight: TensorError | None  # weight reconstruction error
    local: TensorError | None  # layer output, only this layer quantized, float inputs
    accumulated: TensorError | None  # layer output under the whole plan
    bytes_before: int
    bytes_after: int


@dataclass(frozen=True)
class OutputResult:
    name: str
    error: TensorError
    top1_agreement: float | None = None  # fraction of samples whose argmax matches float
    kl: float | None = None  # mean KL(float softmax || quantized softmax)
    # where the output's shape depends on the data and differs from float's: how many
    # evaluation samples and the first pair of shapes (compared zero-padded; metrics.py)
    shape_differs: str | None = None
    # an output whose rows a TopK/NMS picks: the tensor before the pick its error compares
    # (Engine.measured_on)
    measured_on: str | None = None


@dataclass(frozen=True)
class Evaluation:
    layers: dict[str, LayerResult]
    outputs: dict[str, OutputResult]
    bytes_before: int
    bytes_after: int
    params: int
    providers: tuple[str, ...]  # what ONNX Runtime actually ran on
    first_divergence: tuple[str | None, ...] = ()  # per evaluation sample
    task_metric: dict[str, float] = field(default_factory=dict)  # e.g. {"accuracy": ...}

    @property
    def compression(self) -> float:
        return self.bytes_before / self.bytes_after if self.bytes_after else float("inf")

    @property
    def avg_bits(self) -> float:
        return 8.0 * self.bytes_after / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["compression"] = self.compression
        d["avg_bits"] = self.avg_bits
        return d


@dataclass(frozen=True)
class SweepEntry:
    layer: str
    format: str
    output: TensorError  # model-output error with only this layer quantized
    bytes_after: int
    # the output that error is read at when not the model's first float output (a layer
    # that does not reach it: a detector's other heads); None: that first float output
    at_output: str | None = None


@dataclass(frozen=True)
class Progress:
    """Yielded by long jobs (calibration, sweep, export) after each unit of work."""

    done: int
    total: int
    message: str = ""


def drain(gen: Generator[Any, Any, T]) -> T:
    """Run a progress-yielding job to the end where nobody watches, and return its value."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
