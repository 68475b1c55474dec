"""One planned layer written into the export: its activation quantizers, weights and bias.

:func:`export_layer` edits the model in place (through
:class:`~bitlens.core.export.editing.ExportState`) and returns the layer's
:class:`~bitlens.core.export.records.LayerExport`; the exporter
(:mod:`bitlens.core.export.exporter`) calls it for each layer in turn.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import onnx

from bitlens.core import targets
from bitlens.core.engine import bind, weight_bytes_after
from bitlens.core.errors import ExportError
from bitlens.core.export import activations, deadconsts, dynamic_lstm, matmulnbits, rescale
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.export.bias import int32_bias
from bitlens.core.export.editing import ExportState, set_nodes
from bitlens.core.export.graph import GraphBuilder, rename_output
from bitlens.core.export.guards import fused_output_in
from bitlens.core.export.records import ExportOptions, LayerExport
from bitlens.core.export.weights import (
    CAST,
    FOLD,
    PACKED,
    QDQ,
    WeightEncoding,
    encode_qtensor,
    native_qdq_dtype,
)
from bitlens.core.formats import Format, QTensor, family_of, uniform
from bitlens.core.model.types import Layer, Storage, WeightInfo
from bitlens.core.plan import LayerChoice
from bitlens.core.quantized import QuantizedModel
from bitlens.core.recovery import export as recovery_export

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

GUARD_TEXT = "; a Clip to the same range keeps ONNX Runtime from re-quantizing the weights"


def export_layer(
    engine: Engine,
    state: ExportState,
    layer: Layer,
    choice: LayerChoice,
    options: ExportOptions,
    kernel: bool,
    qm: QuantizedModel,
) -> LayerExport:
    """Write ``layer`` as ``choice`` says, reading its weights and ranges from ``qm``."""
    if dynamic_lstm.applies(layer, choice, qm.plan.target):
        return dynamic_lstm.write(engine, state, layer, choice, qm)
    placed = qm.placed
    notes: list[str] = []
    quantizer_records: list[QuantizerRecord] = []
    act_scale: float | None = None
    smooth = recovery_export.smooth_inputs(state, layer, qm.recovered.get(layer.name))
    if choice.activation is not None:
        _, node = state.node_producing(state.model.graph, layer.outputs[0])
        for act in layer.activations:
            dtype = dtype_of(engine, act)
            if dtype not in (None, "float32"):
                raise ExportError(
                    f"layer {layer.name!r}: activation {act!r} is {dtype}; activation "
                    "quantizers are exported for float32 tensors only"
                )
            b = GraphBuilder(f"{layer.name}_a", state.taken)
            aq = qm.activation(layer.name, act)
            fmt = aq.fmt
            shared = placed.get(act)
            if shared is not None and shared.format == fmt and not choice.dynamic and not smooth:
                # The target quantizes this tensor where it is produced, with the same format
                # and range: the layer reads that quantizer (a second one would be an identity).
                lo, hi = qm.target_ranges[act]
                scale, zp = uniform.params_from_range(np.asarray(lo), np.asarray(hi), fmt)
                rec = QuantizerRecord(
                    layer.name, act, act, fmt.name, "shared", None, float(scale), float(zp),
                    "the deployment target's quantizer of this tensor", 10,
                )  # fmt: skip
                if not kernel and targets.slower_as_integer(layer):
                    # kept float on purpose: the shared quantizer is a DequantizeLinear too, and
                    # a quantizer after it (the next layer's input) would make ORT fuse it
                    # (other layers reading it: guards.guard_float_readers)
                    rec = _guard(b, rec, fmt)
                    node.input[:] = [rec.output if i == act else i for i in node.input]
                    state.model.graph.initializer.extend(b.initializers)
                    state.before.setdefault(layer.outputs[0], []).extend(b.nodes)
                quantizer_records.append(rec)
                act_scale = rec.scale
                continue
            lo_hi = (0.0, 0.0) if aq.value_range is None else aq.value_range
            src = smooth.get(act, act)  # SmoothQuant's scaled input, or the activation
            rec = activations.encode_activation(
                b, layer.name, src, fmt, dynamic=choice.dynamic, value_range=lo_hi
            )
            if rec.kind == "qdq" and not kernel and (
                fused_output_in(node, state.model.graph) is not None
            ):
                rec = _guard(b, rec, fmt)
            for i, name in enumerate(node.input):
                if name == src:
                    node.input[i] = rec.output
            state.model.graph.initializer.extend(b.initializers)
            state.before.setdefault(layer.outputs[0], []).extend(b.nodes)
            quantizer_records.append(rec)
            act_scale = rec.scale
    encodings: list[WeightEncoding] = []
    # the float weights this layer replaces: a shared weight counts for its first reader only
    # (an unrolled LSTMCell's 20 Gemms read one weight; the others reuse its stored form)
    replaced: set[str] = set()
    weight_scale: np.ndarray | None = None
    rec = qm.recovered.get(layer.name)
    if choice.weight is not None:
        for w in layer.weights:
            fmt = bind(choice.weight, w)
            key = (w.graph_path, w.name)
            if state.stored[key][0] != layer.name:  # an earlier reader wrote it
                prev_fmt, enc = state.weights[key]
                if prev_fmt != fmt.name:
                    raise ExportError(
                        f"weight {w.name!r} is shared by several layers with different formats "
                        f"({prev_fmt} and {fmt.name}); give them the same format"
                    )
                if enc is not None:
                    encodings.append(enc)
                notes.append(f"weight {w.name} is shared; stored once")
                if kernel:  # this layer's int32 bias needs the shared weight's scale too
                    weight_scale = np.asarray(qm.weight(w.name).q.scale, np.float32)
                continue
            enc = _encode_one(state, layer, w, qm.weight(w.name).q, kernel, options, notes,
                              None if rec is None else rec.input_scale,
                              tensorrt=qm.plan.target == targets.TENSORRT)  # fmt: skip
            state.weights[key] = (fmt.name, enc)
            if enc is not None:
                encodings.append(enc)
                replaced.add(w.name)
            if kernel:
                weight_scale = np.asarray(qm.weight(w.name).q.scale, np.float32)
    # after the weights: a bias created after a MatMul renames the MatMul's output
    if rec is not None and (note := recovery_export.write_bias(state, layer, rec)):
        notes.append(note)
    bias = None
    tensorrt = qm.plan.target == targets.TENSORRT
    if kernel and options.int32_bias and act_scale is not None and weight_scale is not None:
        if tensorrt:  # TensorRT dequantizes 8-bit (and fp8/int4) tensors only, never int32
            notes.append(f"{layer.name}: bias kept float (TensorRT fuses a float bias)")
        else:
            bias = int32_bias(engine, state, layer, np.float32(act_scale), weight_scale, notes)
    planned = weight_bytes_after(layer, choice.weight) if choice.weight is not None else 0
    extra = engine.recovery.extra_bytes(layer, choice)  # AWQ/SmoothQuant scales, a created bias
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
        bytes_planned=planned + extra,
        bytes_float=sum(w.nbytes for w in layer.weights if w.name in replaced),
        bytes_stored=sum(e.nbytes for e in encodings) + extra,
        notes=tuple(notes),
        accumulator_lsb=(
            float(np.float32(act_scale) * np.max(weight_scale))
            if kernel and act_scale is not None and weight_scale is not None
            else None
        ),
    )


def export_tensor_quantizers(state: ExportState, qm: QuantizedModel) -> dict[str, QuantizerRecord]:
    """QuantizeLinear/DequantizeLinear where each of the target's tensors is produced; every
    main-graph consumer then reads the dequantized value (as the engine simulates)."""
    g = state.model.graph
    after: dict[str, list[onnx.NodeProto]] = {}
    first: list[onnx.NodeProto] = []
    out: dict[str, QuantizerRecord] = {}
    producer = {o: n for n in g.node for o in n.output}
    dropped: set[int] = set()  # Div/Mul nodes folded into a DequantizeLinear (export.rescale)
    orphans: set[str] = set()  # their inputs' dequantized values, perhaps read by nothing else
    # the tensor after whose QuantizeLinear a tensor's nodes go: a folded one's codes are its
    # input's, so a chain of folds (a HardSwish's / 6, then a Mul by a constant) anchors all
    # its DequantizeLinears at the first quantizer
    anchor: dict[str, str] = {}
    created: set[str] = set()  # initializers written or freed here: unread ones go
    for t, q in qm.placed.items():
        b = GraphBuilder(f"{t}_t", state.taken)
        rec = activations.encode_activation(
            b, "", t, q.format, dynamic=False, value_range=qm.target_ranges[t]
        )
        g.initializer.extend(b.initializers)
        created.update(i.name for i in b.initializers)
        node = producer.get(t)
        src = next((out[i] for i in node.input if i in out), None) if node is not None else None
        folded = None
        if q.range_scale != 1.0 and src is not None:
            folded = rescale.fold(g, node, q.format, src, rec)
        if folded is not None and node is not None and src is not None:
            dq = b.nodes[-1]  # read the input's codes: the Div/Mul and the QuantizeLinear go
            dq.input[0] = folded.codes
            anchor[t] = anchor.get(src.activation, src.activation)
            after[anchor[t]].append(dq)
            dropped.add(id(node))
            created.update(node.input)  # its constant, unread once it is folded
            orphans.add(src.output)
            rec = folded
        else:
            (after.setdefault(t, []) if t in producer else first).extend(b.nodes)
        out[t] = replace(rec, layer=f"({q.reason})")
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in out:
                node.input[i] = out[name].output
    ordered = list(first)
    for node in g.node:
        if id(node) not in dropped:
            ordered.append(node)
        for o in node.output:
            ordered.extend(after.get(o, []))
    # the DequantizeLinear only a folded op read (target tensors are never graph outputs nor
    # read inside subgraphs: bitlens.core.targets.placement)
    read = {i for n in ordered for i in n.input}
    ordered = [n for n in ordered if not (set(n.output) & orphans) or n.output[0] in read]
    set_nodes(g, ordered)
    deadconsts.drop_unread(g, created)  # e.g. a folded chain's middle zero point
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
    return replace(rec, output=out, description=rec.description + GUARD_TEXT)


def dtype_of(engine: Engine, tensor: str) -> str | None:
    for t in engine.info.inputs:
        if t.name == tensor:
            return t.dtype
    t = engine.info.value_info.get(tensor)
    return None if t is None else t.dtype


def _encode_one(
    state: ExportState,
    layer: Layer,
    w: WeightInfo,
    q: QTensor,
    kernel: bool,
    options: ExportOptions,
    notes: list[str],
    input_scale: np.ndarray | None = None,
    *,
    tensorrt: bool = False,
) -> WeightEncoding | None:
    fmt = q.fmt
    g = state.graph(w.graph_path)
    b = GraphBuilder(
        w.name, state.taken, state.shared.setdefault(w.graph_path, {}), state.functions
    )
    if options.matmulnbits and input_scale is not None:
        notes.append(f"{w.name}: AWQ's multiply after the decode keeps it out of MatMulNBits")
    elif options.matmulnbits and not kernel and layer.op_type == "MatMul" and not w.graph_path:
        lay = matmulnbits.layout_for(fmt, w.shape)
        idx, node = state.node_producing(g, layer.outputs[0])
        if (
            lay is not None
            and list(node.input[1:2]) == [w.name]
            and w.storage is Storage.INITIALIZER
            and state.consumers(w.name) == 1
        ):
            new, enc = matmulnbits.encode(b, node, w.name, q, lay)
            state.remove_weight(g, w)
            g.node[idx].CopyFrom(new)
            g.initializer.extend(b.initializers)
            return enc
        if lay is None:
            notes.append(
                f"{w.name}: {fmt.name} has no MatMulNBits layout (2/4/8-bit blocks of a power "
                "of two >= 16 along K, dividing K); exported as folded codes"
            )
    mode = QDQ if kernel or options.weights == QDQ else FOLD
    widen = _widen(fmt, kernel, state.opset, options.int2_qdq)
    if mode == QDQ and widen != PACKED and native_qdq_dtype(fmt, options.int2_qdq) is None:
        notes.append(f"{w.name}: {fmt.name} has no native ONNX type; stored as folded codes")
    # QGemm and MatMulIntegerToFloat need the weight's zero point written out; QLinearConv
    # fuses without it (symmetric int8: all zeros), so a conv stores no per-channel zeros.
    # The TensorRT target writes every int8 zero point (0) out: its Q/DQ rules want int8
    # zero points present (bitlens.core.export.tensorrt cites NVIDIA's guide).
    zero_point = tensorrt or (kernel and layer.op_type != "Conv")
    plain = family_of(fmt).plain_dtype(fmt)
    if plain is not None and plain.itemsize >= np.dtype(w.dtype).itemsize:
        enc = None  # a cast at or above the weight's own precision changes nothing
    else:
        enc = encode_qtensor(
            b, w, q, np.dtype(w.dtype), mode=mode, allow_int2=options.int2_qdq,
            zero_point=zero_point, widen=widen, zeros_at_load=not tensorrt,
        )  # fmt: skip
    if enc is None:
        notes.append(f"{w.name}: {fmt.name} keeps the weight's own {w.dtype} values")
        return None
    if input_scale is not None:
        recovery_export.scale_decoded(b, w.name, input_scale)
    elif enc.scheme == QDQ and layer.op_type == "MatMul" and not kernel and len(w.shape) == 2:
        enc = _outside_matmulnbits(b, w, enc)
    state.remove_weight(g, w)
    state.add_to_graph(w.graph_path, b)
    return enc


def _widen(fmt: Format, kernel: bool, opset: int, allow_int2: bool) -> str | None:
    """How an integer-kernel layer's sub-8-bit codes reach its 8-bit kernel: Cast from their
    native type (INT4; INT2 where asked for), or unpacked from a packed stream where ONNX
    has no such type (3, 5, 6, 7 bits) or the export's opset lacks it."""
    if not kernel or fmt.bits >= 8:
        return None
    if native_qdq_dtype(fmt, allow_int2) is None:
        return PACKED
    return CAST if family_of(fmt).export_min_opset(fmt, True) <= opset else PACKED


def _outside_matmulnbits(b: GraphBuilder, w: WeightInfo, enc: WeightEncoding) -> WeightEncoding:
    """Put a Reshape (to the weight's own shape) between the weight's DequantizeLinear and the
    MatMul. ONNX Runtime's optimizer rewrites a constant DequantizeLinear feeding a MatMul to
    ``MatMulNBits`` with ``accuracy_level=4``, which quantizes the activations to int8 inside
    the kernel (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_actions.cc,
    DQMatMulToMatMulNBitsAction; the level comes from the session option
    ``session.qdq_matmulnbits_accuracy_level``, default 4): a real difference from the
    file's float MatMul, not a reordering, that a default session would show. The Reshape
    matches no selector, so the MatMul runs in float32 exactly as written."""
    decoded = b.name("decoded")
    rename_output(b, w.name, decoded)
    b.node("Reshape", [decoded, b.const("shape", np.asarray(w.shape, np.int64))], w.name)
    why = "; a Reshape keeps it out of ONNX Runtime's int8-activation MatMulNBits rewrite"
    return replace(enc, description=enc.description + why)
