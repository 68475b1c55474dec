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
rows), on the ``ort-cpu`` target. The engine runs such a layer as the kernel itself, fed
the same codes and scales (bitlens.core.engine.lstm_nodes), so what the window predicts,
the hidden state's per-step uint8 rounding included, is what the file computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.engine import lstm_nodes, weight_bytes_after
from bitlens.core.export.editing import ExportState
from bitlens.core.export.graph import GraphBuilder
from bitlens.core.export.records import LayerExport
from bitlens.core.export.weights import StoredTensor, WeightEncoding
from bitlens.core.formats import Format, Granularity
from bitlens.core.lstm_kernel import runs_kernel
from bitlens.core.model.types import Layer

if TYPE_CHECKING:
    from bitlens.core.engine import Engine
    from bitlens.core.plan import LayerChoice
    from bitlens.core.quantized import QuantizedModel

OP = lstm_nodes.OP


def applies(layer: Layer, choice: LayerChoice, target: str) -> bool:
    """Export ``layer`` as the kernel. (A batch-major LSTM, ``layout`` 1, needs no case:
    ONNX Runtime's CPU LSTM kernels, this one included, share ``LSTMBase``, which refuses it,
    onnxruntime/core/providers/cpu/rnn/lstm_base.h.)"""
    return runs_kernel(layer, choice, target)


def write(
    engine: Engine, state: ExportState, layer: Layer, choice: LayerChoice, qm: QuantizedModel
) -> LayerExport:
    """Replace ``layer``'s LSTM node by ``DynamicQuantizeLSTM`` reading its int8 codes."""
    g = state.model.graph
    idx, node = state.node_producing(g, layer.outputs[0])
    b = GraphBuilder(f"{layer.name}_dq", state.taken)
    encodings: list[WeightEncoding] = []
    renamed: dict[str, str] = {}  # the engine's input names -> the stored tensors
    for w in layer.weights:  # W (input 1), then R (input 2)
        qw = qm.weight(w.name)
        if np.asarray(qw.q.codes).dtype != np.int8 or np.ndim(qw.q.codes) != 3:
            raise ValueError(f"weight {w.name}: expected int8 codes [D, 4H, K]")
        arrays = lstm_nodes.feeds(qw)  # what the engine feeds the same kernel
        stored = arrays[lstm_nodes.codes_input(w.name)]  # [D, K, 4H]
        scale = arrays[lstm_nodes.scale_input(w.name)]
        c_name = b.add_initializer(numpy_helper.from_array(stored, f"{w.name}_codes"))
        s_name = b.add_initializer(numpy_helper.from_array(scale, f"{w.name}_scale"))
        z_name = b.add_initializer(
            numpy_helper.from_array(arrays[lstm_nodes.zero_input(w.name)], f"{w.name}_zero_point")
        )
        renamed |= {
            lstm_nodes.codes_input(w.name): c_name,
            lstm_nodes.scale_input(w.name): s_name,
            lstm_nodes.zero_input(w.name): z_name,
        }
        st = (
            StoredTensor(c_name, "codes", "int8", 8, int(stored.size), int(stored.nbytes)),
            StoredTensor(s_name, "scale", "float32", 32, int(scale.size), int(scale.nbytes)),
            StoredTensor(z_name, "zero_point", "int8", 8, int(scale.size), int(scale.size)),
        )
        encodings.append(
            WeightEncoding(
                w.name,
                choice.weight.name if choice.weight else "",
                "dqlstm",
                f"int8 codes [D, K, 4H] read by {OP}, {scale.size} scales",
                st,
                False,
                1,
            )
        )
        state.remove_weight(g, w)
    new = lstm_nodes.kernel_node(node, layer)  # the engine's node, reading the stored tensors
    new.input[:] = [renamed.get(n, n) for n in new.input]
    new.name = node.name or layer.name
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
            "run time inside the kernel, as the engine ran it)",
        ),
    )


def decoded_weights(
    model: onnx.ModelProto, records: dict[str, LayerExport]
) -> dict[str, np.ndarray]:
    """Each kernel LSTM's ``W``/``R`` as the file's stored codes, scales and zero points give
    it, ``(code - zero) * scale`` back in ``[D, 4H, K]`` (for the fidelity check's storage
    rule: the engine fed these codes, and dequantized them this way for its weight error)."""
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for rec in records.values():
        for e in rec.weights:
            if e.scheme != "dqlstm":
                continue
            codes, scale, zero = (numpy_helper.to_array(inits[t.name]) for t in e.stored[:3])
            shape = (scale.shape[0], 1, 1) if scale.ndim == 1 else (*scale.shape[:1], 1, -1)
            value = (codes.astype(np.int32) - zero.astype(np.int32).reshape(shape)).astype(
                np.float32
            ) * scale.astype(np.float32).reshape(shape)
            out[e.weight] = np.ascontiguousarray(value.transpose(0, 2, 1))
    return out


def kernel_param_bytes(shape: Sequence[int], fmt: Format) -> tuple[int, int]:
    """Bytes of the kernel's float32 scales and int8 zero points for a ``[D, 4H, K]`` weight:
    one per direction (per tensor) or per direction and gate row (per channel)."""
    n = shape[0] * (shape[1] if fmt.granularity is Granularity.CHANNEL else 1)
    return 4 * n, n
