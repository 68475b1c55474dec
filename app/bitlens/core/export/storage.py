"""Rule 1 of the fidelity check, storage: each layer's weights as the file stores them.

Split from :mod:`bitlens.core.export.fidelity`. For each exported layer: the stored
tensors have the planned element type and size (packed codes included), no planned weight
is left in float, the weights rebuilt from the file equal the simulated ones bit for bit,
and every activation quantizer reaches its layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.engine import bind
from bitlens.core.engine.graphs import iter_nodes
from bitlens.core.export import dynamic_lstm, probes
from bitlens.core.export.deployed import same
from bitlens.core.export.exporter import LayerExport
from bitlens.core.export.packing import packed_size
from bitlens.core.export.report import WeightCheck
from bitlens.core.formats import storage_bytes
from bitlens.core.plan import Plan
from bitlens.core.quantized import QuantizedModel
from bitlens.core.recovery.export import layer_node_of

if TYPE_CHECKING:
    from bitlens.core.engine import Engine

_ONNX_BITS = {
    onnx.TensorProto.INT8: 8, onnx.TensorProto.UINT8: 8, onnx.TensorProto.INT16: 16,
    onnx.TensorProto.UINT16: 16, onnx.TensorProto.INT4: 4, onnx.TensorProto.UINT4: 4,
    onnx.TensorProto.FLOAT8E4M3FN: 8, onnx.TensorProto.FLOAT8E5M2: 8,
    onnx.TensorProto.FLOAT16: 16, onnx.TensorProto.BFLOAT16: 16, onnx.TensorProto.FLOAT: 32,
    onnx.TensorProto.DOUBLE: 64, onnx.TensorProto.INT32: 32,
}  # fmt: skip
if hasattr(onnx.TensorProto, "INT2"):
    _ONNX_BITS[onnx.TensorProto.INT2] = 2
    _ONNX_BITS[onnx.TensorProto.UINT2] = 2


def layer_storage(
    engine: Engine,
    plan: Plan,
    qm: QuantizedModel,
    exported: onnx.ModelProto,
    rec: LayerExport,
    rebuilt: dict[str, np.ndarray],
    decoded: dict[str, np.ndarray],
    inits: dict[str, onnx.TensorProto],
) -> dict:
    """Rule 1 for one layer: stored types and sizes, nothing left float, values exact."""
    choice = plan[rec.name]
    layer = engine.info.layer(rec.name)
    problems: list[str] = []
    weight_checks: list[WeightCheck] = []
    encs = {e.weight: e for e in rec.weights}
    for w in layer.weights if choice.weight is not None else ():
        fmt = bind(choice.weight, w)
        enc = encs.get(w.name)
        if enc is None:
            if not (fmt.is_float and not fmt.has_scale):
                problems.append(f"weight {w.name!r} was not exported in {fmt.name}")
            continue
        wp: list[str] = []
        if w.name in inits:
            wp.append(f"weight {w.name!r} is still stored in float")
        for t in enc.stored:
            tp = inits.get(t.name)
            if tp is None:
                wp.append(f"stored tensor {t.name!r} is missing from the file")
                continue
            nbytes = len(tp.raw_data) if tp.raw_data else numpy_helper.to_array(tp).nbytes
            if t.role == "codes":
                elem = _ONNX_BITS.get(tp.data_type, 0)
                if "packed" in t.dtype:
                    ok_size = tp.data_type == onnx.TensorProto.UINT8 and nbytes == packed_size(
                        t.count, fmt.bits
                    )
                    if not ok_size or t.bits != fmt.bits:
                        wp.append(
                            f"{t.name}: expected {fmt.bits}-bit packed codes, found {nbytes} bytes"
                        )
                elif elem != fmt.bits:
                    wp.append(f"{t.name}: codes stored with {elem} bits, the plan says {fmt.bits}")
            if nbytes != t.nbytes:
                wp.append(f"{t.name}: {nbytes} bytes in the file, {t.nbytes} recorded")
        want = qm.weight(w.name).values  # what the engine fed and the export wrote
        got = rebuilt.get(w.name)
        if enc.scheme in ("matmulnbits", "dqlstm"):  # decoded in numpy from the stored tensors
            got = decoded.get(w.name)
        # bit for bit (NaN payloads and -0 included); a per-channel quantized weight along
        # a weight's last axis comes back as a transposed view, which has no byte view as is
        exact = got is not None and same(_bytes_of(got), _bytes_of(want))
        if not exact:
            wp.append(f"weight {w.name!r} rebuilt from the file differs from the simulated one")
        planned = storage_bytes(fmt, tuple(w.shape))
        if enc.scheme == "dqlstm":  # the kernel's layout: scales and zeros per direction
            planned = sum(t.nbytes for t in enc.stored if t.role == "codes") + sum(
                dynamic_lstm.kernel_param_bytes(w.shape, fmt)
            )
        # the zeros of a symmetric format that QGemm / MatMulIntegerToFloat want written out
        # (stored where fewer than export/weights.ZEROS_AT_LOAD_MIN): no upcast
        zeros = sum(t.nbytes for t in enc.stored if t.role == "zero_point") if fmt.symmetric else 0
        if enc.nbytes > (planned + zeros) * 1.02 + 8 * len(enc.stored):
            wp.append(f"stores {enc.nbytes} bytes, the plan accounts {planned} (upcast?)")
        weight_checks.append(
            WeightCheck(
                w.name, fmt.name, enc.scheme,
                " + ".join(f"{t.dtype} {t.role}" for t in enc.stored),
                planned, enc.nbytes, exact, tuple(wp),
            )
        )  # fmt: skip
    nodes = {o: n for n in exported.graph.node for o in n.output}
    layer_node = layer_node_of(nodes, layer)  # past a bias Add the export created
    for q in rec.quantizers:
        if layer_node is None or q.output not in layer_node.input:
            problems.append(
                f"activation {q.activation!r} does not reach the layer through its quantizer"
            )
        if probes.probe_tensor(q) not in nodes:
            problems.append(f"quantizer codes {probes.probe_tensor(q)!r} are missing")
    kernel_quantizes = layer_node is not None and layer_node.op_type == dynamic_lstm.OP
    if choice.activation is not None and not rec.quantizers and not kernel_quantizes:
        problems.append(f"activation format {choice.activation.name} was not exported")
    scheme = "; ".join(dict.fromkeys(e.description for e in rec.weights)) or (
        "float (unchanged)" if choice.weight is None else "kept at source precision"
    )
    act_scheme = "; ".join(dict.fromkeys(q.description for q in rec.quantizers)) or "float"
    return {
        "name": rec.name,
        "op_type": rec.op_type,
        "weight_format": rec.weight_format,
        "activation_format": rec.activation_format,
        "weight_scheme": scheme,
        "activation_scheme": act_scheme,
        "integer_kernel": rec.integer_kernel,
        "bytes_planned": rec.bytes_planned,
        "bytes_stored": rec.bytes_stored,
        "bytes_file": rec.bytes_file,
        "bytes_float": rec.bytes_float,
        "weights": tuple(weight_checks),
        "problems": tuple(problems),
    }


def _bytes_of(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x).view(np.uint8)


def all_initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    out = {t.name: t for t in model.graph.initializer}
    for node in iter_nodes(model.graph):
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                out.update({t.name: t for t in attr.g.initializer})
    return out
