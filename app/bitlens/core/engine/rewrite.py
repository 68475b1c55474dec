"""The two graphs the engine runs, built once per activation-quantizer structure.

*Simulation graph*: the model with every quantizable weight turned into a
graph input (so a new format is one numpy quantization and one run, never
a rewrite), an activation quantizer in front of each layer whose plan has
one (parameters are inputs too), and every main-graph layer output and
layer activation exposed as an output.

*Local graph*: a copy of every main-graph layer on its own, reading the
cached **float** activations as inputs, with the same weight inputs and
the same activation quantizers: its outputs are each layer's error with
only that layer quantized ("local"), computed in one run for all layers.

Layers inside If/Loop/Scan bodies get their weights simulated but no
activation quantizers or per-layer outputs (ONNX cannot fetch values
from inside a subgraph).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
import onnx
from onnx import helper, numpy_helper

from bitlens.core.engine import lstm_nodes, quantizers, recovery_nodes
from bitlens.core.engine.graphs import (
    find_graph,
    node_producing,
    producers,
    remove_definitions,
    value_info,
)
from bitlens.core.engine.relu_fold import fold_relus
from bitlens.core.errors import EngineError
from bitlens.core.model.proto_copy import copy_but
from bitlens.core.model.types import Layer, ModelInfo, Storage, WeightInfo

Kinds = Mapping[str, str | None]  # layer name -> activation quantizer kind


# False: build_local finds each layer's node with its own scan of the graph (the
# straightforward path, for tests)
INDEXED_LOCAL = True


def act_prefix(layer: str, k: int) -> str:
    return f"{layer}__a{k}"


def extra_prefix(tensor: str) -> str:
    """Parameter prefix of the target's quantizer on ``tensor`` (bitlens.core.targets)."""
    return f"{tensor}__t"


def local_output(tensor: str) -> str:
    return f"{tensor}__local"


@dataclass(frozen=True)
class SimGraph:
    model: onnx.ModelProto
    layer_outputs: dict[str, str]  # main-graph layer -> its first output tensor
    # Every non-constant input of a main-graph layer (activations, LSTM initial states...)
    # that is not a model input, exposed as an output: the local graphs read their float values.
    activations: tuple[str, ...]


def main_layers(info: ModelInfo) -> list[Layer]:
    return [layer for layer in info.layers if not layer.graph_path]


def _check_kinds(info: ModelInfo, kinds: Kinds, opset: int) -> None:
    for name, kind in kinds.items():
        if kind is None or kind == lstm_nodes.KIND:
            continue
        layer = info.layer(name)
        if layer.graph_path:
            raise EngineError(
                f"layer {name!r} sits inside {layer.graph_path}; activation quantization "
                "inside If/Loop/Scan bodies is not supported (weights are)"
            )
        for act in layer.activations:
            t = info.value_info.get(act)
            if t is not None and t.dtype != "float32":
                raise EngineError(
                    f"layer {name!r}: activation quantization needs float32 activations; "
                    f"{act!r} is {t.dtype}"
                )
        need = recovery_nodes.min_opset(kind)
        if opset < need:
            raise EngineError(
                f"layer {name!r}: {kind} activations need opset {need}, the model is opset {opset}"
            )


def fed_constants(layer: Layer) -> tuple[WeightInfo, ...]:
    """The constants of a layer the engine feeds as graph inputs: its weights, and its
    main-graph bias initializers (bias correction feeds a changed bias, see
    bitlens.core.recovery)."""
    biases = tuple(
        b for b in layer.biases if not b.graph_path and b.storage is Storage.INITIALIZER
    )
    return (*layer.weights, *biases)


def reader_counts(info: ModelInfo) -> dict[str, int]:
    """How many node inputs (subgraphs' included) read each tensor."""
    readers: dict[str, int] = {}
    for node in info.nodes:
        for t in node.inputs:
            readers[t] = readers.get(t, 0) + 1
    return readers


def shared_biases(info: ModelInfo) -> dict[str, tuple[str, str]]:
    """Main-graph Gemm, Conv and MatMul (its bias is the Add constant after it,
    model/add_bias.py) layers whose fed bias other nodes read too: layer -> (bias, the
    graph input the layer reads it from in the engine's graphs).

    The export stores an int32 copy of such a bias per integer-kernel reader, each at that
    reader's s_x * s_w (export/bias.py); one fed tensor cannot carry several grids, so each
    reader gets its own input, fed the float bias or its own rounded copy (kernel_bias.py).
    On captcha-whisperer's CRNN 80 unrolled LSTMCell Gemms read one bias: with one float
    feed its W8A8 simulation differed from the exported file by 7e-5 relative."""
    readers = reader_counts(info)
    out: dict[str, tuple[str, str]] = {}
    for layer in main_layers(info):
        fed = fed_constants(layer)[len(layer.weights) :]
        if layer.op_type in BIASED and fed and readers.get(fed[0].name, 0) > 1:
            out[layer.name] = (fed[0].name, f"{fed[0].name}__of__{layer.name}")
    return out


def _split_shared_biases(graph: onnx.GraphProto, info: ModelInfo) -> list[onnx.ValueInfoProto]:
    """Each layer of :func:`shared_biases` reads its bias from its own input, in place;
    returns the new inputs. A bias no node reads any more stops being an input."""
    shared = shared_biases(info)
    if not shared:
        return []
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for t in n.input:
            consumers.setdefault(t, []).append(n)
    moved: dict[str, int] = {}
    added: list[onnx.ValueInfoProto] = []
    for name, (bias, alias) in shared.items():
        layer = info.layer(name)
        node = bias_reader(layer, producer, consumers)
        if node is None or list(node.input).count(bias) != 1:
            continue
        node.input[list(node.input).index(bias)] = alias
        moved[bias] = moved.get(bias, 0) + 1
        w = layer.biases[0]
        added.append(value_info(alias, w.dtype, w.shape))
    readers = reader_counts(info)
    gone = {b for b, k in moved.items() if readers.get(b, 0) == k}
    for i in reversed([i for i, v in enumerate(graph.input) if v.name in gone]):
        del graph.input[i]
    return added


BIASED = ("Gemm", "Conv", "MatMul")  # the layers whose bias the engine may feed per reader


def bias_reader(
    layer: Layer,
    producer: Mapping[str, onnx.NodeProto],
    consumers: Mapping[str, Sequence[onnx.NodeProto]],
) -> onnx.NodeProto | None:
    """The node reading ``layer``'s bias: the layer's own node, or for a MatMul the Add
    after it, also through float Casts (model/add_bias.py lists that Add's constant)."""
    if layer.op_type != "MatMul":
        return producer.get(layer.outputs[0])
    users = consumers.get(layer.outputs[0], [])
    while len(users) == 1 and users[0].op_type == "Cast":
        users = consumers.get(users[0].output[0], [])
    return users[0] if len(users) == 1 and users[0].op_type == "Add" else None


def _constant_names(g: onnx.GraphProto) -> set[str]:
    """Initializers and Constant-node outputs of the main graph."""
    return {t.name for t in g.initializer} | {
        o for n in g.node if n.op_type == "Constant" for o in n.output
    }


def copy_without_weights(
    proto: onnx.ModelProto, info: ModelInfo
) -> tuple[onnx.ModelProto, frozenset[str]]:
    """A copy of ``proto`` that leaves out the main graph's weight initializers.

    Copying them only to delete them cost a full copy of the weights (tens of ms per 50 MB,
    all of it holding the GIL, so the window froze while a worker built a session).
    Weights stored in subgraphs or as Constant nodes are still copied;
    :func:`weights_to_inputs` removes them. Returns the copy and the names left out.
    """
    skip = {
        w.name
        for layer in info.layers
        for w in fed_constants(layer)
        if not w.graph_path and w.storage is not Storage.CONSTANT
    }
    model = onnx.ModelProto()
    copy_but(proto, model, ("graph",))
    copy_but(proto.graph, model.graph, ("initializer",))
    model.graph.initializer.extend(t for t in proto.graph.initializer if t.name not in skip)
    return model, frozenset(t.name for t in proto.graph.initializer if t.name in skip)


def weights_to_inputs(
    model: onnx.ModelProto, info: ModelInfo, left_out: frozenset[str] = frozenset()
) -> None:
    """Turn every quantizable weight into a main-graph input, in place (one pass per graph).
    ``left_out``: main-graph weight initializers :func:`copy_without_weights` did not copy."""
    g = model.graph
    weights: dict[str, WeightInfo] = {}
    by_graph: dict[str, tuple[set[str], set[str]]] = {}
    for layer in info.layers:
        for w in fed_constants(layer):
            if w.name in weights:
                continue
            weights[w.name] = w
            inits, consts = by_graph.setdefault(w.graph_path, (set(), set()))
            (consts if w.storage is Storage.CONSTANT else inits).add(w.name)
    for path, (inits, consts) in by_graph.items():
        sub = find_graph(g, path)
        if not path and left_out:
            inits = inits - left_out
            # the input entries old IR versions add for initializers
            for i in reversed([i for i, v in enumerate(g.input) if v.name in left_out]):
                del g.input[i]
        found = remove_definitions(sub, inits, consts)
        missing = (inits | consts) - found
        if missing:
            raise EngineError(
                f"weight {sorted(missing)[0]!r} is not defined where the inventory says"
            )
    g.input.extend(value_info(w.name, w.dtype, w.shape) for w in weights.values())


# Quantizer nodes and parameter inputs, kept: a new structure rebuilt the same protos for
# every layer (a third of build_sim's 6 ms on a CRNN). Callers only copy them into graphs
# (RepeatedCompositeContainer.extend copies), never change them.
@lru_cache(maxsize=1 << 14)
def _input_nodes(kind: str, x: str, y: str, prefix: str) -> tuple[tuple, quantizers.QuantizerIO]:
    nodes, io = recovery_nodes.input_nodes(kind, x, y, prefix)
    return tuple(nodes), io


@lru_cache(maxsize=1 << 14)
def _target_nodes(
    x: str, y: str, prefix: str, kind: str = "int"
) -> tuple[tuple, quantizers.QuantizerIO]:
    nodes, io = quantizers.build(kind, x, y, prefix)
    return tuple(nodes), io


@lru_cache(maxsize=1 << 16)
def _param_input(name: str) -> onnx.ValueInfoProto:
    return value_info(name, np.float32, None)


def _insert_quantizers(
    graph: onnx.GraphProto,
    info: ModelInfo,
    kinds: Kinds,
    suffix: str,
    skip: Collection[tuple[str, str]] = (),
) -> list[onnx.ValueInfoProto]:
    """Insert activation quantizers before their layers, except the (layer, activation)
    pairs in ``skip`` (see :func:`bitlens.core.engine.requantize.redundant_quantizers`);
    returns the parameter inputs."""
    inserts: dict[int, list[onnx.NodeProto]] = {}
    params: list[onnx.ValueInfoProto] = []
    # one pass for every layer's node (a scan per layer cost 2 ms per graph on a CRNN)
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output}
    for layer in main_layers(info):
        kind = kinds.get(layer.name)
        if kind is None or kind == lstm_nodes.KIND:  # the kernel quantizes its input itself
            continue
        if layer.outputs[0] not in producer:
            raise EngineError(f"no node produces {layer.outputs[0]!r}")
        idx = producer[layer.outputs[0]]
        node = graph.node[idx]
        for k, act in enumerate(layer.activations):
            if (layer.name, act) in skip:
                continue
            prefix = act_prefix(layer.name, k)
            y = f"{act}__{suffix}__{layer.name}"
            nodes, io = _input_nodes(kind, act, y, prefix)
            for i, name in enumerate(node.input):
                if name == act:
                    node.input[i] = y
            inserts.setdefault(idx, []).extend(nodes)
            params.extend(_param_input(p) for p in io.params)
    if inserts:
        new_nodes: list[onnx.NodeProto] = []
        for i, node in enumerate(graph.node):
            new_nodes.extend(inserts.get(i, []))
            new_nodes.append(node)
        del graph.node[:]
        graph.node.extend(new_nodes)
    return params


def _insert_tensor_quantizers(
    graph: onnx.GraphProto, tensors: Sequence[str], kind: str = "int"
) -> list[onnx.ValueInfoProto]:
    """Quantize each of ``tensors`` where it is produced; every main-graph consumer (layer
    quantizers included) reads the result. Returns the parameter inputs."""
    wanted = set(tensors)
    renamed = {t: f"{t}__tq" for t in tensors}
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in wanted:
                node.input[i] = renamed[name]
    at: dict[int, list[onnx.NodeProto]] = {}
    params: list[onnx.ValueInfoProto] = []
    producers = {o: i for i, n in enumerate(graph.node) for o in n.output}
    for t in tensors:
        nodes, io = _target_nodes(t, renamed[t], extra_prefix(t), kind)
        at.setdefault(producers.get(t, -1), []).extend(nodes)
        params.extend(_param_input(p) for p in io.params)
    new_nodes: list[onnx.NodeProto] = list(at.get(-1, []))
    for i, node in enumerate(graph.node):
        new_nodes.append(node)
        new_nodes.extend(at.get(i, []))
    del graph.node[:]
    graph.node.extend(new_nodes)
    return params


@dataclass(frozen=True)
class SimBase:
    """What every simulation graph of a model shares, built once (:func:`sim_base`): the
    model with its weights as inputs and shared biases split, before any quantizer, and
    the outputs every simulation graph exposes. A new structure copies it (protobuf's
    ``CopyFrom``, no weights in it) instead of redoing those steps: they, reading the
    external tensors again and the outputs' value infos cost 4-5 ms of a new structure's
    13 ms on a 46-layer CRNN (the first change of a layer to int4 under ort-cpu)."""

    model: onnx.ModelProto
    layer_outputs: dict[str, str]
    activations: tuple[str, ...]
    outputs: tuple[onnx.ValueInfoProto, ...]  # the layer outputs and activations exposed
    info: ModelInfo
    # what a run of any structure may fetch: the model's outputs, the layer outputs and
    # the tensors exposed on request (an activation is fetched from the float graph only)
    fetched: frozenset[str] = frozenset()

    def value_info(self, name: str) -> onnx.ValueInfoProto:
        """:func:`value_info_for` of a tensor (kept per name: the structure's cut tensors
        are exposed as outputs too)."""
        found = self._value_infos.get(name)
        if found is None:
            found = self._value_infos[name] = _value_info_for(self.info, name)
        return found

    @cached_property
    def _value_infos(self) -> dict[str, onnx.ValueInfoProto]:
        return {v.name: v for v in self.outputs}


def sim_base(proto: onnx.ModelProto, info: ModelInfo, expose: Sequence[str] = ()) -> SimBase:
    """The shared part of every simulation graph of ``proto`` (see :class:`SimBase`);
    ``expose``: further tensors every simulation graph fetches."""
    model, left_out = copy_without_weights(proto, info)
    weights_to_inputs(model, info, left_out)
    g = model.graph
    g.input.extend(_split_shared_biases(g, info))
    # Quantizer parameters and created biases added later are never a layer's input, so
    # the activations found here are those of every structure.
    model_inputs = {v.name for v in g.input}
    layer_outputs: dict[str, str] = {}
    activations: list[str] = []
    weights = {w.name for layer in info.layers for w in fed_constants(layer)}
    consts = _constant_names(g)
    for layer in main_layers(info):
        layer_outputs[layer.name] = layer.outputs[0]
        for a in layer.inputs:
            if a and a not in model_inputs | weights | consts and a not in activations:
                activations.append(a)
    existing = {v.name for v in g.output}
    outputs: list[onnx.ValueInfoProto] = []
    for t in [*layer_outputs.values(), *activations, *expose]:
        if t not in existing:
            existing.add(t)
            outputs.append(_value_info_for(info, t))
    fetched = frozenset([*(v.name for v in proto.graph.output), *layer_outputs.values(), *expose])
    return SimBase(model, layer_outputs, tuple(activations), tuple(outputs), info, fetched)


def build_sim(
    proto: onnx.ModelProto,
    info: ModelInfo,
    kinds: Kinds,
    tensors: Sequence[str] = (),
    skip: Collection[tuple[str, str]] = (),
    qdq: bool = True,
    expose: Sequence[str] = (),
    base: SimBase | None = None,
    fold: bool = True,
) -> SimGraph:
    """The simulation graph; ``tensors`` are quantized where produced (a deployment target's
    extra quantizers, of kind quantizers.target_kind: ``qdq`` False keeps the float chain),
    ``expose`` are additional tensors to fetch; the layer quantizers of the (layer,
    activation) pairs in ``skip`` are left out (exact identities: the target quantizes that
    activation in the same format and range, requantize.py). ``base``: :func:`sim_base` of
    ``proto`` and ``info``, kept by the caller (default: built here). ``fold``: a Relu read
    only by a quantizer is folded into it (exact, relu_fold.py); False keeps it."""
    _check_kinds(info, kinds, info.opset)
    if base is None:
        base = sim_base(proto, info)
    model = onnx.ModelProto()
    model.CopyFrom(base.model)
    g = model.graph
    g.input.extend(_insert_quantizers(g, info, kinds, "q", skip))
    g.input.extend(recovery_nodes.add_created_biases(g, info, kinds))
    kernels = [info.layer(n) for n, k in kinds.items() if k == lstm_nodes.KIND]
    if kernels:
        g.input.extend(lstm_nodes.add_kernels(g, kernels))
        lstm_nodes.with_domain(model)
    if tensors:
        kind = quantizers.target_kind(info.opset, qdq)
        g.input.extend(_insert_tensor_quantizers(g, tensors, kind))
    existing = {v.name for v in g.output}
    g.output.extend(v for v in base.outputs if v.name not in existing)
    existing.update(v.name for v in base.outputs)
    if fold:
        existing.difference_update(fold_relus(g, base.fetched | set(expose)))
    for t in expose:
        if t not in existing:
            existing.add(t)
            g.output.append(_value_info_for(info, t))
    return SimGraph(model, dict(base.layer_outputs), base.activations)


def value_info_for(info: ModelInfo, name: str) -> onnx.ValueInfoProto:
    """A ValueInfo for a tensor of ``info`` (float of unknown shape when not inferred)."""
    return _value_info_for(info, name)


def _value_info_for(info: ModelInfo, name: str) -> onnx.ValueInfoProto:
    t = info.value_info.get(name)
    if t is None:
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    return value_info(name, t.dtype, t.shape)


def build_local(
    proto: onnx.ModelProto,
    info: ModelInfo,
    kinds: Kinds,
    input_types: Mapping[str, tuple[np.dtype, int]],
    constant: Callable[[str], np.ndarray],
    layers: Sequence[str] | None = None,
    input_dims: Callable[[str], tuple[int | str | None, ...] | None] | None = None,
) -> onnx.ModelProto:
    """The local graph of ``layers`` (default: every main-graph layer).

    ``input_types`` gives dtype and rank of each float activation, ``constant(name)``
    the value of a constant (bias, shape...) input, ``input_dims(name)`` the dims its
    values have on every feed the graph runs on (None: unknown). ONNX Runtime runs every
    node of a graph whatever is fetched, so the engine builds one small graph per layer.
    Declared with their dims, the captured inputs let ONNX Runtime build the session of
    a 200-layer MatMul stack's local graph in 150 ms of CPU instead of 400 (of unknown
    dims; docs/benchmarks.md, "depthrows, session 16").
    """
    _check_kinds(info, kinds, info.opset)
    g = proto.graph
    weight_names = {w.name: w for layer in info.layers for w in fed_constants(layer)}
    const_names = _constant_names(g)
    nodes: list[onnx.NodeProto] = []
    inputs: dict[str, onnx.ValueInfoProto] = {}
    inits: dict[str, onnx.TensorProto] = {}
    outputs: list[onnx.ValueInfoProto] = []
    wanted = None if layers is None else set(layers)
    # Each layer's node from one pass over the graph: with a scan of the nodes per layer
    # (node_producing) and per constant, PP-OCRv4 rec's bulk local graph (744 nodes, 47
    # layers; rapidocr-onnxruntime 1.4.4) took 23 ms of CPU to build, 7 ms with the index,
    # on the first evaluation's critical path (docs/benchmarks.md, "floors, session 16").
    # One layer's graph scans once.
    made = producers(g) if INDEXED_LOCAL and (wanted is None or len(wanted) > 1) else {}
    shared = shared_biases(info)
    weight_names.update({alias: weight_names[bias] for bias, alias in shared.values()})
    for layer in main_layers(info):
        if wanted is not None and layer.name not in wanted:
            continue
        orig = made.get(layer.outputs[0])
        if orig is None:
            _, orig = node_producing(g, layer.outputs[0])
        node = onnx.NodeProto()
        node.CopyFrom(orig)
        node.name = f"{orig.name or layer.name}__local"
        if layer.name in shared:  # its own bias input, as in the simulation graph
            bias, alias = shared[layer.name]
            node.input[:] = [alias if n == bias else n for n in node.input]
        kind = kinds.get(layer.name)
        if kind == lstm_nodes.KIND:  # the kernel, as in the simulation graph
            node.CopyFrom(lstm_nodes.kernel_node(node, layer))
            inputs.update((v.name, v) for v in lstm_nodes.kernel_inputs(layer))
            kind = None  # and no quantizer: the kernel quantizes its input itself
        for name in node.input:
            if not name or name in inputs:
                continue
            if name in weight_names:
                w = weight_names[name]
                inputs.setdefault(name, value_info(name, w.dtype, w.shape))
            elif name in const_names:
                inits.setdefault(name, numpy_helper.from_array(constant(name), name))
            else:
                if name not in input_types:
                    raise EngineError(f"layer {layer.name!r}: no captured value for input {name!r}")
                dt, rank = input_types[name]
                dims = None if input_dims is None else input_dims(name)
                if dims is None or len(dims) != rank:
                    dims = tuple([None] * rank)
                inputs.setdefault(name, value_info(name, dt, dims))
        if kind is not None:
            for k, act in enumerate(layer.activations):
                y = f"{act}__lq__{layer.name}"
                qnodes, io = recovery_nodes.input_nodes(kind, act, y, act_prefix(layer.name, k))
                # Parameter names match the simulation graph's: one set of feeds serves both.
                nodes.extend(qnodes)
                for p in io.params:
                    inputs.setdefault(p, value_info(p, np.float32, None))
                for i, name in enumerate(node.input):
                    if name == act:
                        node.input[i] = y
        for i, out in enumerate(node.output):
            if out:
                node.output[i] = local_output(out)
        nodes.extend(recovery_nodes.add_created_biases_local(node, layer, kind, inputs))
        ref = _value_info_for(info, layer.outputs[0])
        ref.name = local_output(layer.outputs[0])
        outputs.append(ref)
    graph = helper.make_graph(
        nodes, "bitlens_local", list(inputs.values()), outputs, initializer=list(inits.values())
    )
    local = helper.make_model(graph, opset_imports=list(proto.opset_import))
    local.ir_version = proto.ir_version
    if any(k == lstm_nodes.KIND for k in kinds.values()):
        lstm_nodes.with_domain(local)
    return local
