"""Folding constant-only subgraphs into initializers, at any nesting depth.

Exporters often compute a weight from constants instead of storing it: an
LSTM's W and R arrive through ``Unsqueeze``/``Slice``/``Concat``/``Transpose``
of Constant nodes (two ``If`` levels deep in Silero VAD v5), a MatMul's B
through a ``Transpose``. Seen as a graph, such a layer reads a computed
value, so nothing would list, quantize or export its weight. ONNX Runtime
folds these chains itself when it builds a session (its basic graph
optimizations, https://onnxruntime.ai/docs/performance/model-optimizations/graph-optimizations.html),
so folding them in the loader's in-memory copy changes nothing the model
computes, and makes the inventory, the engine and the exporter all see the
weight as the initializer it really is.

The values are computed by ``onnx``'s reference evaluator
(https://onnx.ai/onnx/api/reference.html) on just the constant part of each
graph, never by code of ours. Kept as they are: ops that would turn a compact
file into a large one (``ConstantOfShape``, ``Expand``, ``Tile``, ``Range``),
random ops, quantization ops (folding ``DequantizeLinear`` would silently
turn a quantized model back into a float one), widening float ``Cast``
(the file's fp16 storage is part of what Bitlens reports), control flow, and
ops outside the ONNX domain.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.model.graph import CONSTANT_DOMAINS, is_constant_node, outer_names, subgraphs
from bitlens.core.model.repeated import remove_where

NOT_FOLDED = frozenset(
    {
        "ConstantOfShape", "Expand", "Tile", "Range",
        "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
        "Multinomial", "Bernoulli",
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
    }
)  # fmt: skip

# A float view for comparison folds weight decoding too; only random ops stay.
DECODING_KEPT = NOT_FOLDED - {
    "ConstantOfShape", "Expand", "Tile", "Range", "QuantizeLinear", "DequantizeLinear",
}  # fmt: skip

_FLOAT_BITS = {
    onnx.TensorProto.FLOAT16: 16,
    onnx.TensorProto.BFLOAT16: 16,
    onnx.TensorProto.FLOAT: 32,
    onnx.TensorProto.DOUBLE: 64,
}


@dataclass
class FoldResult:
    nodes: int = 0  # nodes removed because their values are now initializers
    tensors: int = 0  # initializers added
    graphs: list[str] = field(default_factory=list)  # where ("" for the main graph)
    freed: set[str] = field(default_factory=set)  # constants the folded nodes read
    depth: int = 0  # deepest subgraph level folded (0: the main graph)
    names: set[str] = field(default_factory=set)  # the initializers added
    failures: list[str] = field(default_factory=list)  # graph: reason, left unfolded
    load: Callable[[onnx.ModelProto], None] | None = field(default=None, repr=False)
    not_folded: frozenset[str] = NOT_FOLDED  # ops left as they are
    # computes a constant-only model's outputs (default: ONNX's reference evaluator)
    evaluate: Callable[[onnx.ModelProto], list] | None = field(default=None, repr=False)
    domains: frozenset[str] = CONSTANT_DOMAINS  # op domains folded
    functions: list[onnx.FunctionProto] = field(default_factory=list, repr=False)  # they use
    # initializers added that decode integer codes (a Cast of an int8 constant to float,
    # then a scale): name -> the codes' dtype name
    decoded: dict[str, str] = field(default_factory=dict)
    widen: bool = False  # also fold widening float Casts (fp16 storage, for comparing only)

    def note(self, weights: int, decoded: Counter[str] | None = None) -> str | None:
        """One line for the user; ``weights``: how many folded tensors are layer weights;
        ``decoded``: how many of those decode integer codes, by the codes' dtype."""
        parts = []
        if weights:
            deep = f", up to {self.depth} subgraph level(s) deep" if self.depth else ""
            parts.append(
                f"{weights} layer weight(s) are computed from constants in the file; Bitlens "
                f"folded them in memory ({self.nodes} constant-only node(s) in "
                f"{len(self.graphs)} graph(s){deep}) to quantize and export them"
            )
        if decoded:
            # A hand-made weight-only quantization (tinyocr's PP-OCRv6: int8 codes, Cast,
            # Mul by a per-channel scale) folds to float32 like any other constant chain;
            # the sizes shown are then float32 sizes, not the file's.
            kinds = ", ".join(f"{n} from {dtype}" for dtype, n in decoded.most_common())
            parts.append(
                f"{sum(decoded.values())} of them decode integer codes stored in the file "
                f"({kinds}, cast to float and scaled): the file is already weight-quantized, "
                "and the sizes here count those weights as float32, so an export saves "
                "less than the compression shown"
            )
        if self.failures:
            parts.append("could not fold constants in " + "; ".join(self.failures))
        return "; ".join(parts) or None


def fold_constants(
    model: onnx.ModelProto,
    load: Callable[[onnx.ModelProto], None] | None = None,
    *,
    dequantize: bool = False,
    evaluate: Callable[[onnx.ModelProto], list] | None = None,
) -> FoldResult:
    """Replace every constant-only node of ``model`` (in place) by initializers.

    Only for a model the caller owns (the loader's in-memory copy), with every
    graph in topological order. Node names of the remaining nodes are kept.
    ``load(sub_model)`` reads in the external data a folded subgraph's copy refers to
    (the loader leaves large external tensors in their files). ``dequantize`` also folds
    the decoding of quantized constant weights (``DequantizeLinear``, unpacking, codebook
    lookups), for a float view of a quantized model that is only compared, never exported;
    ``evaluate(sub_model)`` then computes the values (the reference evaluator has no
    ``DequantizeLinear`` before opset 19); widening float Casts (fp16 storage) fold too.
    """
    opsets = list(model.opset_import)
    result = FoldResult(load=load, evaluate=evaluate)
    if dequantize:  # the decoding ops, and the model's own functions (packed-code unpacking)
        result.not_folded = DECODING_KEPT
        result.domains = CONSTANT_DOMAINS | {f.domain for f in model.functions}
        result.functions = list(model.functions)
        result.widen = True  # an export's fp16 weights are read through a Cast to float
    _fold_graph(model.graph, "", {}, opsets, model.ir_version, result)
    if result.nodes:
        _drop_unused(model.graph, result.freed)
    return result


def _const_sources(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto | onnx.NodeProto]:
    out: dict[str, onnx.TensorProto | onnx.NodeProto] = {}
    for t in graph.initializer:
        # Old exporters also list initializers among the inputs; like the inventory
        # (graph.py), Bitlens treats them as the constants they are in practice.
        out[t.name] = t
    for node in graph.node:
        if is_constant_node(node):
            out[node.output[0]] = node
    return out


def _elem_type(src: onnx.TensorProto | onnx.NodeProto | None) -> int | None:
    if isinstance(src, onnx.TensorProto):
        return int(src.data_type)
    if isinstance(src, onnx.NodeProto):
        for attr in src.attribute:
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                return int(attr.t.data_type)
    return None


def _foldable(
    node: onnx.NodeProto, known: dict, types: dict[str, int | None], result: FoldResult
) -> bool:
    if node.domain not in result.domains or node.op_type in result.not_folded:
        return False
    if is_constant_node(node) or any(True for _ in subgraphs(node)):
        return False
    if not all(name in known for name in node.input if name):
        return False
    if node.op_type == "Cast" and not result.widen:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        src = types.get(node.input[0])
        if src in _FLOAT_BITS and to in _FLOAT_BITS and _FLOAT_BITS[to] > _FLOAT_BITS[src]:
            return False
    return True


def _fold_graph(
    graph: onnx.GraphProto,
    path: str,
    outer: dict[str, onnx.TensorProto | onnx.NodeProto],
    opsets: list[onnx.OperatorSetIdProto],
    ir_version: int,
    result: FoldResult,
    *,
    depth: int = 0,
) -> None:
    inits = {t.name for t in graph.initializer}
    shadowed = {i.name for i in graph.input if i.name not in inits}
    known: dict[str, onnx.TensorProto | onnx.NodeProto | None] = {
        k: v for k, v in outer.items() if k not in shadowed
    }
    known.update(_const_sources(graph))
    types = {k: _elem_type(v) for k, v in known.items()}
    fold: list[onnx.NodeProto] = []
    for node in graph.node:
        if _foldable(node, known, types, result):
            fold.append(node)
            for out in node.output:
                if out:
                    known[out] = None  # computed below
                    types[out] = None
    if fold and _evaluate(graph, path, fold, known, opsets, ir_version, result):
        result.depth = max(result.depth, depth)
    own: dict[str, onnx.TensorProto | onnx.NodeProto] | None = None  # once a subgraph needs it
    for node in graph.node:
        name = node.name or node.op_type
        for label, g in subgraphs(node):
            if own is None:
                own = {
                    **{k: v for k, v in outer.items() if k not in shadowed},
                    **_const_sources(graph),
                }
            sub = f"{path}/{name}/{label}".lstrip("/")
            _fold_graph(g, sub, own, opsets, ir_version, result, depth=depth + 1)


def _needed(graph: onnx.GraphProto, fold: list[onnx.NodeProto]) -> list[str]:
    """Outputs of folded nodes that something left in the graph still reads."""
    folded = {id(n) for n in fold}
    produced = [o for n in fold for o in n.output if o]
    reads: set[str] = {o.name for o in graph.output}
    for node in graph.node:
        if id(node) in folded:
            continue
        reads.update(node.input)
        for _, g in subgraphs(node):
            reads |= outer_names(g)
    return [name for name in produced if name in reads]


def _evaluate(
    graph: onnx.GraphProto,
    path: str,
    fold: list[onnx.NodeProto],
    known: dict[str, onnx.TensorProto | onnx.NodeProto | None],
    opsets: list[onnx.OperatorSetIdProto],
    ir_version: int,
    result: FoldResult,
) -> bool:
    """Fold ``fold`` into initializers of ``graph``; False (and a failure noted) if it can't."""
    from onnx.reference import ReferenceEvaluator

    needed = _needed(graph, fold)
    produced = {o for n in fold for o in n.output if o}
    reads = {i for n in fold for i in n.input if i and i not in produced}
    inits, consts = [], []
    for name in sorted(reads):
        src = known[name]
        if isinstance(src, onnx.TensorProto):
            inits.append(src)
        elif isinstance(src, onnx.NodeProto):
            consts.append(src)
    outputs = [helper.make_empty_tensor_value_info(n) for n in needed]
    sub = helper.make_graph([*consts, *fold], "constants", [], outputs, inits)
    sub_model = helper.make_model(sub, opset_imports=opsets, functions=result.functions)
    sub_model.ir_version = ir_version
    too_large = _too_large(sub_model)
    if too_large:
        result.failures.append(f"{path or 'the main graph'} ({too_large})")
        return False
    try:
        if result.load is not None:
            result.load(sub_model)
        run = result.evaluate or (lambda m: ReferenceEvaluator(m).run(None, {}))
        values = run(sub_model) if needed else []
        # Converted before the graph changes: a failure here leaves the graph as it was.
        tensors = [
            numpy_helper.from_array(np.asarray(v), name)
            for name, v in zip(needed, values, strict=True)
        ]
        del values
    except Exception as exc:  # the reference evaluator raises many types; the model stays as is
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        result.failures.append(f"{path or 'the main graph'} ({msg[:120]})")
        return False
    folded = {id(n) for n in fold}
    remove_where(graph.node, lambda n: id(n) in folded)
    graph.initializer.extend(tensors)
    result.nodes += len(fold)
    result.tensors += len(needed)
    result.names.update(needed)
    decoded = _decoded(fold, known)
    result.decoded.update((n, decoded[n]) for n in needed if n in decoded)
    result.graphs.append(path)
    result.freed |= reads
    return True


_INT_ELEM_TYPES = frozenset(
    {
        onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT16,
        onnx.TensorProto.UINT16, onnx.TensorProto.INT4, onnx.TensorProto.UINT4,
    }
)  # fmt: skip


def _decoded(
    fold: list[onnx.NodeProto], known: dict[str, onnx.TensorProto | onnx.NodeProto | None]
) -> dict[str, str]:
    """Values of ``fold`` (in graph order) computed from a Cast of integer codes to float,
    each with the codes' dtype name."""
    out: dict[str, str] = {}
    for node in fold:
        src = None
        if node.op_type == "Cast":
            to = next((a.i for a in node.attribute if a.name == "to"), None)
            elem = _elem_type(known.get(node.input[0]))
            if elem in _INT_ELEM_TYPES and to in _FLOAT_BITS:
                src = onnx.helper.tensor_dtype_to_np_dtype(elem).name
        src = src or next((out[i] for i in node.input if i in out), None)
        if src is not None:
            out.update((o, src) for o in node.output if o)
    return out


def _too_large(sub_model: onnx.ModelProto) -> str | None:
    """Why evaluating ``sub_model`` would exceed the memory budget, or None.

    A few constant bytes can ask for gigabytes (a ``Pad`` by 100000, a ``Concat`` of
    a large constant with itself); ONNX shape inference with data propagation gives
    the sizes of the values before anything is computed. Unknown sizes pass.
    """
    from bitlens.core.limits import fmt_bytes, memory_budget

    try:
        inferred = onnx.shape_inference.infer_shapes(sub_model, data_prop=True)
    except Exception:
        return None
    total = 0
    values = {vi.name: vi for vi in [*inferred.graph.value_info, *inferred.graph.output]}
    for vi in values.values():
        tt = vi.type.tensor_type
        dims = tt.shape.dim
        if not tt.HasField("shape") or not all(d.HasField("dim_value") for d in dims):
            continue
        try:
            itemsize = helper.tensor_dtype_to_np_dtype(tt.elem_type).itemsize
        except (KeyError, ValueError, TypeError):
            itemsize = 8
        count = 1
        for d in dims:
            count *= max(int(d.dim_value), 0)
        total += count * itemsize
    # Each value is held about three times on its way in: the evaluator's array, the
    # array handed to from_array, and the initializer's raw bytes.
    need = 3 * total
    budget = memory_budget()
    if need > budget:
        return (
            f"the constants would need {fmt_bytes(need)}, over the memory budget of "
            f"{fmt_bytes(budget)}"
        )
    return None


def _reads(graph: onnx.GraphProto) -> Iterator[str]:
    yield from (o.name for o in graph.output)
    for node in graph.node:
        yield from node.input
        for _, g in subgraphs(node):
            yield from outer_names(g)


def _drop_unused(graph: onnx.GraphProto, freed: set[str]) -> None:
    """Remove the Constant nodes and initializers that only folded nodes read.

    Only names in ``freed`` are candidates: a constant the file already left
    unused stays, so the file's own accounting is unchanged.
    """
    reads = set(_reads(graph))
    inputs = {i.name for i in graph.input}

    def dead(name: str) -> bool:
        return name in freed and name not in reads and name not in inputs

    remove_where(graph.node, lambda n: is_constant_node(n) and dead(n.output[0]))
    remove_where(graph.initializer, lambda t: dead(t.name))
    for node in graph.node:
        for _, g in subgraphs(node):
            _drop_unused(g, freed)
