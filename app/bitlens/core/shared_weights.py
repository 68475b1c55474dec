"""Weights read by several layers: one weight format (and recovery) for all their readers.

PyTorch's exporter unrolls an ``nn.LSTMCell`` called in a loop into one Gemm per time step,
all reading the same initializers. The exported file holds each weight once, so its readers
cannot keep different formats: a plan that gave ``cell_0`` int8 and the other steps float
was exported (and simulated) with int8 for every step while the table said "float". Plans
therefore keep each group of readers at one weight choice (:func:`spread`, :func:`normalize`).
Activation formats stay per layer: each reader has its own input.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from bitlens.core.layer_names import listed
from bitlens.core.model.types import Layer, ModelInfo, WeightInfo

WeightKey = tuple[str, str]  # (graph path, name): one tensor of the file
MAX_GROUP_NOTES = 3  # more groups than this get one note (shared_notes)


def stored_readers(
    layers: Iterable[Layer], formats: Mapping[str, object | None] | None = None
) -> dict[WeightKey, tuple[str, WeightInfo]]:
    """Per weight, the reader whose weight format the exported file stores it in, with that
    reader's view of it (its axes): the first reader in model order whose format quantizes
    it, else its first reader (the weight stays float). The export writes the weight there
    and every other reader, a float one before it included, reads that stored form.
    ``formats``: layer name -> weight format (None: float); omitted, every reader quantizes
    (the readers of a plan's weight share one format, so its first reader stores it).

    The one rule the exporter, the byte totals (:func:`bitlens.core.weights.stored_bytes`)
    and the search's file sizes follow."""
    found: dict[WeightKey, tuple[str, WeightInfo, bool]] = {}
    for layer in layers:
        quantizes = formats is None or formats.get(layer.name) is not None
        for w in layer.weights:
            key = (w.graph_path, w.name)
            held = found.get(key)
            if held is None or (quantizes and not held[2]):
                found[key] = (layer.name, w, quantizes)
    return {key: (name, w) for key, (name, w, _) in found.items()}


def stored_by(info: ModelInfo) -> dict[str, tuple[WeightInfo, ...]]:
    """Per layer, the weights a plan's file stores in its format (:func:`stored_readers`
    with every reader quantizing): those it is the first to read; empty for a layer that
    only reads weights stored by earlier layers."""
    out: dict[str, list[WeightInfo]] = {layer.name: [] for layer in info.layers}
    for name, w in stored_readers(info.layers).values():
        out[name].append(w)
    return {name: tuple(ws) for name, ws in out.items()}


def weight_groups(info: ModelInfo) -> dict[str, tuple[str, ...]]:
    """Layer name -> the readers (in model order) of the weights it shares with other layers;
    layers whose weights no other layer reads are absent."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    first_reader: dict[tuple[str, str], str] = {}  # (graph path, weight name) -> layer
    for layer in info.layers:
        parent.setdefault(layer.name, layer.name)
        for w in layer.weights:
            other = first_reader.setdefault((w.graph_path, w.name), layer.name)
            parent[root(layer.name)] = root(other)
    members: dict[str, list[str]] = {}
    for layer in info.layers:
        members.setdefault(root(layer.name), []).append(layer.name)
    return {n: tuple(g) for g in members.values() if len(g) > 1 for n in g}


def one_per_group(info: ModelInfo, names: Iterable[str]) -> list[str]:
    """``names`` less the later readers of a weight group already represented: the sweep
    quantizes the shared tensor once, which is every reader's weights (one entry per group)."""
    groups = weight_groups(info)
    out: list[str] = []
    taken: set[tuple[str, ...]] = set()
    for name in names:
        group = groups.get(name)
        if group is None or group not in taken:
            out.append(name)
            if group is not None:
                taken.add(group)
    return out


def group_note(layer: str, names: tuple[str, ...]) -> str:
    """Why ``layer``'s weight cell follows the other readers' in ``names`` (window tooltip,
    CLI); the list names the others only (it named the layer itself among its "others")."""
    others = tuple(n for n in names if n != layer)
    return (
        f"{layer} shares its weights with {len(others)} other layer(s) ({listed(others, 4, quoted=False)}): "
        "the file stores them once, so all readers take one weight format"
    )


def groups_note(firsts: tuple[str, ...], groups: Mapping[str, tuple[str, ...]]) -> str:
    """One note for many groups, named by their first readers (the sweep of a Siamese
    VGG16 printed 13 lines of :func:`group_note`, one per pair of branches, before its
    table)."""
    readers = sum(len(groups[n]) for n in firsts)
    return (
        f"{len(firsts)} weights are each read by several layers ({readers} layers in all; "
        f"first readers {listed(firsts, 4, quoted=False)}): the file stores each once, so its readers take "
        "one weight format"
    )


def shared_notes(info: ModelInfo, layers: Collection[str] | None = None) -> list[str]:
    """:func:`group_note` for each group whose first reader is in ``layers`` (None: every
    layer), in model order; past ``MAX_GROUP_NOTES`` groups one :func:`groups_note`."""
    groups = weight_groups(info)
    firsts = tuple(
        n for n in info.layer_names
        if (layers is None or n in layers) and groups.get(n, ("",))[0] == n
    )  # fmt: skip
    if len(firsts) > MAX_GROUP_NOTES:
        return [groups_note(firsts, groups)]
    return [group_note(n, groups[n]) for n in firsts]


def normalize(
    info: ModelInfo, choices: Mapping[str, tuple[object, object]]
) -> tuple[dict[str, tuple[object, object]], list[str]]:
    """For each group whose readers disagree on (weight format, recovery), the choice of its
    first reader in model order that quantizes the weight, for all of them (where the other
    readers were float, what the export already wrote for the shared tensor). Returns the (weight, recovery) to
    set per layer that changes, and one note per group naming its layers."""
    fixed: dict[str, tuple[object, object]] = {}
    notes: list[str] = []
    seen: set[tuple[str, ...]] = set()
    none = (None, None)
    for group in weight_groups(info).values():
        if group in seen:
            continue
        seen.add(group)
        picks = [choices.get(n, none) for n in group]
        if len(set(picks)) == 1:
            continue
        at = next((i for i, p in enumerate(picks) if p[0] is not None), 0)
        win = picks[at]
        for n, p in zip(group, picks, strict=True):
            if p != win:
                fixed[n] = win
        fmt = "float" if win[0] is None else getattr(win[0], "name", str(win[0]))
        notes.append(
            f"layers {listed(group, 4, quoted=False)} read one weight and disagreed on its format: "
            f"all now take {fmt} (from {group[at]})"
        )
    return fixed, notes

