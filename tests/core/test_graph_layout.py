"""Layered graph layout: layering, edge routes, ordering, cycles, speed-insensitive size."""

from __future__ import annotations

from itertools import pairwise

from bitlens.core.graph_layout import layout_graph, layout_model
from bitlens.core.model.loader import from_proto
from tests.core.engine_models import small_cnn


def _crossings(layout, a_layer: int) -> int:
    """Edge crossings between layer a and a+1 (edges as segments between slots)."""
    segs = []
    for e in layout.edges:
        for (x0, y0), (x1, y1) in pairwise(e.points):
            if y0 == a_layer and y1 == a_layer + 1:
                segs.append((x0, x1))
    return sum(
        1
        for i, (a0, a1) in enumerate(segs)
        for b0, b1 in segs[i + 1 :]
        if (a0 - b0) * (a1 - b1) < 0
    )


def test_longest_path_layers_and_routes() -> None:
    """
    a -> b -> c -> d
    a ---------> d      (spans three layers: two dummy points)
    """
    lay = layout_graph(
        ["a", "b", "c", "d"], [("a", "b", "t1"), ("b", "c", "t2"), ("c", "d", "t3"), ("a", "d", "s")]
    )
    assert [lay.place(n).layer for n in "abcd"] == [0, 1, 2, 3]
    skip = next(e for e in lay.edges if e.tensor == "s")
    assert len(skip.points) == 4  # a, two dummies, d
    assert [y for _, y in skip.points] == [0, 1, 2, 3]
    # the dummies sit beside b and c, not on top of them
    assert skip.points[1][0] != lay.place("b").x


def test_unknown_endpoints_become_nodes_and_sources_sink() -> None:
    """input:x -> n1 -> n2 -> n3 ; k (a source with one consumer) -> n3"""
    lay = layout_graph(
        ["n1", "n2", "n3", "k"],
        [("input:x", "n1", "x"), ("n1", "n2", "a"), ("n2", "n3", "b"), ("k", "n3", "c")],
    )
    assert "input:x" in lay.nodes
    assert lay.place("k").layer == lay.place("n3").layer - 1  # pulled next to its consumer
    assert all(len(e.points) == 2 for e in lay.edges)  # so no edge needs a dummy


def test_barycentre_ordering_removes_avoidable_crossings() -> None:
    """Two parallel chains given in an order that crosses: a1->b2, a2->b1 become straight."""
    names = ["a1", "a2", "b1", "b2", "c1", "c2"]
    edges = [("a1", "b2", "x"), ("a2", "b1", "y"), ("b1", "c2", "z"), ("b2", "c1", "w")]
    lay = layout_graph(names, edges)
    assert _crossings(lay, 0) == 0 and _crossings(lay, 1) == 0


def test_cycle_is_broken_not_fatal() -> None:
    lay = layout_graph(["a", "b", "c"], [("a", "b", "1"), ("b", "c", "2"), ("c", "a", "3")])
    assert len(lay.nodes) == 3
    assert {e.tensor for e in lay.edges} == {"1", "2"}  # the closing edge is not drawn


def test_layout_of_a_model_has_inputs_outputs_and_every_node() -> None:
    info = from_proto(small_cnn()).info
    lay = layout_model(info)
    assert {"input:x", "output:y"} <= set(lay.nodes)
    assert {n.name for n in info.nodes} <= set(lay.nodes)
    assert lay.place("input:x").layer == 0
    assert lay.place("output:y").layer == lay.n_layers - 1
    assert lay.width == 1.0  # a chain


def test_large_graph_stays_linear_in_size() -> None:
    """A 3000-node chain with skips lays out with one dummy per skipped layer."""
    n = 3000
    names = [f"n{i}" for i in range(n)]
    edges = [(f"n{i}", f"n{i + 1}", "t") for i in range(n - 1)]
    edges += [(f"n{i}", f"n{i + 3}", "r") for i in range(0, n - 3, 3)]
    lay = layout_graph(names, edges)
    assert lay.n_layers == n
    dummies = sum(len(e.points) - 2 for e in lay.edges)
    assert dummies == 2 * len(range(0, n - 3, 3))


def test_long_edges_from_one_node_share_a_trunk() -> None:
    """m feeds c2, c5 and c8 of a chain c0 -> ... -> c8 (an attention mask, say)."""
    chain = [f"c{i}" for i in range(9)]
    edges = [(a, b, f"{a}{b}") for a, b in pairwise(chain)]
    edges += [("m", "c2", "m2"), ("m", "c5", "m5"), ("m", "c8", "m8")]
    lay = layout_graph(["m", *chain], edges)
    routes = {e.tensor: e for e in lay.edges}
    full, b5, b2 = routes["m8"], routes["m5"], routes["m2"]
    assert not full.branched and full.points[0] == (lay.place("m").x, lay.place("m").y)
    assert b5.branched and b5.points[0] in full.points  # starts on the trunk
    assert b5.points[-1] == (lay.place("c5").x, lay.place("c5").y)
    assert b2.branched or len(b2.points) == 2
    assert lay.width == 2.0  # the chain and one trunk column
