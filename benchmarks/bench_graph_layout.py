"""Graph layout speed: the graph view lays out a model once when it is opened.

Synthetic transformer-shaped graphs (per block: LayerNorm, q/k/v MatMuls,
attention, output projection, residual Add, MLP, residual Add; plus a
shared Shape chain feeding every block) of growing size. Prints nodes,
layers, dummy points and time per layout.

Run: ``.venv/bin/python benchmarks/bench_graph_layout.py`` (target: under
0.25 s for 1,000 nodes and under 2 s for 10,000 on a 2-core machine).
"""

from __future__ import annotations

import time

from bitlens.core.graph_layout import layout_graph


def transformer_like(blocks: int) -> tuple[list[str], list[tuple[str, str, str]]]:
    names: list[str] = ["input:x", "shape", "gather"]
    edges = [("input:x", "shape", "x"), ("shape", "gather", "s")]
    prev = "input:x"
    for b in range(blocks):
        p = f"b{b}/"
        nodes = ["ln1", "q", "k", "v", "qk", "softmax", "av", "reshape", "o", "add1",
                 "ln2", "ff1", "act", "ff2", "add2"]  # fmt: skip
        names += [p + n for n in nodes]
        e = [
            (prev, p + "ln1"), (p + "ln1", p + "q"), (p + "ln1", p + "k"), (p + "ln1", p + "v"),
            (p + "q", p + "qk"), (p + "k", p + "qk"), (p + "qk", p + "softmax"),
            (p + "softmax", p + "av"), (p + "v", p + "av"), (p + "av", p + "reshape"),
            ("gather", p + "reshape"), (p + "reshape", p + "o"), (p + "o", p + "add1"),
            (prev, p + "add1"), (p + "add1", p + "ln2"), (p + "ln2", p + "ff1"),
            (p + "ff1", p + "act"), (p + "act", p + "ff2"), (p + "ff2", p + "add2"),
            (p + "add1", p + "add2"),
        ]  # fmt: skip
        edges += [(a, c, f"{a}->{c}") for a, c in e]
        prev = p + "add2"
    edges.append((prev, "output:y", "y"))
    return names, edges


def main() -> None:
    print(f"{'nodes':>7} {'layers':>7} {'width':>6} {'dummies':>8} {'seconds':>8}")
    for blocks in (10, 66, 330, 660):
        names, edges = transformer_like(blocks)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            lay = layout_graph(names, edges)
            best = min(best, time.perf_counter() - t0)
        dummies = sum(len(e.points) - 2 for e in lay.edges)
        print(f"{len(lay.nodes):>7} {lay.n_layers:>7} {lay.width:>6.0f} {dummies:>8} {best:>8.3f}")


if __name__ == "__main__":
    main()
