"""Write a plan as an ONNX model that runs in plain ONNX Runtime exactly as simulated.

For each quantized layer:

* **integer-kernel layers** (Conv, MatMul, Gemm with 8-bit integer weights per
  tensor or per channel and a calibrated int8/uint8 activation): standard QDQ
  (the weight as int8/uint8 codes under DequantizeLinear, the activation as a
  QuantizeLinear/DequantizeLinear pair, and, for Conv and Gemm, the bias as
  int32 at scale ``s_x * s_w``) so that ONNX Runtime's CPU provider fuses the
  group into QLinearConv / QLinearMatMul / QGemm / MatMulIntegerToFloat;
* **MatMulNBits** (opt-in) for MatMul weights in 2/4/8-bit blocks along K;
* **every other weight**: compact codes and the exact constant subgraph that
  rebuilds the simulated float weight (:mod:`bitlens.core.export.weights`),
  or DequantizeLinear on a native type when ``weights="qdq"`` is asked for;
* **every other activation**: the engine's own simulation nodes with the
  calibrated parameters baked in (:mod:`bitlens.core.export.activations`).

Layers left float are not touched. The source file is never opened for
writing; the export is written atomically. The export is a generator that
yields :class:`~bitlens.core.results.Progress` after each layer, so a GUI
worker can show progress and cancel between layers (nothing is written
until the last step).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import helper

from bitlens.core.engine import bind, quantizers, weight_bytes_after
from bitlens.core.engine.graphs import node_producing
from bitlens.core.errors import BitlensError, ExportError
from bitlens.core.export import activations, matmulnbits, opsets
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.bias import BiasRecord, int32_bias
from bitlens.core.export.editing import ExportState, field_bytes, remove_weight
from bitlens.core.export.graph import GraphBuilder, used_names
from bitlens.core.export.weights import FOLD, QDQ, WeightEncoding, encode_weight, native_qdq_dtype
from bitlens.core.fileio import atomic_write_bytes, check_output, same_file
from bitlens.core.formats import Format, Granularity, parse_format, quantize, uniform
from bitlens.core.model.types import Layer, ModelInfo, Storage, WeightInfo
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.recovery import Recovered, Recovery
from bitlens.core.recovery import export as recovery_export
from bitlens.core.results import Progress
from bitlens.core.targets import (
    TensorQuantizer,
    check_plan,
    deployment_warnings,
    kernel_format,
)

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

# ONNX Runtime's WeightBiasQuantization pass quantizes the float weight of these ops to int8
# per tensor (and the bias to int32) when their input comes from a DequantizeLinear and their
# output leads to a QuantizeLinear: see _guard.
REQUANTIZED_BY_ORT = frozenset({"Conv", "ConvTranspose", "Gemm"})
METADATA_KEY = "bitlens.export"
MAX_PROTO_BYTES = 2**31 - 1


@dataclass(frozen=True)
class ExportOptions:
    """What the user can choose about the exported file.

    ``weights``: "fold" (compact codes + a constant subgraph ONNX Runtime
    folds to float at load: exact, float speed) or "qdq" (DequantizeLinear
    on native int8/int16/int4/fp8 types, the format other runtimes read;
    formats without a native type stay "fold"). ``matmulnbits``: MatMul
    weights in 2/4/8-bit blocks along K become MatMulNBits. ``int2_qdq``:
    with "qdq", store int2 natively (opset 25, ONNX Runtime 1.24 or later).
    ``int32_bias``: quantize Conv/Gemm biases of integer-kernel layers to
    int32 (QGemm needs it). ``opset``: force the exported opset.
    """

    weights: str = FOLD
    matmulnbits: bool = False
    int2_qdq: bool = False
    int32_bias: bool = True
    opset: int | None = None

    def __post_init__(self) -> None:
        if self.weights not in (FOLD, QDQ):
            raise ExportError(f"weights must be {FOLD!r} or {QDQ!r}, not {self.weights!r}")


@dataclass(frozen=True)
class LayerExport:
    name: str
    op_type: str
    weight_format: str | None
    activation_format: str | None
    dynamic: bool
    weights: tuple[WeightEncoding, ...]
    quantizers: tuple[QuantizerRecord, ...]
    integer_kernel: bool  # written as a QDQ group ONNX Runtime can fuse into an integer kernel
    bias: BiasRecord | None
    bytes_planned: int  # the plan's accounting (storage_bytes of the bound format)
    bytes_stored: int  # the bytes of the initializers the export wrote for the weights
    notes: tuple[str, ...] = ()
    # net bytes the layer adds to the file: its stored tensors, nodes and names, minus the
    # float weights it replaces (negative when it saves bytes)
    bytes_file: int = 0
    # float bytes of the weights it replaces
    bytes_float: int = 0
    # integer-kernel layers: the step of their int32 accumulator, s_x * max(s_w)
    accumulator_lsb: float | None = None


@dataclass(frozen=True)
class ExportResult:
    path: Path
    source_opset: int
    opset: int
    ir_version: int
    min_ort: str
    converted: bool
    options: ExportOptions
    layers: dict[str, LayerExport]
    file_bytes: int
    source_bytes: int
    notes: tuple[str, ...] = field(default_factory=tuple)
    accounted_bytes: int = 0  # Built.accounted_bytes: the accounting's prediction of file_bytes
    # the deployment target's quantizers on tensors other than layer inputs
    tensor_quantizers: tuple[QuantizerRecord, ...] = ()
    target: str = "none"


def integer_kernel_candidate(layer: Layer, choice: LayerChoice) -> bool:
    """8-bit integer weights (not blocked) with a calibrated 8-bit activation on Conv/MatMul/Gemm
    (not under AWQ, whose multiply after the decode keeps the weight out of the kernel)."""
    return choice.recovery is not Recovery.AWQ and kernel_format(layer, choice.weight, choice.activation, choice.dynamic)


# Ops ONNX Runtime moves a QuantizeLinear back across (QDQ propagation) or folds into the
# kernel before it, so a Conv whose output reaches an 8-bit quantizer through them fuses.
_PASS_TO_Q = frozenset(
    {"Relu", "Clip", "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze"}
)


def integer_kernel_layers(
    info: ModelInfo, plan: Plan, placed: Mapping[str, TensorQuantizer] | None = None
) -> set[str]:
    """Layers written as QDQ groups for ONNX Runtime's integer kernels.

    Conv fuses (QLinearConv) only when its result is requantized: its output must
    reach a tensor the plan quantizes to 8 bits through ops that keep the grid
    (``_PASS_TO_Q``). Otherwise the Conv would run in float on weights dequantized at
    every run, so its weights are folded instead (same values, float speed).
    MatMul (MatMulIntegerToFloat) and Gemm (QGemm) also fuse with a float output.
    """
    q8 = {
        act
        for name, choice in plan.choices.items()
        if choice.activation is not None
        and not choice.dynamic
        and activations.uses_qdq(choice.activation, False)
        and choice.activation.bits == 8
        for act in info.layer(name).activations
    } | {t for t, q in (placed or {}).items() if q.format.bits == 8}
    consumers: dict[str, list] = {}
    for node in info.nodes:
        if not node.graph_path:
            for t in node.inputs:
                consumers.setdefault(t, []).append(node)
    out: set[str] = set()
    for name, choice in plan.choices.items():
        layer = info.layer(name)
        if not integer_kernel_candidate(layer, choice):
            continue
        if layer.op_type != "Conv":
            out.add(name)
            continue
        t = layer.outputs[0]
        for _ in range(len(info.nodes)):
            if t in q8:
                out.add(name)
                break
            users = consumers.get(t, [])
            if len(users) != 1 or users[0].op_type not in _PASS_TO_Q:
                break
            t = users[0].outputs[0]
    return out


def check_target(engine: Engine, target: Path) -> None:
    """Refuse to write over the model being exported, a non-ONNX file, or to a name not .onnx."""
    source = engine.info.path
    if source is not None and same_file(target, source):
        raise ExportError(f"refusing to overwrite the source model {source}; choose another file")
    if target.suffix.lower() != ".onnx":
        raise ExportError(f"{target}: the export must be an .onnx file")
    try:
        check_output(target, "onnx", [engine.info.path], what="export")
    except BitlensError as exc:
        raise ExportError(str(exc)) from None


@dataclass(frozen=True)
class Built:
    """An export built in memory, not yet written (see :func:`build`)."""

    model: onnx.ModelProto
    source_opset: int
    opset: int
    min_ort: str
    converted: bool
    layers: dict[str, LayerExport]
    base_bytes: int  # the model the layers were written into (after any opset conversion)
    notes: tuple[str, ...]
    base_header: int = 0  # its metadata and opset imports, which the export rewrites
    tensor_bytes: int = 0  # the deployment target's tensor quantizers (nodes, scales, zeros)
    tensor_quantizers: tuple[QuantizerRecord, ...] = ()  # those no layer reports as its own
    target: str = "none"

    @property
    def accounted_bytes(self) -> int:
        """The file size the accounting predicts: the base model, each layer's net bytes
        (codes, scales, zero points, codebooks, nodes, minus the float weights removed) and
        the export record; measured apart from serializing the whole model."""
        # the export record and any opset import the layers added (MatMulNBits' domain)
        header = sum(field_bytes(p.ByteSize()) for p in self.model.metadata_props)
        header += sum(field_bytes(o.ByteSize()) for o in self.model.opset_import)
        return self.base_bytes - self.base_header + header + self.tensor_bytes + sum(
            r.bytes_file for r in self.layers.values()
        )


@dataclass(frozen=True)
class Prepared:
    """What :func:`preflight` settled: the opset and the (converted) model to write into."""

    source_opset: int
    opset: int
    converted: onnx.ModelProto | None  # None: the source model at its own opset
    kernels: frozenset[str]
    notes: tuple[str, ...]


def preflight(
    engine: Engine, plan: Plan, options: ExportOptions | None = None, path: str | Path | None = None
) -> Prepared:
    """Everything about an export that can fail before calibration, checked now: the target
    file, formats that disagree on a shared weight, activation types, and the opset (the model
    is converted and verified here, trying the candidates in turn)."""
    options = options or ExportOptions()
    if plan.info is not engine.info:
        raise ExportError("the plan was made for a different model")
    if path is not None:
        check_target(engine, Path(path))
    bound: dict[str, str] = {}
    for name, choice in plan.choices.items():
        layer = engine.info.layer(name)
        for w in layer.weights if choice.weight is not None else ():
            fmt = bind(choice.weight, w).name
            if bound.setdefault(w.name, fmt) != fmt:
                raise ExportError(
                    f"weight {w.name!r} is shared by several layers with different formats "
                    f"({bound[w.name]} and {fmt}); give them the same format"
                )
        for act in layer.activations if choice.activation is not None else ():
            dtype = _dtype_of(engine, act)
            if dtype not in (None, "float32"):
                raise ExportError(
                    f"layer {layer.name!r}: activation {act!r} is {dtype}; activation "
                    "quantizers are exported for float32 tensors only"
                )
    src = engine.model.proto
    kernels = integer_kernel_layers(engine.info, plan, engine.placement(plan))
    needed = _needed_opset(engine, plan, options, kernels)
    feeds = [engine.data.samples[i] for i in engine.data.evaluation[:2]]
    target, converted, notes = opsets.prepare(src, needed, options.opset, feeds)
    return Prepared(opsets.default_opset(src), target, converted, frozenset(kernels), notes)


def build(
    engine: Engine,
    plan: Plan,
    options: ExportOptions | None = None,
    prepared: Prepared | None = None,
) -> Generator[Progress, None, Built]:
    """The export of ``plan`` in memory: what :func:`export` writes, for accounting."""
    options = options or ExportOptions()
    if prepared is None:
        prepared = preflight(engine, plan, options)
    src = engine.model.proto
    source_opset, target, kernels = prepared.source_opset, prepared.opset, prepared.kernels
    converted = prepared.converted is not None
    model = onnx.ModelProto()
    model.CopyFrom(prepared.converted if prepared.converted is not None else src)
    taken = used_names(model)
    base_bytes = model.ByteSize()
    base_header = sum(field_bytes(p.ByteSize()) for p in model.metadata_props) + sum(
        field_bytes(o.ByteSize()) for o in model.opset_import
    )
    yield Progress(0, len(plan.choices) + 1, f"exporting at opset {target}")

    state = ExportState(model, taken)
    records: dict[str, LayerExport] = {}
    notes: list[str] = list(prepared.notes)
    notes.extend(deployment_warnings(plan))
    notes.extend(check_plan(plan))
    placed = engine.placement(plan)
    for i, (name, choice) in enumerate(plan.choices.items()):
        layer = engine.info.layer(name)
        size_before = model.ByteSize() + state.pending_bytes()
        rec = _export_layer(engine, state, layer, choice, options, name in kernels, placed)
        delta = model.ByteSize() + state.pending_bytes() - size_before
        records[name] = replace(rec, bytes_file=delta)
        yield Progress(i + 1, len(plan.choices) + 1, f"exported {name}")

    state.finish()
    size_before = model.ByteSize()
    tensor_records = _export_tensor_quantizers(engine, state, placed)
    tensor_bytes = model.ByteSize() - size_before
    if placed:
        notes.append(
            f"target {plan.target}: {len(placed)} tensors besides layer inputs quantized "
            "(Conv outputs, Add/Mul/Sigmoid/Concat/pool inputs and outputs), as simulated"
        )
    # A layer reading a tensor the target quantizes reports that quantizer as its own.
    shared = {q.activation for r in records.values() for q in r.quantizers if q.kind == "shared"}
    records = {
        name: replace(r, quantizers=tuple(
            replace(tensor_records[q.activation], layer=name) if q.kind == "shared" else q
            for q in r.quantizers
        ))
        for name, r in records.items()
    }  # fmt: skip
    min_ort = opsets.min_ort_for_opset(target)
    for rec in records.values():
        for w in rec.weights:
            if w.scheme == "matmulnbits":
                need = matmulnbits.BITS_MIN_ORT[parse_format(w.format).bits]
                if opsets.version_key(need) > opsets.version_key(min_ort):
                    min_ort = need
    if any(w.scheme == "matmulnbits" for r in records.values() for w in r.weights):
        model.opset_import.append(helper.make_opsetid(matmulnbits.DOMAIN, 1))
    model.ir_version = max(src.ir_version, opsets.ir_version_for(model))
    _set_metadata(model, plan, records, min_ort)
    if model.ByteSize() > MAX_PROTO_BYTES:
        raise ExportError(
            "the export is larger than 2 GB; ONNX files that size need external data, "
            "which the exporter does not write yet"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:  # a bug here, but name it for the user
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"the exported model does not pass the ONNX checker: {first}") from exc
    return Built(
        model, source_opset, target, min_ort, converted, records, base_bytes, tuple(notes),
        base_header, tensor_bytes,
        tuple(q for t, q in tensor_records.items() if t not in shared), plan.target,
    )  # fmt: skip


def export(
    engine: Engine,
    plan: Plan,
    path: str | Path,
    options: ExportOptions | None = None,
    prepared: Prepared | None = None,
) -> Generator[Progress, None, ExportResult]:
    """Write ``plan`` for ``engine``'s model to ``path``; yields progress, returns the record.

    The activation ranges are the engine's calibrated ones, so the file
    computes what the engine evaluated. ``prepared``: from :func:`preflight`, run before
    calibration (run here otherwise).
    """
    options = options or ExportOptions()
    target_path = Path(path)
    check_target(engine, target_path)
    built = yield from build(engine, plan, options, prepared)
    data = built.model.SerializeToString()
    atomic_write_bytes(target_path, data)
    total = len(plan.choices) + 1
    yield Progress(total, total, f"wrote {target_path}")
    return ExportResult(
        path=target_path,
        source_opset=built.source_opset,
        opset=built.opset,
        ir_version=built.model.ir_version,
        min_ort=built.min_ort,
        converted=built.converted,
        options=options,
        layers=built.layers,
        tensor_quantizers=built.tensor_quantizers,
        target=built.target,
        file_bytes=len(data),
        source_bytes=engine.model.proto.ByteSize(),
        notes=built.notes,
        accounted_bytes=built.accounted_bytes,
    )


# -- opset needs ------------------------------------------------------------------------------
def _needed_opset(engine: Engine, plan: Plan, options: ExportOptions, kernels: set[str]) -> int:
    need = 13  # folded weights use opset-13 signatures (Unsqueeze axes as an input, bf16 Cast)
    for name, choice in plan.choices.items():
        kernel = name in kernels
        w = choice.weight
        if w is not None:
            qdq = kernel or options.weights == QDQ
            if qdq and native_qdq_dtype(w, options.int2_qdq) is not None:
                if w.is_float:
                    need = max(need, 21 if w.granularity is Granularity.BLOCK else 19)
                else:
                    need = max(need, 25 if w.bits == 2 else 21 if w.bits in (4, 16) else 13)
                    if w.granularity is Granularity.BLOCK:
                        need = max(need, 21)
            elif w.is_float and w.has_scale:
                need = max(need, 19)
        a = choice.activation
        if a is not None:
            if activations.uses_qdq(a, choice.dynamic):
                need = max(need, 21 if a.bits == 16 else 13)
            else:
                kind = quantizers.kind_of(a, choice.dynamic)
                assert kind is not None
                need = max(need, quantizers.KIND_MIN_OPSET[kind])
    return need


def _export_layer(
    engine: Engine,
    state: ExportState,
    layer: Layer,
    choice: LayerChoice,
    options: ExportOptions,
    kernel: bool,
    placed: Mapping[str, TensorQuantizer],
) -> LayerExport:
    notes: list[str] = []
    quantizer_records: list[QuantizerRecord] = []
    act_scale: float | None = None
    if choice.activation is not None:
        _, node = node_producing(state.model.graph, layer.outputs[0])
        for act in layer.activations:
            dtype = _dtype_of(engine, act)
            if dtype not in (None, "float32"):
                raise ExportError(
                    f"layer {layer.name!r}: activation {act!r} is {dtype}; activation "
                    "quantizers are exported for float32 tensors only"
                )
            b = GraphBuilder(f"{layer.name}_a", state.taken)
            fmt = engine.bind_activation(layer, act, choice.activation)
            shared = placed.get(act)
            if shared is not None and shared.format == fmt and not choice.dynamic:
                # The target quantizes this tensor where it is produced, with the same format
                # and range: the layer reads that quantizer (a second one would be an identity).
                lo, hi = engine.target_range(shared)
                scale, zp = uniform.params_from_range(np.asarray(lo), np.asarray(hi), fmt)
                rec = QuantizerRecord(
                    layer.name, act, act, fmt.name, "shared", None, float(scale), float(zp),
                    "the deployment target's quantizer of this tensor", 10,
                )  # fmt: skip
                quantizer_records.append(rec)
                act_scale = rec.scale
                continue
            lo_hi = (0.0, 0.0) if choice.dynamic else engine.layer_range(act, fmt, placed)
            rec = activations.encode_activation(
                b, layer.name, act, fmt, dynamic=choice.dynamic, value_range=lo_hi
            )
            if rec.kind == "qdq" and layer.op_type in REQUANTIZED_BY_ORT and not kernel:
                rec = _guard(b, rec, fmt)
            for i, name in enumerate(node.input):
                if name == act:
                    node.input[i] = rec.output
            state.model.graph.initializer.extend(b.initializers)
            state.before.setdefault(layer.outputs[0], []).extend(b.nodes)
            quantizer_records.append(rec)
            act_scale = rec.scale
    encodings: list[WeightEncoding] = []
    weight_scale: np.ndarray | None = None
    rec = recovery_export.recovered(engine, layer, choice)
    if rec is not None and (note := recovery_export.write_bias(state, layer, rec)):
        notes.append(note)
    if choice.weight is not None:
        for w in layer.weights:
            fmt = bind(choice.weight, w)
            if w.name in state.weights:
                prev_fmt, enc = state.weights[w.name]
                if prev_fmt != fmt.name:
                    raise ExportError(
                        f"weight {w.name!r} is shared by several layers with different formats "
                        f"({prev_fmt} and {fmt.name}); give them the same format"
                    )
                if enc is not None:
                    encodings.append(enc)
                notes.append(f"weight {w.name} is shared; stored once")
                continue
            enc = _encode_one(engine, state, layer, w, fmt, kernel, options, notes, rec)
            state.weights[w.name] = (fmt.name, enc)
            if enc is not None:
                encodings.append(enc)
            if kernel:
                q = rec.qtensor if rec is not None else quantize(engine.model.weight(w.name), fmt)
                weight_scale = np.asarray(q.scale, np.float32)
    bias = None
    if kernel and options.int32_bias and act_scale is not None and weight_scale is not None:
        bias = int32_bias(engine, state, layer, np.float32(act_scale), weight_scale, notes)
    planned = weight_bytes_after(layer, choice.weight) if choice.weight is not None else 0
    return LayerExport(
        name=layer.name,
        op_type=layer.op_type,
        weight_format=None if choice.weight is None else choice.weight.name,
        activation_format=None if choice.activation is None else choice.activation.name,
        dynamic=choice.dynamic,
        weights=tuple(encodings),
        quantizers=tuple(quantizer_records),
        integer_kernel=kernel,
        bias=bias,
        bytes_planned=planned,
        bytes_float=sum(w.nbytes for w in layer.weights if w.name in {e.weight for e in encodings}),
        bytes_stored=sum(e.nbytes for e in encodings),
        notes=tuple(notes),
        accumulator_lsb=(
            float(np.float32(act_scale) * np.max(weight_scale))
            if kernel and act_scale is not None and weight_scale is not None
            else None
        ),
    )


def _export_tensor_quantizers(
    engine: Engine, state: ExportState, placed: Mapping[str, TensorQuantizer]
) -> dict[str, QuantizerRecord]:
    """QuantizeLinear/DequantizeLinear where each of the target's tensors is produced; every
    main-graph consumer then reads the dequantized value (as the engine simulates)."""
    g = state.model.graph
    after: dict[str, list[onnx.NodeProto]] = {}
    first: list[onnx.NodeProto] = []
    out: dict[str, QuantizerRecord] = {}
    produced = {o for n in g.node for o in n.output}
    for t, q in placed.items():
        b = GraphBuilder(f"{t}_t", state.taken)
        rec = activations.encode_activation(
            b, "", t, q.format, dynamic=False, value_range=engine.target_range(q)
        )
        out[t] = replace(rec, layer=f"({q.reason})")
        g.initializer.extend(b.initializers)
        (after.setdefault(t, []) if t in produced else first).extend(b.nodes)
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in out:
                node.input[i] = out[name].output
    ordered = list(first)
    for node in g.node:
        ordered.append(node)
        for o in node.output:
            ordered.extend(after.get(o, []))
    del g.node[:]
    g.node.extend(ordered)
    return out


def _guard(b: GraphBuilder, rec: QuantizerRecord, fmt: Format) -> QuantizerRecord:
    """Put an exact identity between a DequantizeLinear and a Conv/Gemm that is not an
    integer-kernel layer.

    ONNX Runtime (WeightBiasQuantization, 1.20+) would otherwise re-quantize such a layer's
    float or folded weight to int8 per tensor whenever its output reaches a QuantizeLinear,
    silently replacing the planned weights. A Clip to the quantizer's own range returns every
    dequantized value unchanged, and the layer no longer reads a DequantizeLinear.
    """
    assert rec.scale is not None and rec.zero_point is not None
    scale = np.float32(rec.scale)
    lo = np.float32(fmt.qmin - rec.zero_point) * scale
    hi = np.float32(fmt.qmax - rec.zero_point) * scale
    out = b.node(
        "Clip",
        [rec.output, b.const("guard_lo", np.asarray(lo, np.float32)),
         b.const("guard_hi", np.asarray(hi, np.float32))],
        b.name(f"{rec.activation}_guarded"),
    )  # fmt: skip
    text = (
        rec.description
        + "; a Clip to the same range keeps ONNX Runtime from re-quantizing the weights"
    )
    return replace(rec, output=out, description=text)


def _dtype_of(engine: Engine, tensor: str) -> str | None:
    for t in engine.info.inputs:
        if t.name == tensor:
            return t.dtype
    t = engine.info.value_info.get(tensor)
    return None if t is None else t.dtype


def _encode_one(
    engine: Engine,
    state: ExportState,
    layer: Layer,
    w: WeightInfo,
    fmt: Format,
    kernel: bool,
    options: ExportOptions,
    notes: list[str],
    rec: Recovered | None = None,
) -> WeightEncoding | None:
    value = engine.model.weight(w.name)
    g = state.graph(w.graph_path)
    b = GraphBuilder(w.name, state.taken, state.shared.setdefault(w.graph_path, {}))
    if options.matmulnbits and rec is not None:
        notes.append(f"{w.name}: recovered codes are exported as folded codes, not MatMulNBits")
    elif options.matmulnbits and not kernel and layer.op_type == "MatMul" and not w.graph_path:
        lay = matmulnbits.layout_for(fmt, w.shape)
        idx, node = node_producing(g, layer.outputs[0])
        if (
            lay is not None
            and list(node.input[1:2]) == [w.name]
            and w.storage is Storage.INITIALIZER
            and state.consumers(w.name) == 1
        ):
            new, enc = matmulnbits.encode(b, node, w.name, value, fmt, lay)
            remove_weight(g, w)
            g.node[idx].CopyFrom(new)
            g.initializer.extend(b.initializers)
            return enc
        if lay is None:
            notes.append(
                f"{w.name}: {fmt.name} has no MatMulNBits layout (2/4/8-bit blocks of a power "
                "of two >= 16 along K, dividing K); exported as folded codes"
            )
    mode = QDQ if kernel or options.weights == QDQ else FOLD
    if mode == QDQ and native_qdq_dtype(fmt, options.int2_qdq) is None:
        notes.append(f"{w.name}: {fmt.name} has no native ONNX type; stored as folded codes")
    # QGemm and MatMulIntegerToFloat need the weight's zero point written out; QLinearConv
    # fuses without it (symmetric int8: all zeros), so a conv stores no per-channel zeros.
    zero_point = kernel and layer.op_type != "Conv"
    enc = encode_weight(
        b, w, value, fmt, mode=mode, allow_int2=options.int2_qdq, zero_point=zero_point,
        qtensor=None if rec is None else rec.qtensor,
    )
    if enc is not None and rec is not None and rec.input_scale is not None:
        recovery_export.scale_decoded(b, w.name, rec.input_scale)
    if enc is None:
        notes.append(f"{w.name}: {fmt.name} keeps the weight's own {w.dtype} values")
        return None
    remove_weight(g, w)
    state.add_to_graph(w.graph_path, b)
    return enc


def _set_metadata(
    model: onnx.ModelProto, plan: Plan, records: dict[str, LayerExport], min_ort: str
) -> None:
    # Provenance for people and tools reading the file; the fidelity check does not rely on it.
    info = {
        "plan": plan.to_dict(),
        "min_onnxruntime": min_ort,
        "layers": {
            name: {
                "weights": {e.weight: e.scheme for e in r.weights},
                "activations": {q.activation: q.kind for q in r.quantizers},
                "integer_kernel": r.integer_kernel,
                "int32_bias": None if r.bias is None else r.bias.bias,
            }
            for name, r in records.items()
        },
    }
    props = {p.key: p.value for p in model.metadata_props}
    props[METADATA_KEY] = json.dumps(info)
    helper.set_model_props(model, props)
