"""Copies of an exported model used to check it: the as-written reference and probes.

* The **reference** is the exported file with the two pieces the inspector
  does not simulate node by node put back to their simulated form: int32
  biases (added only so ONNX Runtime can fuse an integer kernel) return to
  the float bias, and each MatMulNBits node becomes a MatMul on the float
  weight decoded from the file's own packed codes. Run with every graph
  optimization disabled, it executes the stored weights and quantizers
  exactly as written.
* A **probe** is a model with extra graph outputs: the quantized codes of
  every activation quantizer and the rebuilt weights, so both runs can be
  compared tensor by tensor.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.engine.graphs import iter_nodes
from bitlens.core.export import matmulnbits
from bitlens.core.export.activations import QuantizerRecord
from bitlens.core.formats import parse_format
from bitlens.core.formats.uniform import code_dtype


def reference_model(
    exported: onnx.ModelProto,
    float_biases: Mapping[str, tuple[str, np.ndarray]],
    nbits_weights: Mapping[str, str],
) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The export with its simulated form restored.

    ``float_biases`` maps a DequantizeLinear bias output to the (name, value)
    of the float bias it replaced; ``nbits_weights`` maps the packed codes of
    each MatMulNBits node to the weight it stands for, which the reference
    computes with a MatMul on the decoded weight under that name. Returns the
    model and the decoded weights, by weight name.
    """
    ref = onnx.ModelProto()
    ref.CopyFrom(exported)
    g = ref.graph
    decoded: dict[str, np.ndarray] = {}
    for i, node in enumerate(g.node):
        if node.op_type == "MatMulNBits" and node.domain == matmulnbits.DOMAIN:
            weight = nbits_weights[node.input[1]]
            decoded[weight] = matmulnbits.decode(exported, node)
            g.initializer.append(numpy_helper.from_array(decoded[weight], weight))
            g.node[i].CopyFrom(
                helper.make_node(
                    "MatMul", [node.input[0], weight], list(node.output), name=node.name
                )
            )
        for j, name in enumerate(node.input):
            if name in float_biases:
                bias_name, value = float_biases[name]
                g.node[i].input[j] = bias_name
                if bias_name not in {t.name for t in g.initializer}:
                    g.initializer.append(numpy_helper.from_array(value, bias_name))
    return ref, decoded


def weights_as_inputs(model: onnx.ModelProto, weights: Mapping[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` whose main-graph ``weights`` are graph inputs, as in the engine.

    The engine feeds every layer weight as an input. ONNX Runtime computes
    differently when a weight is a constant, even with graph optimizations
    off (its MatMul/Gemm kernels pre-pack constant weights and then sum in
    another order), so the simulated form is run with the same arrangement.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    keep_inits = [t for t in g.initializer if t.name not in weights]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    keep_nodes = [n for n in g.node if not set(n.output) & set(weights)]
    del g.node[:]
    g.node.extend(keep_nodes)
    names = {v.name for v in g.input}
    for name, value in weights.items():
        if name not in names:
            dtype = helper.np_dtype_to_tensor_dtype(np.asarray(value).dtype)
            g.input.append(helper.make_tensor_value_info(name, dtype, list(np.shape(value))))
    return out


def code_type(rec: QuantizerRecord) -> int:
    """The ONNX element type of a quantizer's probed tensor."""
    if rec.kind == "qdq":
        return int(helper.np_dtype_to_tensor_dtype(code_dtype(parse_format(rec.format))))
    return onnx.TensorProto.FLOAT


def probe_tensor(rec: QuantizerRecord) -> str:
    """The tensor that carries a quantizer's codes (the dequantized output for float formats)."""
    return rec.codes if rec.codes is not None else rec.output


def with_outputs(model: onnx.ModelProto, outputs: Iterable[tuple[str, int]]) -> onnx.ModelProto:
    """A copy of ``model`` that also outputs the given (tensor, element type) pairs."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name, elem in outputs:
        if name not in existing:
            existing.add(name)
            probe.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    return probe


def lsb_distance(rec: QuantizerRecord, ref: np.ndarray, got: np.ndarray) -> np.ndarray:
    """|got - ref| per element, in LSBs of the quantizer.

    Integer quantizers: the difference of their codes. Float formats (fp16,
    bf16, fp8) have no fixed step, so the LSB is the format's spacing at the
    tensor's largest magnitude: near zero their grid is far finer than the
    float32 summation noise of the layer feeding them, and a one-code
    rounding flip anywhere is at most this step.
    """
    if integer_codes(rec):
        a, b = np.asarray(ref), np.asarray(got)
        if a.dtype.kind in "iu" and b.dtype.kind in "iu" and max(a.itemsize, b.itemsize) <= 2:
            # codes of at most 8 (16) bits: their difference fits int16 (int32), a quarter
            # (half) of the memory traffic of int64
            wide = np.int16 if max(a.itemsize, b.itemsize) == 1 else np.int32
            return np.abs(a.astype(wide) - b.astype(wide))
        return np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64))
    a, b = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return np.abs(a - b) / float_step(rec, float(np.max(np.abs(a))) if a.size else 0.0)


def integer_codes(rec: QuantizerRecord) -> bool:
    """Whether :func:`lsb_distance` counts the quantizer's steps as integer code differences."""
    return rec.kind == "qdq" or rec.kind in ("int", "int-dyn")


def float_step(rec: QuantizerRecord, top: float) -> float:
    """One LSB of a float-format quantizer (fp16, bf16, fp8) for a tensor whose largest
    magnitude is ``top``: the format's spacing there (inf where it has none)."""
    from bitlens.core.formats.floats import FLOAT_DTYPES

    scale = float(rec.scale) if rec.kind.startswith("fp8") and rec.scale else 1.0
    dt = FLOAT_DTYPES[rec.kind]
    at = np.asarray(top / scale).astype(dt)
    bits = at.view(np.uint8 if dt.itemsize == 1 else np.uint16)
    step = float(np.asarray(bits + 1).view(dt).astype(np.float64) - at.astype(np.float64))
    return step * scale if step > 0 else np.inf


def in_layout_of(ref: np.ndarray, got: np.ndarray) -> list[np.ndarray]:
    """``got`` in the layouts it may hold ``ref``'s values in: as it is and channels-last.

    ONNX Runtime's NHWC transformer runs chains of QLinearConv (and the ops between them)
    channels-last and keeps the tensor names, so a probed code tensor can come back as
    ``[N, H, W, C]`` for the ``[N, C, H, W]`` the file computes (onnxruntime
    ``optimizer/nhwc_transformer.cc``). Comparing the flattened values would pair unrelated
    elements. When a tensor's dims allow both readings (``H == W == C``), the caller takes
    the closer one. Empty: no layout of ``got`` has ``ref``'s shape.
    """
    out = [got] if got.shape == ref.shape else []
    if got.ndim == ref.ndim >= 3:
        back = np.moveaxis(got, -1, 1)  # channels-last -> channels-first
        if back.shape == ref.shape:
            out.append(back)
    return out


def weight_model(
    exported: onnx.ModelProto, graph: onnx.GraphProto, weights: Sequence[tuple[str, int]]
) -> onnx.ModelProto:
    """A stand-alone model computing the given weights of ``graph`` from their stored tensors.

    Walks back from each weight through the nodes of ``graph`` (a subgraph
    included) to its initializers, so weights defined inside If/Loop bodies,
    which a graph output cannot reach, can be rebuilt and compared too.
    """
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: t for t in graph.initializer}
    outer = {t.name: t for t in exported.graph.initializer}
    nodes: dict[int, onnx.NodeProto] = {}
    needed: dict[str, onnx.TensorProto] = {}
    stack = [name for name, _ in weights]
    seen: set[str] = set()
    while stack:
        name = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in inits or (name not in producer and name in outer):
            needed[name] = inits.get(name) or outer[name]
        elif name in producer:
            node = producer[name]
            nodes[id(node)] = node
            stack.extend(node.input)
    order = [n for n in graph.node if id(n) in nodes]
    g = helper.make_graph(
        order,
        "bitlens_weights",
        [],
        [helper.make_tensor_value_info(name, elem, None) for name, elem in weights],
        list(needed.values()),
    )
    # the unpack subgraphs are calls of the export's local functions (packing.py)
    model = helper.make_model(
        g, opset_imports=list(exported.opset_import), functions=list(exported.functions)
    )
    model.ir_version = exported.ir_version
    return model


@dataclass(frozen=True)
class GraphIndex:
    """What :func:`locate` looks up in an optimized graph, gathered in one pass over it."""

    produced: frozenset[str]
    inits: Mapping[str, onnx.TensorProto]
    quantizers: Mapping[str, list[onnx.NodeProto]]  # QuantizeLinear nodes by node name

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphIndex:
        nodes = list(iter_nodes(model.graph))
        quantizers: dict[str, list[onnx.NodeProto]] = {}
        for n in nodes:
            if n.op_type == "QuantizeLinear":
                quantizers.setdefault(n.name, []).append(n)
        return cls(
            frozenset(o for n in nodes for o in n.output),
            {t.name: t for t in model.graph.initializer},
            quantizers,
        )


def locate(
    optimized: onnx.ModelProto, rec: QuantizerRecord, index: GraphIndex | None = None
) -> tuple[str, int, int] | None:
    """Where a quantizer's codes live in ONNX Runtime's optimized graph.

    Returns (tensor, element type, offset) with ``our code = their code + offset``,
    or None when the codes only exist inside a fused kernel. ONNX Runtime keeps
    the tensor names that later nodes read, but converts int8 activation pairs
    to uint8 with the zero point moved by 128 (``qdq_s8_to_u8``), renaming them;
    the QuantizeLinear node keeps its name, which finds them. ``index``: the graph's
    :class:`GraphIndex`, built once by a caller that locates many quantizers.
    """
    index = index or GraphIndex.of(optimized)
    name = probe_tensor(rec)
    ours = code_type(rec)
    if name in index.produced:
        return name, ours, 0
    for n in index.quantizers.get(rec.node, ()):
        zp = index.inits.get(n.input[2]) if len(n.input) > 2 else None
        theirs = zp.data_type if zp is not None else onnx.TensorProto.UINT8
        if theirs == ours:
            return n.output[0], theirs, 0
        if ours == onnx.TensorProto.INT8 and theirs == onnx.TensorProto.UINT8:
            return n.output[0], theirs, -128
    return None


def segment_walk(
    g: onnx.GraphProto,
    producer: Mapping[str, int],
    inits: Mapping[str, onnx.TensorProto],
    target: str,
    boundary: set[str],
    types: Mapping[str, onnx.TypeProto],
) -> tuple[set[int], list[str], list[str]] | None:
    """The walk behind :func:`segment`: indices of the nodes of ``g`` computing ``target``
    from the nearest ``boundary`` tensors, those tensors, and the initializers the nodes read.
    ``producer`` maps each output to its node's index, ``inits`` the initializers by name
    (built once by a caller that walks from many targets). None: no segment (see there)."""
    nodes: set[int] = set()
    inputs: list[str] = []
    used: list[str] = []
    stack, seen = [target], set()
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in boundary and name != target:
            inputs.append(name)
        elif name in inits:
            used.append(name)
        elif name in producer:
            node = g.node[producer[name]]
            if any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute
            ):
                return None
            nodes.add(producer[name])
            stack.extend(node.input)
        else:
            return None
    if any(n not in types for n in inputs) or target not in types:
        return None
    return nodes, inputs, used


def value_info(name: str, tp: onnx.TypeProto) -> onnx.ValueInfoProto:
    vi = onnx.ValueInfoProto()
    vi.name = name
    vi.type.CopyFrom(tp)
    return vi


def segment(
    model: onnx.ModelProto,
    target: str,
    boundary: set[str],
    types: Mapping[str, onnx.TypeProto],
) -> onnx.ModelProto | None:
    """The part of ``model`` computing ``target`` from the nearest ``boundary`` tensors.

    Walks back from ``target`` through the main graph and stops at boundary
    tensors (other quantizers' codes, model inputs), which become the
    segment's inputs with the types in ``types`` (symbolic shapes kept, so
    ONNX Runtime makes the same shape-dependent fusions as in the whole
    model). Returns None when the segment would need a tensor it cannot be
    fed (a subgraph's outer-scope value, an untyped boundary).
    """
    g = model.graph
    producer = {o: k for k, n in enumerate(g.node) for o in n.output}
    inits = {t.name: t for t in g.initializer}
    found = segment_walk(g, producer, inits, target, boundary, types)
    if found is None:
        return None
    nodes, inputs, used = found
    g2 = helper.make_graph(
        [n for k, n in enumerate(g.node) if k in nodes], "bitlens_segment",
        [value_info(n, types[n]) for n in inputs], [value_info(target, types[target])],
        [inits[n] for n in used],
    )  # fmt: skip
    seg = helper.make_model(
        g2, opset_imports=list(model.opset_import), functions=list(model.functions)
    )
    seg.ir_version = model.ir_version
    return seg


def tensor_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Types (symbolic shapes included) of every main-graph value, by shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    return {v.name: v.type for v in (*g.input, *g.output, *g.value_info)}
