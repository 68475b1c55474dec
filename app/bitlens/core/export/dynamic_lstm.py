"""An LSTM with int8 weights exported as ONNX Runtime's ``DynamicQuantizeLSTM`` kernel.

ONNX Runtime's ``quantize_static`` leaves an LSTM float (in
onnxruntime/python/tools/quantization/registry.py LSTM is in ``IntegerOpsRegistry``, the
dynamic quantizer's, and not in ``QDQRegistry``), and a float LSTM over a dequantized int8 weight runs the float kernel: on
ddddocr's CRNN (bidirectional, hidden 512, 16-40 steps) that LSTM and the classifier head
were three quarters of the int8 model's time. The contrib operator ``com.microsoft``
``DynamicQuantizeLSTM`` (what ``quantize_dynamic`` writes, see
onnxruntime/python/tools/quantization/operators/lstm.py and docs/ContribOperators.md) takes
int8 ``W``/``R`` transposed to ``[directions, input, 4*hidden]`` with per-tensor ``[D]`` or
per-gate-row ``[D, 4*hidden]`` scales and zero points, and quantizes its inputs to uint8 at
run time: the input sequence ``X`` in one go for the input projection of every step, and
the hidden state at every step for the recurrence
(onnxruntime/core/providers/cpu/rnn/rnn_helpers.h, ``ComputeGemm`` with quantized weights).
Measured alone with common.onnx's weights (one and two threads, 16-40 steps) it ran in
0.03-0.33 of the float LSTM's time.

A plan asks for it per layer: an LSTM whose choice is ``dynamic`` with a ``uint8 asym``
activation and symmetric 8-bit integer weights (per tensor, or per channel on the gate
rows), on the ``ort-cpu`` target. The engine simulates the layer as a dynamic uint8
quantizer on ``X`` (the same range rule as the kernel: min and max of the whole input,
widened to include 0) and a float LSTM on the dequantized weights; the per-step
quantization of the hidden state happens only in the kernel. The fidelity check therefore
judges the rest of the file with these layers in their simulated form
(:func:`restore_simulated`) and measures and reports the kernel's own difference; the
window's "as deployed" mode runs the file itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from bitlens.core.engine import weight_bytes_after
from bitlens.core.engine.graphs import node_producing
from bitlens.core.export import activations
from bitlens.core.export.editing import ExportState, remove_weight
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.records import LayerExport
from bitlens.core.export.weights import StoredTensor, WeightEncoding
from bitlens.core.formats import Format, Granularity, parse_format
from bitlens.core.lstm_kernel import KERNEL_ACTIVATION, runs_kernel
from bitlens.core.model.types import Layer

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.plan import LayerChoice
    from bitlens.core.quantized import QuantizedModel

OP = "DynamicQuantizeLSTM"
DOMAIN = "com.microsoft"
# inputs 0-7 as in ONNX's LSTM (X, W, R, B, sequence_lens, initial_h, initial_c, P), then
# W_scale, W_zero_point, R_scale, R_zero_point
_LSTM_INPUTS = 8


def applies(layer: Layer, choice: LayerChoice, target: str) -> bool:
    """Export ``layer`` as the kernel. (A batch-major LSTM, ``layout`` 1, needs no case:
    ONNX Runtime's CPU LSTM kernels, this one included, share ``LSTMBase``, which refuses it,
    onnxruntime/core/providers/cpu/rnn/lstm_base.h.)"""
    return runs_kernel(layer, choice, target)


def _params(q_scale: np.ndarray, directions: int, rows: int) -> np.ndarray:
    """The kernel's scale layout: ``[D]`` per tensor, ``[D, 4*hidden]`` per gate row."""
    s = np.asarray(q_scale, np.float32)
    if s.size == 1:
        return np.full((directions,), s.reshape(()), np.float32)
    if s.size == rows:  # one scale per gate row, shared by the directions
        return np.broadcast_to(s.reshape(1, rows), (directions, rows)).copy()
    if s.size == directions * rows:
        return s.reshape(directions, rows)
    raise ValueError(f"scale of {s.size} values for {directions} x {rows} rows")


def write(
    engine: Engine, state: ExportState, layer: Layer, choice: LayerChoice, qm: QuantizedModel
) -> LayerExport:
    """Replace ``layer``'s LSTM node by ``DynamicQuantizeLSTM`` reading its int8 codes."""
    g = state.model.graph
    idx, node = node_producing(g, layer.outputs[0])
    b = GraphBuilder(f"{layer.name}_dq", state.taken)
    encodings: list[WeightEncoding] = []
    params: list[str] = []
    for w in layer.weights:  # W (input 1), then R (input 2)
        q = qm.weight(w.name).q
        codes = np.asarray(q.codes)
        if codes.dtype != np.int8 or codes.ndim != 3:
            raise ValueError(f"weight {w.name}: expected int8 codes [D, 4H, K]")
        directions, rows = codes.shape[0], codes.shape[1]
        assert q.scale is not None
        scale = _params(q.scale, directions, rows)
        stored = np.ascontiguousarray(codes.transpose(0, 2, 1))  # [D, K, 4H]
        c_name = b.add_initializer(numpy_helper.from_array(stored, f"{w.name}_codes"))
        s_name = b.add_initializer(numpy_helper.from_array(scale, f"{w.name}_scale"))
        z_name = b.add_initializer(
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), f"{w.name}_zero_point")
        )
        st = (
            StoredTensor(c_name, "codes", "int8", 8, int(stored.size), int(stored.nbytes)),
            StoredTensor(s_name, "scale", "float32", 32, int(scale.size), int(scale.nbytes)),
            StoredTensor(z_name, "zero_point", "int8", 8, int(scale.size), int(scale.size)),
        )
        encodings.append(
            WeightEncoding(
                w.name, choice.weight.name if choice.weight else "", "dqlstm",
                f"int8 codes [D, K, 4H] read by {OP}, {scale.size} scales", st, False, 1,
            )
        )
        params += [s_name, z_name]
        remove_weight(g, w)
    inputs = list(node.input) + [""] * (_LSTM_INPUTS - len(node.input))
    inputs[1], inputs[2] = encodings[0].stored[0].name, encodings[1].stored[0].name
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "layout"}
    new = helper.make_node(
        OP, inputs[:_LSTM_INPUTS] + params, list(node.output), name=node.name or layer.name,
        domain=DOMAIN, **attrs,
    )  # fmt: skip
    g.node[idx].CopyFrom(new)
    g.initializer.extend(b.initializers)
    stored_bytes = sum(e.nbytes for e in encodings)
    return LayerExport(
        name=layer.name,
        op_type=layer.op_type,
        weight_format=None if choice.weight is None else choice.weight.name,
        activation_format=None if choice.activation is None else choice.activation.name,
        dynamic=True,
        weights=tuple(encodings),
        quantizers=(),
        integer_kernel=True,
        bias=None,
        bytes_planned=weight_bytes_after(layer, choice.weight, kernel=True) if choice.weight else 0,
        bytes_float=sum(w.nbytes for w in layer.weights),
        bytes_stored=stored_bytes,
        notes=(
            f"{layer.name}: {OP} (int8 weights; X and the hidden state quantized to uint8 at "
            "run time inside the kernel, the hidden state's quantization not simulated)",
        ),
    )


def kernel_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == OP and n.domain == DOMAIN]


def restore_simulated(model: onnx.ModelProto, weight_names: dict[str, str]) -> onnx.ModelProto:
    """A copy of ``model`` where each ``DynamicQuantizeLSTM`` is written as the engine
    simulates it: the dynamic uint8 quantizer on ``X``, then ONNX's LSTM on the dequantized
    weights, named as in the source (``weight_names``: stored codes -> weight name).

    The weights are rebuilt from the stored codes and scales (``Cast`` and ``Mul``, then a
    ``Transpose`` back to ``[D, 4H, K]``): each value is ``code * scale`` in float32, the
    engine's own dequantized weight."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    found = kernel_nodes(out)
    if not found:
        return out
    taken = {n for node in g.node for n in (*node.input, *node.output, node.name)}
    taken |= {t.name for t in g.initializer} | {v.name for v in g.input}
    fmt = parse_format(KERNEL_ACTIVATION)
    new_nodes: list[onnx.NodeProto] = []
    for node in g.node:
        if not (node.op_type == OP and node.domain == DOMAIN):
            new_nodes.append(node)
            continue
        b = GraphBuilder(f"{node.name}_sim", taken)
        inputs = list(node.input)
        for k, scale_at in ((1, 8), (2, 10)):
            codes = b.node("Cast", [inputs[k]], to=int(b.FLOAT))
            axes = [1, 2] if _is_per_tensor(g, inputs[scale_at]) else [1]
            s = b.node("Unsqueeze", [inputs[scale_at], b.const("axes", np.asarray(axes))])
            deq = b.node("Mul", [codes, s])  # [D, K, 4H] * [D, 1, 4H] (or [D, 1, 1])
            b.node("Transpose", [deq], weight_names[inputs[k]], perm=[0, 2, 1])
        rec = activations.encode_activation(
            b, node.name, inputs[0], fmt, dynamic=True, value_range=(0.0, 0.0)
        )
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        lstm_in = [rec.output, weight_names[inputs[1]], weight_names[inputs[2]],
                   *inputs[3:_LSTM_INPUTS]]  # fmt: skip
        while lstm_in and not lstm_in[-1]:
            lstm_in.pop()
        new_nodes.extend(b.nodes)
        new_nodes.append(helper.make_node("LSTM", lstm_in, list(node.output), name=node.name,
                                          **attrs))  # fmt: skip
        g.initializer.extend(b.initializers)
    del g.node[:]
    g.node.extend(new_nodes)
    return out


def _is_per_tensor(g: onnx.GraphProto, scale: str) -> bool:
    t = next((t for t in g.initializer if t.name == scale), None)
    return t is not None and len(t.dims) == 1


def weight_names_of(records: dict[str, LayerExport]) -> dict[str, str]:
    """Stored codes tensor -> the weight it stands for, for :func:`restore_simulated`."""
    return {
        e.stored[0].name: e.weight
        for r in records.values()
        for e in r.weights
        if e.scheme == "dqlstm"
    }


def difference_notes(
    sess: ort.InferenceSession,
    engine: Engine,
    samples: Sequence[int],
    names: Sequence[str],
    judged: Mapping[str, list[np.ndarray]],
    simulated: Mapping[str, list[np.ndarray]],
) -> list[str]:
    """Per output: the file itself against the simulation, and against the file with its
    ``DynamicQuantizeLSTM`` layers as simulated (all in default sessions): what the kernels'
    run-time quantization of the hidden state adds, which only the window's "as deployed"
    mode shows."""
    notes = []
    got: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i in samples:
        for n, v in zip(names, sess.run(list(names), engine.data.samples[i]), strict=True):
            got[n].append(v)
    for n in names:
        a = _flat(got[n])
        b, w = _flat(judged[n]), _flat(simulated[n])
        if a.dtype.kind != "f" or a.shape != b.shape or a.shape != w.shape or not a.size:
            continue
        span = float(np.max(np.abs(w[np.isfinite(w)]), initial=0.0))
        kernel, total = float(np.max(np.abs(a - b))), float(np.max(np.abs(a - w)))
        k_rel, t_rel = (kernel / span, total / span) if span > 0 else (0.0, 0.0)
        notes.append(
            f"output {n!r}: the file differs from the simulation by up to {total:.3g} "
            f"({t_rel:.2g} of its range); {OP}'s run-time quantization of the LSTM's "
            f"hidden state (not simulated) alone moves it by up to {kernel:.3g} ({k_rel:.2g}): "
            "the rules above judged the file with those layers as simulated; `bitlens eval "
            "--deployed` shows the deployed numbers"
        )
    return notes


def _flat(values: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.ravel(v) for v in values]) if values else np.zeros(0)


def kernel_param_bytes(shape: Sequence[int], fmt: Format) -> tuple[int, int]:
    """Bytes of the kernel's float32 scales and int8 zero points for a ``[D, 4H, K]`` weight:
    one per direction (per tensor) or per direction and gate row (per channel)."""
    n = shape[0] * (shape[1] if fmt.granularity is Granularity.CHANNEL else 1)
    return 4 * n, n

