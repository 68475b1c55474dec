"""Per-layer quantization plans: typed, validated against the model, versioned JSON.

A :class:`Plan` maps each quantizable layer to a :class:`LayerChoice`
(weight format, activation format; ``None`` keeps float). It is
immutable: edits return a new plan, which makes undo/redo and caching
by identity trivial. Construction validates everything at once, so an
unknown layer name or an activation format on a layer without a
quantizable activation fails immediately, naming the layer (compare
ONNX Runtime's free-form ``extra_options``, where a typo is silently ignored).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from bitlens.core import lstm_kernel
from bitlens.core.errors import FormatError, PlanError
from bitlens.core.formats import (
    Family,
    Format,
    Granularity,
    RangeMethod,
    parse_format,
    quantize,
    registry,
)
from bitlens.core.model.half_activations import quantizable_activations
from bitlens.core.model.stored_grid import layer_grid
from bitlens.core.model.types import Layer, ModelInfo
from bitlens.core.plan_schema import (
    check_ort_overrides,
    check_plan_dict,
    loads,
    plan_recoveries,
)
from bitlens.core.recovery import Recovery, parse_recovery
from bitlens.core.recovery.support import check_recovery
from bitlens.core.shared_weights import normalize, weight_groups
from bitlens.core.targets import (
    DEFAULT_TARGET,
    ORT_CPU,
    TENSORRT,
    check_target,
    idle_input_quantizer,
)

PLAN_VERSION = 1

# Weight formats offered for every layer, highest precision first ("int8 sym narrow" is
# ONNX Runtime's symmetric int8, codes -127..127).
WEIGHT_CHOICES: tuple[str, ...] = registry.weight_choices()  # each family's, in registry order
# Activation formats: per tensor, range from calibration (or from each input when dynamic).
ACTIVATION_CHOICES: tuple[str, ...] = (
    "fp16", "bf16", "fp8e4m3fn", "int16 sym", "uint8 asym", "int8 sym", "int8 asym",
    "uint6 asym", "uint4 asym", "int4 sym", "uint8 asym ch", "int8 sym ch",
)  # fmt: skip

# preset -> (weight format, activation format); A16 means fp16 activations (weight-only
# quantization as in LLM "W4A16"), A8 means calibrated uint8, as ONNX Runtime's QDQ default.
PRESET_FORMATS: dict[str, tuple[str | None, str | None]] = {
    "fp16": ("fp16", "fp16"),
    "W8A8": ("int8 sym ch", "uint8 asym"),
    "W8A16": ("int8 sym ch", "fp16"),
    "W4A16": ("int4 sym blk32", "fp16"),
    "W4A8": ("int4 sym ch", "uint8 asym"),
    "W2A16": ("int2 asym blk32", "fp16"),
    "ternary": ("tern ch", None),
    "binary": ("bin ch", None),
}
PRESETS: tuple[str, ...] = tuple(PRESET_FORMATS)
# The TensorRT target's 8-bit presets: TensorRT's int8 is symmetric, weights -127..127 per
# output channel and activations zero point 0 (bitlens.core.export.tensorrt has the rules).
TENSORRT_PRESET_FORMATS: dict[str, tuple[str | None, str | None]] = {
    "W8A8": ("int8 sym narrow ch", "int8 sym"),
    "W8A16": ("int8 sym narrow ch", "fp16"),
}


@dataclass(frozen=True)
class LayerChoice:
    weight: Format | None = None
    activation: Format | None = None
    # Integer activations only: take the range from each input at run time instead of
    # from calibration (dynamic quantization).
    dynamic: bool = False
    # An accuracy-recovery method for the weights (bitlens.core.recovery), None: plain
    # rounding. Written to JSON only when set, so plans without it read and write as before.
    recovery: Recovery | None = None

    @property
    def is_float(self) -> bool:
        return self.weight is None and self.activation is None

    @classmethod
    def of(
        cls,
        weight: Format | str | None = None,
        activation: Format | str | None = None,
        dynamic: bool = False,
        recovery: Recovery | str | None = None,
    ) -> LayerChoice:
        return cls(
            None if weight is None else parse_format(weight),
            None if activation is None else parse_format(activation),
            dynamic,
            recovery if isinstance(recovery, Recovery) else parse_recovery(recovery),
        )

    def to_dict(self) -> dict[str, str | bool | None]:
        d: dict[str, str | bool | None] = {
            "weight": None if self.weight is None else self.weight.name,
            "activation": None if self.activation is None else self.activation.name,
        }
        if self.dynamic:
            d["dynamic"] = True
        if self.recovery is not None:
            d["recovery"] = self.recovery.value
        return d


FLOAT = LayerChoice()


def weight_choices(layer: Layer) -> list[str]:
    return list(WEIGHT_CHOICES) if layer.weights else []


def activation_choices(layer: Layer) -> list[str]:
    return list(ACTIVATION_CHOICES) if layer.activations else []


def validate_choice(layer: Layer, choice: LayerChoice) -> None:
    """Raise PlanError if ``choice`` cannot apply to ``layer``."""
    w, a = choice.weight, choice.activation
    if w is not None:
        if not layer.weights:
            raise PlanError(f"layer {layer.name!r} ({layer.op_type}) has no weights to quantize")
        for wi in layer.weights:
            if w.axis is not None and w.axis >= len(wi.shape):
                raise PlanError(
                    f"layer {layer.name!r}: {w.name} names axis {w.axis}, "
                    f"but weight {wi.name!r} has shape {list(wi.shape)}"
                )
    if choice.recovery is not None:
        check_recovery(layer, choice.weight, choice.recovery)
    if choice.dynamic and (a is None or a.family is not Family.INT):
        raise PlanError(
            f"layer {layer.name!r}: dynamic quantization needs an integer activation format"
        )
    if a is not None:
        if layer.graph_path:
            raise PlanError(
                f"layer {layer.name!r} sits inside {layer.graph_path}; activation quantization "
                "inside If/Loop/Scan bodies is not supported (its weights can be quantized)"
            )
        if not layer.activations:
            raise PlanError(
                f"layer {layer.name!r} ({layer.op_type}) has no float activation input to quantize"
            )
        if a.granularity is Granularity.BLOCK:
            raise PlanError(f"layer {layer.name!r}: activation format {a.name} cannot be blocked")
        if a.granularity is Granularity.CHANNEL and (a.family is not Family.INT or choice.dynamic):
            raise PlanError(
                f"layer {layer.name!r}: per-channel activations are static integer formats only"
            )
        if a.is_float and a.float_kind in ("fp64", "fp32"):
            raise PlanError(f"layer {layer.name!r}: use 'keep float' rather than {a.name}")
        if registry.family_of(a).activation_kind(a, choice.dynamic) is None:
            raise PlanError(
                f"layer {layer.name!r}: activation format {a.name} is not supported "
                "(integer or float formats only)"
            )


class Plan(Mapping[str, LayerChoice]):
    """An immutable, validated mapping layer name -> LayerChoice (absent = float)."""

    def __init__(
        self,
        info: ModelInfo,
        choices: Mapping[str, LayerChoice] | None = None,
        target: str = DEFAULT_TARGET,
    ):
        self.info = info
        # The deployment target decides which tensors besides the layer inputs the engine
        # and the export quantize (bitlens.core.targets).
        self.target = check_target(target)
        layers = {layer.name: layer for layer in info.layers}
        clean: dict[str, LayerChoice] = {}
        for name, choice in (choices or {}).items():
            if name not in layers:
                raise PlanError(f"plan names layer {name!r}, which the model does not have")
            if not isinstance(choice, LayerChoice):
                raise PlanError(
                    f"layer {name!r}: expected a LayerChoice, got {type(choice).__name__}"
                )
            validate_choice(layers[name], choice)
            if not choice.is_float:
                clean[name] = choice
        # Readers of one weight share one weight format (bitlens.core.shared_weights): a plan
        # that disagrees takes its first quantizing reader's, and says so in ``notes``.
        fixed, notes = normalize(info, {n: (c.weight, c.recovery) for n, c in clean.items()})
        for name, (weight, recovery) in fixed.items():
            prev = clean.get(name, FLOAT)
            choice = dataclasses.replace(prev, weight=weight, recovery=recovery)
            validate_choice(layers[name], choice)
            if choice.is_float:
                clean.pop(name, None)
            else:
                clean[name] = choice
        self.notes: tuple[str, ...] = tuple(notes)
        self._choices = MappingProxyType(clean)

    # -- Mapping over *all* layers --------------------------------------------------
    def __getitem__(self, layer: str) -> LayerChoice:
        if layer not in self.info.layer_index:
            raise KeyError(layer)
        return self._choices.get(layer, FLOAT)

    def __iter__(self) -> Iterator[str]:
        return iter(self.info.layer_names)

    def __len__(self) -> int:
        return len(self.info.layers)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Plan)
            and other.info is self.info
            and other.target == self.target
            and dict(other._choices) == dict(self._choices)
        )

    def __hash__(self) -> int:
        # kept: a plan never changes, and the engine looks plans up several times an
        # evaluation (hashing every choice's formats each time)
        found = self.__dict__.get("_hash")
        if found is None:
            found = self._hash = hash(
                (self.target, tuple(sorted((k, v) for k, v in self._choices.items())))
            )
        return found

    def __repr__(self) -> str:
        return f"Plan({len(self._choices)} of {len(self)} layers quantized)"

    @property
    def choices(self) -> Mapping[str, LayerChoice]:
        """Only the layers that are not kept float."""
        return self._choices

    # -- edits ---------------------------------------------------------------------
    def with_choices(self, changes: Mapping[str, LayerChoice]) -> Plan:
        """These layers' choices changed; a changed weight format (or recovery) is given to
        every layer that reads the same weight (their activations stay their own)."""
        merged = dict(self._choices)
        merged.update(changes)
        groups = weight_groups(self.info) if changes else {}
        for name, choice in changes.items():
            old = self._choices.get(name, FLOAT)
            if (choice.weight, choice.recovery) == (old.weight, old.recovery):
                continue
            for other in groups.get(name, ()):
                if other not in changes:
                    prev = merged.get(other, FLOAT)
                    merged[other] = dataclasses.replace(
                        prev, weight=choice.weight, recovery=choice.recovery
                    )
        return Plan(self.info, merged, self.target)

    def with_target(self, target: str) -> Plan:
        return Plan(self.info, self._choices, target)

    @classmethod
    def float(cls, info: ModelInfo) -> Plan:
        return cls(info)

    @classmethod
    def preset(
        cls, info: ModelInfo, name: str, layers: Iterable[str] | None = None,
        target: str | None = None,
    ) -> Plan:
        """All layers (or ``layers``) at a preset; activations only where the layer has one.
        With ``target`` the plan is for that target, in its formats where they differ. For
        ``ort-cpu`` (the default) an LSTM with 8-bit weights is marked dynamic, which runs it
        as ONNX Runtime's integer ``DynamicQuantizeLSTM`` (:mod:`bitlens.core.lstm_kernel`)."""
        if name not in PRESET_FORMATS:
            raise PlanError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        if target is None:
            plan = cls.uniform(info, *PRESET_FORMATS[name], layers=layers)
        else:
            formats = TENSORRT_PRESET_FORMATS if target == TENSORRT else {}
            fmts = formats.get(name, PRESET_FORMATS[name])
            plan = cls.uniform(info, *fmts, layers=layers).with_target(target)
        # a layer the target keeps float reads its input unquantized (no kernel to feed)
        idle = {
            n: dataclasses.replace(c, activation=None, dynamic=False)
            for n, c in plan.choices.items()
            if idle_input_quantizer(info.layer(n), c.weight, c.activation, plan.target)
        }
        plan = plan.with_choices(idle) if idle else plan
        plan = _keep_stored_grids(plan)
        # ONNX Runtime's CPU provider runs an int8 LSTM as DynamicQuantizeLSTM (lstm_kernel)
        return lstm_kernel.with_kernel(plan) if plan.target == ORT_CPU else plan

    @classmethod
    def uniform(
        cls,
        info: ModelInfo,
        weight: Format | str | None,
        activation: Format | str | None = None,
        layers: Iterable[str] | None = None,
    ) -> Plan:
        """Apply one weight/activation format to these layers (default: all)."""
        names = list(info.layer_names if layers is None else layers)
        choice = LayerChoice.of(weight, activation)
        out: dict[str, LayerChoice] = {}
        for name in names:
            layer = _layer(info, name)
            # Activations inside If/Loop/Scan bodies (validate_choice) or in float16
            # (half_activations.py) cannot be quantized: a preset quantizes those layers'
            # weights only.
            act = choice.activation if quantizable_activations(info, layer) else None
            out[name] = LayerChoice(choice.weight, act, choice.dynamic and act is not None)
        return cls(info, out)

    # -- JSON -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "bitlens_plan": PLAN_VERSION,
            "model": {"opset": self.info.opset, "layers": len(self.info.layers)},
            "target": self.target,
            "layers": {k: v.to_dict() for k, v in self._choices.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, info: ModelInfo, data: Any) -> Plan:
        choices: dict[str, LayerChoice] = {}
        checked = check_plan_dict(data, PLAN_VERSION)
        recoveries = plan_recoveries(data)
        for name, (weight, activation, dynamic) in checked.items():
            try:
                choices[name] = LayerChoice.of(weight, activation, dynamic, recoveries[name])
            except FormatError as exc:
                raise PlanError(f"layer {name!r}: {exc}") from None
        target = data.get("target", DEFAULT_TARGET)
        if not isinstance(target, str):
            raise PlanError(f"plan 'target' must be a string, not {type(target).__name__}")
        return cls(info, choices, target)

    @classmethod
    def from_json(cls, info: ModelInfo, text: str) -> Plan:
        return cls.from_dict(info, loads(text, "plan"))

    # -- ONNX Runtime TensorQuantOverrides interop --------------------------------------
    def to_ort_overrides(
        self, weights: Callable[[str], np.ndarray] | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """The plan as ``extra_options["TensorQuantOverrides"]`` (JSON-friendly names), such
        that ``quantize_static`` computes the same codes and scales as Bitlens.

        A format whose numbers ONNX Runtime's own rule reproduces (:data:`ORT_EXACT`) is
        written as its ``quant_type`` and ``symmetric`` flag; note that ONNX Runtime's
        symmetric int8/int16 use the narrow range -127..127 / -32767..32767, which is
        Bitlens's ``int8 sym narrow``. Other integer weight formats (``int8 sym``'s
        -128..127, MSE or percentile ranges, narrow int4) are written with their explicit
        ``scale`` and ``zero_point`` (per channel, one entry per channel) when ``weights``
        gives the weight values. Everything else is left out and listed by
        :meth:`ort_unrepresentable`.
        """
        out: dict[str, list[dict[str, Any]]] = {}
        for name, choice in self._choices.items():
            layer = _layer(self.info, name)
            recovered = choice.recovery is not None  # codes ORT's rounding cannot reproduce
            for w in layer.weights if choice.weight is not None and not recovered else ():
                entries = _ort_weight_entries(choice.weight, w, weights)
                if entries is not None:
                    out[w.name] = entries
            act_fmt = choice.activation
            if act_fmt is not None and not choice.dynamic and (rule := ort_rule(act_fmt)):
                for act in layer.activations:
                    out[act] = [{"quant_type": rule[0], "symmetric": rule[1]}]
        return out

    def ort_unrepresentable(self, with_weights: bool = False) -> list[str]:
        """What :meth:`to_ort_overrides` leaves out (``with_weights``: when it is given the
        weight values), one ``layer: kind format (why)`` entry each."""
        msgs = []
        for name, choice in self._choices.items():
            w, a = choice.weight, choice.activation
            if w is not None and choice.recovery is not None:
                msgs.append(
                    f"{name}: weight {w.name} with {choice.recovery.value} (ONNX Runtime's "
                    "quantizer rounds to nearest; export the model with Bitlens instead)"
                )
            elif w is not None and ort_rule(w) is None and not (with_weights and _ort_explicit(w)):
                why = (
                    "ONNX Runtime's symmetric int8 uses codes -127..127: choose "
                    f"{w.name.replace('sym', 'sym narrow', 1)} or give the weights"
                    if _ort_explicit(w)
                    else "no ONNX Runtime quant_type"
                )
                msgs.append(f"{name}: weight {w.name} ({why})")
            if a is not None and (choice.dynamic or ort_rule(a) is None):
                msgs.append(f"{name}: activation {a.name} (no ONNX Runtime rule gives its range)")
        return msgs

    @classmethod
    def from_ort_overrides(cls, info: ModelInfo, overrides: Mapping[str, Any]) -> Plan:
        overrides = check_ort_overrides(overrides)
        by_weight = {w.name: layer for layer in info.layers for w in layer.weights}
        by_act: dict[str, list[Layer]] = {}
        for layer in info.layers:
            for a in layer.activations:
                by_act.setdefault(a, []).append(layer)
        choices: dict[str, LayerChoice] = {}
        for tensor, entries in overrides.items():
            if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
                raise PlanError(f"override for {tensor!r}: expected a list of objects")
            if tensor in by_weight:
                fmt = _format_from_ort(tensor, entries, weight=True)
                layer = by_weight[tensor]
                prev = choices.get(layer.name, FLOAT)
                choices[layer.name] = LayerChoice(fmt, prev.activation, prev.dynamic)
            elif tensor in by_act:
                fmt = _format_from_ort(tensor, entries, weight=False)
                for layer in by_act[tensor]:
                    prev = choices.get(layer.name, FLOAT)
                    choices[layer.name] = LayerChoice(prev.weight, fmt)
            else:
                raise PlanError(
                    f"override names tensor {tensor!r}, which feeds no quantizable layer"
                )
        return cls(info, choices)


# Bitlens integer formats whose codes, scales and zero points ONNX Runtime's quantizer
# computes bit for bit from its own (quant_type, symmetric) rule: min-max ranges, per tensor
# or per channel. onnxruntime/quantization/quant_utils.py get_qmin_qmax_for_qType: symmetric
# int8 and int16 use -127..127 and -32767..32767 (ONNX_INT_TYPE_SYMMETRIC_RANGE), int4 keeps
# -8..7; compute_scale_zp then takes scale (hi - lo) / (qmax - qmin) and zero point
# round((qmin + qmax) / 2) (symmetric) or round(qmin - lo / scale), as Bitlens does.
# Checked against quantize_data in tests/core/test_plan_ort.py.
ORT_EXACT: dict[tuple[int, bool, bool, bool], tuple[str, bool]] = {
    # (bits, signed, symmetric, narrow) -> (quant_type, symmetric)
    (8, True, True, True): ("QInt8", True), (8, True, False, False): ("QInt8", False),
    (16, True, True, True): ("QInt16", True), (16, True, False, False): ("QInt16", False),
    (4, True, True, False): ("QInt4", True), (4, True, False, False): ("QInt4", False),
    (8, False, True, False): ("QUInt8", True), (8, False, False, False): ("QUInt8", False),
    (16, False, False, False): ("QUInt16", False), (4, False, False, False): ("QUInt4", False),
}  # fmt: skip
_ORT_TYPE_OF = {(8, True): "QInt8", (16, True): "QInt16", (4, True): "QInt4",
                (8, False): "QUInt8", (16, False): "QUInt16", (4, False): "QUInt4"}  # fmt: skip


def ort_rule(fmt: Format) -> tuple[str, bool] | None:
    """(quant_type, symmetric) with which ONNX Runtime computes ``fmt``'s numbers itself."""
    if fmt.is_float and fmt.float_kind == "fp8e4m3fn" and fmt.granularity is Granularity.TENSOR:
        return ("QFLOAT8E4M3FN", True)
    if (
        fmt.family is not Family.INT
        or fmt.granularity is Granularity.BLOCK
        or fmt.range_method is not RangeMethod.MINMAX
    ):
        return None
    return ORT_EXACT.get((fmt.bits, fmt.signed, fmt.symmetric, fmt.narrow))


def ort_quant_type(fmt: Format) -> str | None:
    rule = ort_rule(fmt)
    return None if rule is None else rule[0]


def _ort_explicit(fmt: Format) -> bool:
    """Integer formats ONNX Runtime stores when told their scale and zero point."""
    return (
        fmt.family is Family.INT
        and fmt.granularity is not Granularity.BLOCK
        and (fmt.bits, fmt.signed) in _ORT_TYPE_OF
    )


def _ort_weight_entries(
    fmt: Format, w: Any, weights: Callable[[str], np.ndarray] | None
) -> list[dict[str, Any]] | None:
    axis = None
    if fmt.granularity is Granularity.CHANNEL:
        axis = w.channel_axis if fmt.axis is None else fmt.axis
    rule = ort_rule(fmt)
    if rule is not None:
        entry: dict[str, Any] = {"quant_type": rule[0], "symmetric": rule[1]}
        if axis is not None:
            entry["axis"] = axis
        return [entry]
    if weights is None or not _ort_explicit(fmt):
        return None
    bound = fmt if axis is None else dataclasses.replace(fmt, axis=axis)
    q = quantize(weights(w.name), bound)
    scales = np.asarray(q.scale, np.float32).ravel()
    zps = np.asarray(q.zero_point).astype(np.int64).ravel()
    qt = _ORT_TYPE_OF[(fmt.bits, fmt.signed)]
    entries: list[dict[str, Any]] = [
        {"scale": float(sc), "zero_point": int(z)} for sc, z in zip(scales, zps, strict=True)
    ]
    entries[0] = {"quant_type": qt, **({"axis": axis} if axis is not None else {}), **entries[0]}
    return entries


def _format_from_ort(tensor: str, entries: list[Any], *, weight: bool) -> Format:
    entry = entries[0]
    qt = str(entry.get("quant_type", "")).removeprefix("QuantType.")
    if qt == "QFLOAT8E4M3FN":
        return parse_format("fp8e4m3fn")
    inv = {v: k for k, v in _ORT_TYPE_OF.items()}
    if qt not in inv:
        raise PlanError(f"override for {tensor!r}: quant_type {qt!r} is not supported")
    bits, signed = inv[qt]
    if "scale" in entry:
        # explicit parameters, as to_ort_overrides writes for formats ORT's rule differs on:
        # zero points all 0 on a signed type is Bitlens's symmetric full range (int8 sym)
        zps = [e.get("zero_point", 0) for e in entries if isinstance(e, dict)]
        sym, narrow = signed and not any(zps), False
    else:
        # quantize_static's defaults: signed weights symmetric, activations asymmetric
        sym = bool(entry.get("symmetric", signed and weight))
        narrow = sym and signed and bits in (8, 16)  # ONNX Runtime's -127..127 / -32767..32767
    text = f"{'' if signed else 'u'}int{bits} {'sym' if sym else 'asym'}"
    text += " narrow" if narrow else ""
    if "axis" in entry:
        text += f" ch{int(entry['axis'])}"
    return parse_format(text)


def _keep_stored_grids(plan: Plan) -> Plan:
    """An 8-bit preset's weights decoded from int8 codes in the file go on the int8 format
    that reproduces them exactly (the file's own grid, bitlens.core.model.stored_grid) instead
    of re-rounding them; TensorRT only where that grid is its -127..127."""
    changes = {}
    for name, c in plan.choices.items() if plan.info.stored_grids else ():
        grid = stored_grid(plan.info, name, c.weight, plan.target)
        if grid is not None and grid.name != c.weight.name:  # type: ignore[union-attr]
            changes[name] = dataclasses.replace(c, weight=grid)
    return plan.with_choices(changes) if changes else plan


def stored_grid(info: ModelInfo, name: str, weight: Format | None, target: str) -> Format | None:
    """The int8 format on the file's own grid that takes the place of ``weight`` (a signed
    8-bit integer format) for layer ``name``, whose weights the file stores as int8 codes on
    it (bitlens.core.model.stored_grid); None when there is none (TensorRT: only its
    -127..127 grid)."""
    w = weight
    if not info.stored_grids or w is None or w.family is not Family.INT:
        return None
    if w.bits != 8 or not w.signed:
        return None
    grid = layer_grid(info.stored_grids, info.layer(name).weights)
    if grid is None or (target == TENSORRT and not parse_format(grid).narrow):
        return None
    return parse_format(grid)


def _layer(info: ModelInfo, name: str) -> Layer:
    try:
        return info.layer(name)
    except KeyError:
        raise PlanError(f"plan names layer {name!r}, which the model does not have") from None
