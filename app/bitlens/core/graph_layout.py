"""Layered drawing of a model graph (a DAG), without Qt.

The graph view draws nodes top to bottom in layers. This module computes
where: longest-path layering (a node sits one layer below its deepest
predecessor), dummy points on edges that span several layers so they
route between nodes instead of through them, then a few sweeps of
barycentre ordering (each node moves towards the mean position of its
neighbours in the adjacent layer) to cut down edge crossings. Every step
is linear in nodes + edges per sweep, so a few thousand nodes lay out in
well under a second.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise

from bitlens.core.model.types import ModelInfo

SWEEPS = 6  # down-and-up passes of barycentre ordering; more rarely helps
# Above this many layout entries (nodes + dummies), one down-and-up pass only: big graphs
# are mostly chains, and each pass costs a sort per layer.
BIG = 5000


@dataclass(frozen=True)
class NodePlace:
    name: str
    layer: int  # 0 at the top
    order: int  # position within the layer, 0 at the left
    x: float  # centre, in units of one node slot
    y: float


@dataclass(frozen=True)
class EdgeRoute:
    src: str
    dst: str
    tensor: str
    # From the src centre through dummy points to the dst centre. Long edges from one
    # node share a trunk: only the deepest one runs the whole way; the others start
    # where they branch off it (``branched`` is then True).
    points: tuple[tuple[float, float], ...]
    branched: bool = False


@dataclass(frozen=True)
class GraphLayout:
    nodes: dict[str, NodePlace]
    edges: tuple[EdgeRoute, ...]
    n_layers: int
    width: float  # slots across the widest layer

    def place(self, name: str) -> NodePlace:
        return self.nodes[name]


def layout_graph(
    names: Sequence[str],
    edges: Iterable[tuple[str, str, str]],
    *,
    x_gap: float = 1.0,
    y_gap: float = 1.0,
    sweeps: int = SWEEPS,
) -> GraphLayout:
    """Lay out nodes ``names`` (in a topological order where possible) joined by
    ``edges`` given as ``(src, dst, tensor)``.

    Endpoints not in ``names`` are added as nodes (model inputs and outputs).
    A cycle (not possible in a valid ONNX graph, but files are not always
    valid) is broken by ignoring the edges that close it.
    """
    order_in: list[str] = list(dict.fromkeys(names))
    idx = {n: i for i, n in enumerate(order_in)}
    edge_list = [(s, d, t) for s, d, t in edges if s != d]
    for s, d, _ in edge_list:
        for n in (s, d):
            if n not in idx:
                idx[n] = len(order_in)
                order_in.append(n)
    n_nodes = len(order_in)
    succ: list[list[int]] = [[] for _ in range(n_nodes)]
    pred_count = [0] * n_nodes
    unique: dict[tuple[int, int], str] = {}
    for s, d, t in edge_list:
        key = (idx[s], idx[d])
        if key not in unique:
            unique[key] = t
    for a, b in unique:
        succ[a].append(b)
        pred_count[b] += 1

    rank, topo = _longest_path_ranks(n_nodes, succ, pred_count)
    _sink(rank, topo, succ, pred_count)
    layers, routes = _with_dummies(rank, unique)
    _order(layers, routes, sweeps if sum(map(len, layers)) <= BIG else 1)

    pos: dict[int, tuple[int, int]] = {}
    width = max((len(layer) for layer in layers), default=0)
    for li, layer in enumerate(layers):
        for oi, v in enumerate(layer):
            pos[v] = (li, oi)

    def xy(v: int) -> tuple[float, float]:
        li, oi = pos[v]
        offset = (width - len(layers[li])) / 2.0  # centre each layer under the widest
        return ((offset + oi + 0.5) * x_gap, li * y_gap)

    places = {}
    for v in range(n_nodes):
        x, y = xy(v)
        places[order_in[v]] = NodePlace(order_in[v], pos[v][0], pos[v][1], x, y)
    deepest: dict[int, int] = {}  # source -> length of its longest chain of dummies
    for (a, _b), chain in routes.items():
        if chain:
            deepest[a] = max(deepest.get(a, 0), len(chain))
    out_edges = []
    drawn_trunk: set[int] = set()
    for (a, b), chain in routes.items():
        if chain is None:
            continue  # an edge closing a cycle: not drawn
        if chain and (len(chain) < deepest[a] or a in drawn_trunk):
            pts = tuple(xy(v) for v in (chain[-1], b))  # the trunk is drawn once
            out_edges.append(EdgeRoute(order_in[a], order_in[b], unique[(a, b)], pts, True))
            continue
        if chain:
            drawn_trunk.add(a)
        pts = tuple(xy(v) for v in (a, *chain, b))
        out_edges.append(EdgeRoute(order_in[a], order_in[b], unique[(a, b)], pts))
    return GraphLayout(places, tuple(out_edges), len(layers), width * x_gap)


HIDDEN_OPS = frozenset({"Constant"})  # data, not computation: drawn as part of their consumer


def layout_model(info: ModelInfo, **kw: float) -> GraphLayout:
    """The layout of a model's nodes and edges (inputs and outputs included).

    Constant nodes are left out, as initializers are: an exported transformer has
    dozens, each a box with an edge reaching across the whole graph.
    """
    hidden = {n.name for n in info.nodes if n.op_type in HIDDEN_OPS}
    inputs = [f"input:{t.name}" for t in info.inputs]
    names = [*inputs, *(n.name for n in info.nodes if n.name not in hidden)]
    edges = ((e.src, e.dst, e.tensor) for e in info.edges if e.src not in hidden)
    return layout_graph(names, edges, **kw)  # type: ignore[arg-type]


# -- steps --------------------------------------------------------------------------------


def _longest_path_ranks(
    n: int,
    succ: list[list[int]],
    pred_count: list[int],
) -> tuple[list[int], list[int]]:
    """Kahn's algorithm in the given order; rank = 1 + deepest predecessor's rank.

    Nodes held up by a cycle are released one at a time, lowest index first; the
    edges that close the cycle then point upwards and :func:`_with_dummies` drops them.
    Returns the ranks and the order in which nodes were visited (topological).
    """
    remaining = list(pred_count)
    rank = [0] * n
    done = [False] * n
    queue = deque(i for i in range(n) if remaining[i] == 0)
    visited = 0
    next_forced = 0
    topo: list[int] = []
    while visited < n:
        if not queue:
            while done[next_forced]:
                next_forced += 1
            queue.append(next_forced)  # break a cycle
            remaining[next_forced] = 0
        v = queue.popleft()
        if done[v]:
            continue
        done[v] = True
        visited += 1
        topo.append(v)
        for w in succ[v]:
            if done[w]:
                continue
            rank[w] = max(rank[w], rank[v] + 1)
            remaining[w] -= 1
            if remaining[w] == 0:
                queue.append(w)
    return rank, topo


def _sink(rank: list[int], topo: list[int], succ: list[list[int]], pred_count: list[int]) -> None:
    """Move nodes down next to their consumers where that does not lengthen edges overall.

    Longest-path layering puts every source at the top: the Constant nodes and
    shape computations of an exported transformer would hang from the first row
    with edges dozens of layers long. A node with at least as many outputs as
    inputs moves to just above its highest consumer (bottom-up, so chains follow).
    """
    for v in reversed(topo):
        outs = [w for w in succ[v] if rank[w] > rank[v]]
        if not outs or len(outs) != len(succ[v]) or len(succ[v]) < pred_count[v]:
            continue
        rank[v] = max(rank[v], min(rank[w] for w in outs) - 1)


def _with_dummies(
    rank: list[int], edges: dict[tuple[int, int], str]
) -> tuple[list[list[int]], dict[tuple[int, int], list[int] | None]]:
    """Layers of node ids (dummies numbered after the real nodes) and, per edge, the
    dummies it passes through; None for an edge pointing upwards (a broken cycle).

    All long edges leaving one node share one trunk of dummies down to its deepest
    consumer and branch off above each consumer: an attention mask feeding every
    block of a transformer costs one column, not one per block.
    """
    n = len(rank)
    n_layers = max(rank, default=-1) + 1
    layers: list[list[int]] = [[] for _ in range(n_layers)]
    for v in range(n):  # input order within each layer: a good start for the ordering
        layers[rank[v]].append(v)
    routes: dict[tuple[int, int], list[int] | None] = {}
    targets: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        if rank[b] <= rank[a]:
            routes[(a, b)] = None
        else:
            targets[a].append(b)
    next_id = n
    for a, bs in targets.items():
        trunk: dict[int, int] = {}
        for r in range(rank[a] + 1, max(rank[b] for b in bs)):
            layers[r].append(next_id)
            trunk[r] = next_id
            next_id += 1
        for b in bs:
            routes[(a, b)] = [trunk[r] for r in range(rank[a] + 1, rank[b])]
    return layers, routes


def _order(
    layers: list[list[int]], routes: dict[tuple[int, int], list[int] | None], sweeps: int
) -> None:
    """Barycentre ordering, in place: alternate downward and upward sweeps."""
    up: dict[int, set[int]] = defaultdict(set)  # node -> neighbours one layer above
    down: dict[int, set[int]] = defaultdict(set)
    for (a, b), chain in routes.items():
        if chain is None:
            continue
        path = [a, *chain, b]
        for u, v in pairwise(path):  # sets: edges sharing a trunk count it once
            down[u].add(v)
            up[v].add(u)
    position: dict[int, float] = {}
    for layer in layers:
        for i, v in enumerate(layer):
            position[v] = float(i)
    for sweep in range(sweeps):
        downward = sweep % 2 == 0
        seq = range(1, len(layers)) if downward else range(len(layers) - 2, -1, -1)
        neighbours = up if downward else down
        for li in seq:
            layer = layers[li]
            keyed = []
            for i, v in enumerate(layer):
                nb = neighbours.get(v)
                # A node with no neighbour on that side keeps its place.
                bary = sum(position[u] for u in nb) / len(nb) if nb else position[v]
                keyed.append((bary, i, v))
            keyed.sort()
            layer[:] = [v for _, _, v in keyed]
            for i, v in enumerate(layer):
                position[v] = float(i)
