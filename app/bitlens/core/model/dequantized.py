"""A float view of a quantized model, for comparing its weights with another model's.

An export (Bitlens's, or ONNX Runtime's ``quantize_static``) stores each weight as codes
decoded by ``DequantizeLinear`` (or an unpacking and codebook subgraph) of constants, so
the loader, which never folds decoding, finds no float layer in it and Compare With Model
had nothing to match. This copy folds the decoding, computed by ONNX Runtime (what runs
the file), so each layer reads its dequantized weight as an initializer again, under its
own name.
"""

from __future__ import annotations

from dataclasses import replace

import onnx
import onnxruntime as ort

from bitlens.core.model.external import iter_external_data
from bitlens.core.model.folding import fold_constants
from bitlens.core.model.loader import LoadedModel, from_proto
from bitlens.core.model.prequantized import note as quantized_note
from bitlens.core.model.prequantized import quantized_ops
from bitlens.core.results import drain

_NARROW = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


def dequantized(model: LoadedModel) -> LoadedModel:
    """``model`` itself when it holds no quantized or narrow-float weights, else a copy whose
    constant weight decoding is folded to float values (a note says so). An export's fp16
    layers store their weights as fp16 read through a Cast to float: without folding it
    the loader saw no layer there, and MiniLM's export compared "5 only in this model"."""
    if not (quantized_ops(model.graph_proto) or _widened(model.graph_proto.graph)):
        return model
    proto = model.copy_proto()
    label = str(model.path) if model.path is not None else "model"
    base = model.base_dir
    folded = fold_constants(
        proto,
        lambda m: drain(iter_external_data(m, base, label)),
        dequantize=True,
        evaluate=_run,
    )
    if not folded.nodes:
        return model
    out = from_proto(proto, model.path)
    # what the loader says of the activation quantizers left is not news here
    left = quantized_note(quantized_ops(out.graph_proto), len(out.info.layers))
    note = (
        f"its quantized or fp16 weights were decoded to float in memory ({folded.nodes} "
        "decoding node(s) folded) to compare them"
    )
    notes = (*(n for n in out.info.notes if n != left), note)
    return replace(out, info=replace(out.info, notes=notes))


def _widened(graph: onnx.GraphProto) -> bool:
    """Whether a Cast in the main graph widens an initializer (fp16 or bf16 storage)."""
    narrow = {t.name for t in graph.initializer if t.data_type in _NARROW}
    return any(n.op_type == "Cast" and n.input and n.input[0] in narrow for n in graph.node)


def _run(sub_model: onnx.ModelProto) -> list:
    """The outputs of a model without inputs, computed by ONNX Runtime's CPU provider."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        sub_model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {})
