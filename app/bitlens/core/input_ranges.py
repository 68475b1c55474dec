"""What values random data gives an integer input, read from how the graph uses it.

Token ids must stay inside the table they index, and masks must keep positions: random
integers from an arbitrary range made a transformer compute NaN and fed Magika's one-hot
nothing but bytes 0..9.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from bitlens.core.dims import MissingDimension, concrete_shape
from bitlens.core.model.types import ModelInfo, NodeInfo


def index_ranges(info: ModelInfo) -> dict[str, int]:
    """Input name -> exclusive upper bound of the indices it holds: an embedding's rows
    (``Gather``) or a one-hot's depth (``Equal`` with a constant table)."""
    return {**onehot_depths(info), **vocab_sizes(info)}


def mask_inputs(info: ModelInfo) -> frozenset[str]:
    """Integer or boolean inputs used as a mask whatever their name: the value (through
    reshapes and casts) is subtracted from a constant, as BERT-style models turn a mask into
    the bias ``(1 - mask) * large_negative`` (transformers' ``get_extended_attention_mask``).
    PyTorch names such an input after its first consumer (sudachi-b-imitator's ALBERT:
    ``onnx::Unsqueeze_1``), and random ids there made the float model compute NaN."""
    produced, consumers = _graph_values(info)
    found = set()
    for t in info.inputs:
        if t.dtype not in _INTEGER_TYPES | {"bool"}:
            continue
        for name, n in _uses(t.name, consumers):
            if n.op_type == "Sub" and n.inputs[1:2] == (name,) and n.inputs[0] not in produced:
                found.add(t.name)
                break
    return frozenset(found)


def is_mask(name: str) -> bool:
    """An attention or padding mask (``attention_mask``, ``src_mask``, ``mask``): 1 keeps a
    position (https://huggingface.co/docs/transformers/glossary#attention-mask). Random
    values there are wrong twice: a value above 1 overflows the large negative bias the
    model adds for masked positions (MiniLM then computes NaN), and a row all 0 masks
    everything. Random inputs attend to every position."""
    return "mask" in name.lower()


_INTEGER_TYPES = frozenset(
    {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
)
_SAME_VALUES = frozenset(
    {"Reshape", "Expand", "Unsqueeze", "Squeeze", "Cast", "Identity", "Flatten"}
)


def onehot_depths(info: ModelInfo) -> dict[str, int]:
    """Input name -> one-hot depth, for integer inputs compared (``Equal``) with a constant
    table of indices: a JAX/TF one-hot as tf2onnx writes it (Magika's bytes 0..256 against a
    ``[1, 1, 257]`` constant). The depth is the comparison's last axis."""
    produced, consumers = _graph_values(info)
    graph_inputs = {t.name for t in info.inputs}
    out: dict[str, int] = {}
    for t in info.inputs:
        if t.dtype not in _INTEGER_TYPES:
            continue
        for name, n in _uses(t.name, consumers):
            if n.op_type == "Equal" and len(n.inputs) == 2:
                other = n.inputs[1] if n.inputs[0] == name else n.inputs[0]
                shape = (info.value_info.get(n.outputs[0]) or t).shape or ()
                depth = shape[-1] if shape else None
                if (
                    other not in produced
                    and other not in graph_inputs
                    and (isinstance(depth, int) and depth > 1)
                ):
                    out[t.name] = depth
                    break
    return out


def _graph_values(info: ModelInfo) -> tuple[set[str], dict[str, list[NodeInfo]]]:
    """Values some node computes (Constant outputs are constants), and the main graph's
    consumers of each value."""
    produced = {o for n in info.nodes if n.op_type != "Constant" for o in n.outputs}
    consumers: dict[str, list[NodeInfo]] = {}
    for n in info.nodes:
        if not n.graph_path:
            for i in n.inputs:
                consumers.setdefault(i, []).append(n)
    return produced, consumers


def _uses(start: str, consumers: dict[str, list[NodeInfo]]) -> Iterator[tuple[str, NodeInfo]]:
    """(value, node) for each node reading ``start`` or a copy of it through ops that keep
    its values (reshapes, casts); those ops themselves are followed, not yielded."""
    frontier, seen = [start], set()
    while frontier:
        name = frontier.pop()
        for n in consumers.get(name, ()):
            if n.name in seen:
                continue
            seen.add(n.name)
            if n.op_type in _SAME_VALUES and n.inputs[0] == name:
                frontier.extend(n.outputs)
            else:
                yield name, n


def vocab_sizes(info: ModelInfo) -> dict[str, int]:
    """Input name -> vocabulary size, for integer inputs that index an embedding."""
    out: dict[str, int] = {}
    for layer in info.layers:
        if layer.op_type == "Gather" and layer.weights and len(layer.inputs) > 1:
            out[layer.inputs[1]] = layer.weights[0].shape[0]
    return out


_RECURRENT = frozenset({"RNN", "GRU", "LSTM"})


def sequence_lengths(info: ModelInfo, dims: Mapping[str, int]) -> dict[str, int]:
    """Input name -> the sequence length, for integer inputs that are an RNN/GRU/LSTM's
    ``sequence_lens`` (input 4, through reshapes and casts), where that node's X has a
    known time axis (axis 0: ONNX Runtime's CPU kernels take no ``layout=1``). Each value
    must lie in [0, seq_length] (ORT refuses others: "Invalid value/s in sequence_lens"),
    and random integers below 10 were past a 7-step sequence or 0, an empty one; random
    inputs give every sequence its full length, as a padding mask gives all ones."""
    _, consumers = _graph_values(info)
    graph_inputs = {t.name: t for t in info.inputs}
    out: dict[str, int] = {}
    for t in info.inputs:
        if t.dtype not in _INTEGER_TYPES:
            continue
        for name, n in _uses(t.name, consumers):
            if n.op_type not in _RECURRENT or n.inputs[4:5] != (name,):
                continue
            x = graph_inputs.get(n.inputs[0]) or info.value_info.get(n.inputs[0])
            if x is None or not x.shape:
                continue
            if isinstance(x.shape[0], int) and x.shape[0] > 0:
                out[t.name] = x.shape[0]
            elif n.inputs[0] in graph_inputs:
                try:
                    out[t.name] = concrete_shape(x, dims)[0]
                except MissingDimension:  # a size not given: random integers, as before
                    continue
            break
    return out
