"""What a search is asked: the budget, the candidate formats, pins and effort."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bitlens.core.errors import SearchError
from bitlens.core.plan import LayerChoice
from bitlens.core.targets import DEFAULT_TARGET
from bitlens.core.usermetric import Metric

# fp16, int16, int8 per channel, int7 to int5, int4 per channel and blocked, NF4/NF3 (normal
# quantiles per block of 64, QLoRA's data type: https://arxiv.org/abs/2305.14314), k-means
# codebooks of 16, 8 and 4 levels per tensor (weight sharing, Han et al.:
# https://arxiv.org/abs/1510.00149; the codebook costs 64 bytes at most, so these are the
# smallest 4-, 3- and 2-bit formats), int3, int2, ternary, binary. Formats a layer cannot
# take are skipped for it.
DEFAULT_WEIGHT_FORMATS: tuple[str, ...] = (
    "fp16", "int16 sym ch", "int8 sym ch", "int7 sym ch", "int6 sym ch", "int5 sym ch",
    "int4 sym ch", "int4 asym blk32", "nf4 blk64", "km4", "int3 sym ch", "nf3 blk64", "km3",
    "int2 asym blk32", "km2", "tern ch", "bin ch",
)  # fmt: skip
FLOAT_NAME = "float"
# GPTQ (https://arxiv.org/abs/2210.17323): same bytes as plain rounding, several dB less
# output noise at 2 to 4 bits. The clipping search ("clip_search") can be added; it gains
# less and costs a dozen output-error products per layer and format.
DEFAULT_RECOVERY: tuple[str, ...] = ("gptq",)

DEFAULT_ACTIVATION_FORMATS: tuple[str, ...] = (
    FLOAT_NAME, "fp16", "int16 sym", "uint8 asym", "int8 sym", "uint8 asym ch", "int8 sym ch",
)  # fmt: skip
DEFAULT_BASE_ACTIVATION = "uint8 asym"
AS_W8A8 = "W8A8"  # SearchOptions.max_latency: as fast as the W8A8 preset (predicted)
# The default: halfway between W8A8's predicted time and the float model's, so the plan keeps
# at least half of W8A8's speed-up. Measured at W8A8's size (benchmarks/bench_search.py --real,
# 4 held-out samples, one-thread deployed time against float): malviz ResNet-18 with the limit
# at W8A8 0.33x float but 0.0298 held-out error against W8A8's 0.0262; halfway 0.62x and 0.0221;
# unsteered 0.83x and 0.0094. The W8A8 limit leaves the search little but int4/int8 swaps on
# the layers that carry the time, so on most models it cannot beat W8A8's error.
HALF_W8A8 = "half"
RELATIVE_LATENCIES = (HALF_W8A8, AS_W8A8)  # limits set from W8A8's predicted time
# The budget when none is given (the CLI) and the Find Plan panel's first value: a quarter of
# the float size, about a uniform 8-bit export's.
DEFAULT_SIZE_RATIO = 0.25

# Presets with 8-bit activations share the search's session structure; A16 presets (fp16
# activations everywhere) each cost the engine another session (about 1 GB on ResNet-50).
DEFAULT_REFERENCES: tuple[str, ...] = ("W8A8", "W4A8")


@dataclass(frozen=True)
class Budget:
    """Exactly one limit: file bytes, a size ratio, a maximum output error or a minimum metric."""

    max_bytes: int | None = None
    size_ratio: float | None = None  # of the float model's file size
    max_error: float | None = None  # relative L2 error of the outputs (0.01 = 1%)
    min_metric: float | None = None  # the task metric (higher is better)
    # None given: the CLI's default budget, which falls back to W8A8's size where no plan
    # fits it (core/search/refine.py)
    default: bool = False

    def __post_init__(self) -> None:
        given = [
            k for k in ("max_bytes", "size_ratio", "max_error", "min_metric")
            if getattr(self, k) is not None
        ]  # fmt: skip
        if len(given) != 1:
            raise SearchError(
                "give exactly one budget: max bytes, size ratio, max error or min metric"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if self.max_bytes is not None and self.max_bytes <= 0:
            raise SearchError(f"max bytes must be positive, got {self.max_bytes}")
        if self.size_ratio is not None and not 0 < self.size_ratio <= 1:
            raise SearchError(f"size ratio must be in (0, 1], got {self.size_ratio}")
        if self.max_error is not None and not self.max_error > 0:
            raise SearchError(f"max error must be positive, got {self.max_error}")

    @property
    def by_size(self) -> bool:
        return self.max_bytes is not None or self.size_ratio is not None

    def describe(self) -> str:
        if self.max_bytes is not None:
            return f"at most {self.max_bytes} bytes"
        if self.size_ratio is not None:
            return f"at most {self.size_ratio:g} of the float size"
        if self.max_error is not None:
            return f"output error at most {self.max_error:g}"
        return f"metric at least {self.min_metric:g}"


@dataclass(frozen=True)
class SearchOptions:
    budget: Budget
    weight_formats: tuple[str, ...] = DEFAULT_WEIGHT_FORMATS
    activation_formats: tuple[str, ...] = DEFAULT_ACTIVATION_FORMATS
    base_activation: str | None = DEFAULT_BASE_ACTIVATION  # None: activations stay float
    wide_activations: int | None = None  # None: a tenth of the layers, at least one
    pins: Mapping[str, LayerChoice] = field(default_factory=dict)
    seed: int = 0
    front_probes: int = 10  # plans along the greedy path evaluated for the front
    refine_evaluations: int = 36  # whole-plan evaluations spent near the budget
    # Size budgets: export the chosen plan to a temporary file and, when the graph's own
    # overhead (unpacking nodes, quantizer parameters) pushes it over, choose again below.
    check_export: bool = True
    references: tuple[str, ...] = DEFAULT_REFERENCES  # presets evaluated for comparison
    metric: Metric | None = None  # None: accuracy when the data has labels
    # Size budgets: when the plan found loses more than this much of the task metric
    # against the float model, search again with float activations (weights only) and keep
    # the better plan; None never does
    float_activation_fallback: float | None = 0.01
    # Recovery methods (bitlens.core.recovery) the search may give a layer's low-bit integer
    # weights, chosen per layer and format where they lower the layer's output error;
    # empty: plain rounding everywhere
    recovery: tuple[str, ...] = DEFAULT_RECOVERY
    # Deployment target of every plan the search builds, so its errors and sizes are those
    # of what that target deploys (bitlens.core.targets).
    target: str = DEFAULT_TARGET
    # Size budgets, ONNX Runtime CPU target: the last choice between the best plans that fit
    # (and the best one with its 8-bit activation swaps undone) is made on their exports'
    # errors in a default ONNX Runtime session, whose integer kernels round otherwise than
    # the simulation (core/search/deployed.py); a few exports more
    deployed_check: bool = True
    # Where the plan was exported for ONNX Runtime CPU: time it against the float model and
    # W8A8 in default sessions and warn when it runs slower than float (core/search/speed.py)
    speed_check: bool = True
    # Size budgets: this fraction of the evaluation feeds (at least one, when there are two
    # or more) is held back from the search and its last choice made on it, against the
    # uniform plans of the same size too, so the plan's error holds on data it did not fit
    # (core/search/guard.py); 0 fits every evaluation feed
    check_fraction: float = 1 / 3
    # ONNX Runtime CPU: the predicted deployed time a plan may take, of the float model's,
    # AS_W8A8 (W8A8's predicted time, a little slack: core/search/latency.py) or HALF_W8A8
    # (halfway from that to float's); layers whose integer kernel it needs keep one. None:
    # speed is not steered
    max_latency: float | str | None = HALF_W8A8
    # Bytes the process may keep resident between the search's steps (core/search/memory.py);
    # None: 24 times the model's file size, at least 384 MiB, at most the memory budget
    memory_limit: int | None = None

    def __post_init__(self) -> None:
        m = self.max_latency
        if isinstance(m, str) and m not in RELATIVE_LATENCIES:
            raise SearchError(
                f"max latency must be {HALF_W8A8!r}, {AS_W8A8!r} or a ratio of the float time, "
                f"got {m!r}"
            )
        if isinstance(m, (int, float)) and not m > 0:
            raise SearchError(f"max latency must be a positive ratio of the float time, got {m}")


def parse_max_latency(text: str) -> float | str | None:
    """``half`` (halfway between W8A8's time and float's), ``W8A8`` (as fast as the W8A8
    preset), ``none`` (speed not steered) or a ratio of the float model's time (``0.5``)."""
    t = text.strip()
    if t.upper() == AS_W8A8:
        return AS_W8A8
    if t.lower() == HALF_W8A8:
        return HALF_W8A8
    if t.lower() == "none":
        return None
    try:
        value = float(t)
    except ValueError:
        raise SearchError(
            f"max latency must be {HALF_W8A8}, {AS_W8A8}, none or a ratio of the float time, "
            f"got {text!r}"
        ) from None
    if not value > 0:
        raise SearchError(f"max latency must be a positive ratio of the float time, got {text!r}")
    return value
