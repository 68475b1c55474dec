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
import logging
from collections.abc import Collection, Generator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import onnx
from onnx import helper

from bitlens.core.engine import bind, quantizers
from bitlens.core.errors import BitlensError, ExportError
from bitlens.core.export import (
    activations,
    conversions,
    deadconsts,
    focus,
    matmulnbits,
    opsets,
    piecewise,
    spacetodepth,
)
from bitlens.core.export.editing import ExportState, field_bytes
from bitlens.core.export.graph import used_names
from bitlens.core.export.guards import guard_float_readers
from bitlens.core.export.hardswish_float import restore_float_hardswish
from bitlens.core.export.kernels import integer_kernel_candidate, integer_kernel_layers
from bitlens.core.export.layers import (
    GUARD_TEXT,
    dtype_of,
    export_layer,
    export_tensor_quantizers,
)
from bitlens.core.export.records import (
    Built,
    ExportOptions,
    ExportResult,
    LayerExport,
    Prepared,
)
from bitlens.core.export.scalars import write_scalar_inputs
from bitlens.core.export.shape_reads import shapes_read_codes
from bitlens.core.export.sizing import LayerSizer, file_bytes, graph_bytes, header_bytes
from bitlens.core.export.weights import QDQ, native_qdq_dtype
from bitlens.core.fileio import atomic_write_bytes, check_output, same_file
from bitlens.core.formats import family_of, parse_format
from bitlens.core.plan import Plan
from bitlens.core.plan_checks import check_plan, deployment_warnings
from bitlens.core.quantized import QuantizedModel, quantize_model
from bitlens.core.results import Progress
from bitlens.core.shared_weights import stored_readers

# Re-exported: callers import the export's records and kernel choice from here.
__all__ = [
    "METADATA_KEY", "Built", "ExportOptions", "ExportResult", "LayerExport", "Prepared",
    "build", "check_target", "export", "integer_kernel_candidate", "integer_kernel_layers",
    "preflight",
]  # fmt: skip

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

_log = logging.getLogger(__name__)
METADATA_KEY = "bitlens.export"
MAX_PROTO_BYTES = 2**31 - 1


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


def preflight(
    engine: Engine, plan: Plan, options: ExportOptions | None = None, path: str | Path | None = None
) -> Prepared:
    """Everything about an export that can fail before calibration, checked now: the target
    file, formats that disagree on a shared weight, activation types, and the opset (the model
    is converted and verified here, trying the candidates in turn)."""
    options = options or ExportOptions()
    check_plan_export(engine, plan, path)
    kernels = integer_kernel_layers(engine.info, plan, engine.placement(plan))
    needed = needed_opset(engine, plan, options, kernels)
    return convert_for(engine, plan, options, kernels, needed)


def check_plan_export(engine: Engine, plan: Plan, path: str | Path | None = None) -> None:
    """What an export of ``plan`` checks before anything is built: the plan's model, the
    target file, formats that disagree on a shared weight, activation types."""
    if plan.info is not engine.info:
        raise ExportError("the plan was made for a different model")
    if path is not None:
        check_target(engine, Path(path))
    bound: dict[tuple[str, str], tuple[str, str]] = {}
    for layer in engine.info.layers:  # float readers too: the file holds one copy
        choice = plan[layer.name]
        for w in layer.weights:
            fmt = "float" if choice.weight is None else bind(choice.weight, w).name
            got = (fmt, "" if choice.recovery is None else f" with {choice.recovery.value}")
            first = bound.setdefault((w.graph_path, w.name), got)
            if first != got:
                raise ExportError(
                    f"weight {w.name!r} is shared by several layers with different formats "
                    f"({''.join(first)} and {''.join(got)} on {layer.name}); give them the "
                    "same format"
                )
    for name, choice in plan.choices.items():
        layer = engine.info.layer(name)
        for act in layer.activations if choice.activation is not None else ():
            dtype = dtype_of(engine, act)
            if dtype not in (None, "float32"):
                raise ExportError(
                    f"layer {layer.name!r}: activation {act!r} is {dtype}; activation "
                    "quantizers are exported for float32 tensors only"
                )


def convert_for(
    engine: Engine, plan: Plan, options: ExportOptions, kernels: Collection[str], needed: int
) -> Prepared:
    """The model at the opset ``plan`` needs (``needed``; converted and verified when it is
    not the model's own), the same for every plan needing that opset but for ``kernels``."""
    # once per engine and opset (conversions.py): the search's conversion is the export's
    try:
        base = conversions.converted(engine, needed, options.opset)
    except ExportError:
        # ONNX INT4 needs opset 21: where the model cannot get there, the integer-kernel
        # layers' 4-bit codes are stored packed and unpacked by opset-13 operators that ONNX
        # Runtime folds (the same codes, bytes and kernels)
        lower = needed_opset(engine, plan, options, kernels, int4_codes=False)
        if lower >= needed:
            raise
        base = conversions.converted(engine, lower, options.opset)
        base = replace(base, notes=(*base.notes, (
            "4-bit weights of integer-kernel layers stored as packed codes unpacked at load: "
            f"ONNX INT4 needs opset 21, the export is opset {base.opset}"
        )))  # fmt: skip
    return replace(base, kernels=frozenset(kernels))


def build(
    engine: Engine,
    plan: Plan,
    options: ExportOptions | None = None,
    prepared: Prepared | None = None,
    quantized: QuantizedModel | None = None,
    *,
    exact_sizes: bool = False,
) -> Generator[Progress, None, Built]:
    """The export of ``plan`` in memory: what :func:`export` writes, for accounting.

    ``quantized``: the plan's weights and ranges (:func:`~bitlens.core.quantized.quantize_model`,
    computed here otherwise); the export writes exactly those. ``exact_sizes``: measure each
    layer's bytes by serializing the whole model before and after it (slow; the
    :mod:`~bitlens.core.export.sizing` numbers are checked against one such measurement).
    """
    options = options or ExportOptions()
    if prepared is None:
        prepared = preflight(engine, plan, options)
    qm = quantized if quantized is not None else quantize_model(engine, plan)
    if qm.plan != plan:
        raise ExportError("the quantized model was computed for another plan")
    src = engine.model.graph_proto  # large external tensors still in their files
    source_opset, target, kernels = prepared.source_opset, prepared.opset, prepared.kernels
    converted = prepared.converted_file is not None
    model = prepared.converted  # a new proto, parsed from its file
    if model is None:
        model = onnx.ModelProto()
        model.CopyFrom(src)
    taken = used_names(model)
    base_graph, base_bytes, source_bytes = _start_sizes(prepared, model, src)
    base_header = sum(field_bytes(p.ByteSize()) for p in model.metadata_props) + sum(
        field_bytes(o.ByteSize()) for o in model.opset_import
    )
    yield Progress(0, len(plan.choices) + 1, f"exporting at opset {target}")

    state = ExportState(model, taken)
    state.opset = target
    # which reader writes each weight (the others reuse its stored form): the same rule as
    # the byte totals and the search's file sizes
    state.stored = stored_readers(
        engine.info.layers, {n: plan[n].weight for n in engine.info.layer_names}
    )
    records: dict[str, LayerExport] = {}
    notes: list[str] = list(prepared.notes)
    notes.extend(deployment_warnings(plan))
    notes.extend(check_plan(plan))
    placed = qm.placed
    sizer = LayerSizer(model, base_bytes, base_graph)
    # in model order: a weight's stored reader comes before the readers that reuse it
    for i, name in enumerate(n for n in engine.info.layer_names if n in plan.choices):
        layer, choice = engine.info.layer(name), plan[name]
        pending = state.pending_bytes()
        if exact_sizes:
            size_before = file_bytes(model)
        else:
            mark = sizer.mark(layer)
        rec = export_layer(engine, state, layer, choice, options, name in kernels, qm)
        grown = file_bytes(model) - size_before if exact_sizes else sizer.delta(mark)
        records[name] = replace(rec, bytes_file=grown + state.pending_bytes() - pending)
        yield Progress(i + 1, len(plan.choices) + 1, f"exported {name}")
    graph = None  # the main graph's graph_bytes as it now stands, where measured
    if exact_sizes:
        state.finish()
    else:
        off, graph = _finish_checked(sizer, state, model)
        if off:
            # an edit outside what the sizer measures: never report a wrong number
            _log.warning("per-layer export sizes off by %d B; measuring again the slow way",
                         off)  # fmt: skip
            return (yield from build(engine, plan, options, prepared, qm, exact_sizes=True))
    records, graph = spacetodepth.rewrite(model, engine, qm, records, taken, graph)
    # the graph as the rewrite left it, where it measured it: not serialized twice
    size_before = file_bytes(model, graph)
    tensor_records = export_tensor_quantizers(state, qm)
    kernel_outputs = {engine.info.layer(n).outputs[0] for n in kernels}
    if guarded := guard_float_readers(model.graph, kernel_outputs, taken):
        notes.append(
            f"{len(guarded)} float Conv/Gemm layer(s) read a quantized tensor: a Clip keeps "
            "ONNX Runtime from quantizing their weights to int8"
        )
        records = {n: _read_through_guard(r, engine, guarded) for n, r in records.items()}
    notes.extend(write_scalar_inputs(state, qm, engine.scalar))
    records, tensor_records = focus.rewrite(model, engine, qm, records, tensor_records, taken)
    notes.extend(restore_float_hardswish(model.graph, target))
    shapes_read_codes(model.graph)
    deadconsts.drop_unread(model.graph)
    graph_now = graph_bytes(model)  # the graph's last change: only the header changes below
    tensor_bytes = file_bytes(model, graph_now) - size_before
    if placed:
        notes.append(
            f"target {plan.target}: {len(placed)} tensors besides layer inputs quantized "
            "(Conv outputs, Add/Mul/Sigmoid/Concat/pool inputs and outputs), as simulated"
        )
    # A layer reading a tensor the target quantizes reports that quantizer as its own.
    shared = {q.activation for r in records.values() for q in r.quantizers if q.kind == "shared"}
    records = {
        name: replace(r, quantizers=tuple(
            _shared_record(tensor_records[q.activation], name, q) if q.kind == "shared" else q
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
    if any(r.space_to_depth or r.focus for r in records.values()) and opsets.version_key(
        spacetodepth.MIN_ORT
    ) > opsets.version_key(min_ort):
        min_ort = spacetodepth.MIN_ORT  # SpaceToDepth on uint8 codes
    if any(w.scheme == "matmulnbits" for r in records.values() for w in r.weights):
        model.opset_import.append(helper.make_opsetid(matmulnbits.DOMAIN, 1))
    elif any(w.scheme == "dqlstm" for r in records.values() for w in r.weights):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))  # DynamicQuantizeLSTM
    model.ir_version = max(src.ir_version, opsets.ir_version_for(model))
    _set_metadata(model, plan, records, min_ort)
    if file_bytes(model, graph_now) > MAX_PROTO_BYTES:
        raise ExportError(
            "the export is larger than 2 GB; ONNX files that size need external data, "
            "which the exporter does not write yet"
        )
    # the weights the plan leaves float, still in the source's files: into the export (only
    # those, and only now: the source's other weights were never read in)
    engine.model.materialize(model)
    # Serialized once, here: the checker serializes a proto it is given anyway, and the
    # file's bytes and size are these. Each whole-model pass holds the interpreter lock (upb
    # encodes in C; 5-25 ms on PP-OCRv4 rec), which stalls the window while the search builds
    # exports (docs/benchmarks.md "uisearch (session 15)"): the same bytes, a node per call
    data = piecewise.serialized(model)
    try:
        onnx.checker.check_model(data)
    except onnx.checker.ValidationError as exc:  # a bug here, but name it for the user
        first = str(exc).strip().splitlines()[0]
        raise ExportError(f"the exported model does not pass the ONNX checker: {first}") from exc
    return Built(
        model, source_opset, target, min_ort, converted, records, base_bytes, tuple(notes),
        base_header, tensor_bytes,
        tuple(q for t, q in tensor_records.items() if t not in shared), plan.target, qm,
        source_bytes, data,
    )  # fmt: skip


def export(
    engine: Engine,
    plan: Plan,
    path: str | Path,
    options: ExportOptions | None = None,
    prepared: Prepared | None = None,
    quantized: QuantizedModel | None = None,
) -> Generator[Progress, None, ExportResult]:
    """Write ``plan`` for ``engine``'s model to ``path``; yields progress, returns the record.

    The activation ranges are the engine's calibrated ones, so the file
    computes what the engine evaluated. ``prepared``: from :func:`preflight`, run before
    calibration (run here otherwise). ``quantized``: see :func:`build`; the result carries
    it, so the fidelity check compares the file with the very values that were exported.
    """
    options = options or ExportOptions()
    target_path = Path(path)
    check_target(engine, target_path)
    built = yield from build(engine, plan, options, prepared, quantized)
    data = built.serialized
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
        source_bytes=built.source_bytes,
        notes=built.notes,
        accounted_bytes=built.accounted_bytes,
        quantized=built.quantized,
    )


# -- opset needs ------------------------------------------------------------------------------
def needed_opset(
    engine: Engine, plan: Plan, options: ExportOptions, kernels: Collection[str],
    *, int4_codes: bool = True,
) -> int:
    """The lowest opset the plan's export needs. ``int4_codes=False``: what it needs with the
    4-bit codes of integer-kernel layers stored packed (ONNX INT4 needs opset 21)."""
    need = 13  # folded weights use opset-13 signatures (Unsqueeze axes as an input, bf16 Cast)
    for name, choice in plan.choices.items():
        kernel = name in kernels
        w = choice.weight
        if w is not None:
            qdq = kernel or options.weights == QDQ
            native = qdq and native_qdq_dtype(w, options.int2_qdq) is not None
            if kernel and w.bits < 8 and not int4_codes:
                w = replace(w, bits=8)  # a DequantizeLinear of int8/uint8 codes
            need = max(need, family_of(w).export_min_opset(w, native))
        a = choice.activation
        if a is not None:
            if activations.uses_qdq(a, choice.dynamic):
                need = max(need, 21 if a.bits == 16 else 13)
            else:
                kind = quantizers.kind_of(a, choice.dynamic)
                assert kind is not None
                need = max(need, quantizers.KIND_MIN_OPSET[kind])
    return need


def _finish_checked(
    sizer: LayerSizer, state: ExportState, model: onnx.ModelProto
) -> tuple[int, int | None]:
    """Insert the pending nodes (``state.finish``) and check the layers' sizes: how far the
    model is from the sizer's total with the pending nodes' bytes the layers counted (0:
    exact), and the main graph's :func:`graph_bytes` once they are in, where that one
    measurement checked them (None otherwise).

    Where every pending node goes to the main graph, the nodes add their bytes to it exactly,
    so the graph is measured once, after them, and the rewrites after it start from that
    measurement: a whole-graph pass fewer per build, which holds the interpreter lock (upb
    sizes by encoding; docs/benchmarks.md "uisearch (session 15)"). The model-local functions
    the layers call (the model's header) are checked as before: not at all, they are not in
    the model yet. Else the sizer is checked before the insertion, as before (a subgraph's
    length prefix may grow with its nodes)."""
    if set(state.prepend) <= {""}:
        functions = sum(field_bytes(f.ByteSize()) for f in state.functions.values())
        nodes = state.pending_bytes() - functions
        header = header_bytes(model)  # the functions are not in it yet
        state.finish()
        graph = graph_bytes(model)
        return (header - sizer.header) or (graph - sizer.graph_bytes - nodes), graph
    off = file_bytes(model) - sizer.total()
    if not off:
        state.finish()
    return off, None


def _start_sizes(
    prepared: Prepared, model: onnx.ModelProto, src: onnx.ModelProto
) -> tuple[int, int, int]:
    """(graph bytes, file bytes) of ``model``, the unchanged start of every build from
    ``prepared`` (a copy of the source, or the converted model parsed from its file), and the
    source's file bytes: measured once per preparation."""
    sizes = prepared.start_sizes
    if not sizes:
        # external tensors counted as the file will hold them
        graph = graph_bytes(model)
        sizes["graph"], sizes["file"] = graph, file_bytes(model, graph)
        # the model unchanged: the source's size is the same measurement
        converted = prepared.converted_file is not None
        sizes["source"] = file_bytes(src) if converted else sizes["file"]
    return sizes["graph"], sizes["file"], sizes["source"]


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


def _shared_record(
    tensor: activations.QuantizerRecord, layer: str, q: activations.QuantizerRecord
) -> activations.QuantizerRecord:
    """The target's quantizer of a tensor as ``layer``'s own; read through the Clip guard
    (bitlens.core.export.layers._guard) when the layer has one."""
    if q.output == q.activation:
        return replace(tensor, layer=layer)
    return replace(tensor, layer=layer, output=q.output,
                   description=tensor.description + GUARD_TEXT)  # fmt: skip


def _read_through_guard(rec: LayerExport, engine: Engine, guarded: dict[str, str]) -> LayerExport:
    """A layer guarded after its record was made (guards.guard_float_readers) reads the
    target's quantizer through the Clip: its shared quantizer's output is the Clip's."""
    clip = guarded.get(engine.info.layer(rec.name).outputs[0])
    if clip is None:
        return rec
    return replace(rec, quantizers=tuple(
        replace(q, output=clip) if q.kind == "shared" and q.output == q.activation else q
        for q in rec.quantizers
    ))  # fmt: skip
