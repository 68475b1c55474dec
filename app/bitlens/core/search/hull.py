"""Bit allocation on lower convex hulls: each layer's (bytes, noise) ladder and the greedy
order of steps over all layers (marginal analysis)."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from bitlens.core.formats import Format
from bitlens.core.model.types import Layer


@dataclass
class _Ladder:
    """One layer's weight options on the lower convex hull, most bytes (float) first."""

    layer: Layer
    points: list[tuple[int, float, Format | None]]  # (bytes, predicted noise power, format)


def _efficient(
    points: list[tuple[int, float, Format | None]],
) -> list[tuple[int, float, Format | None]]:
    """The points no other beats on both bytes and noise, most bytes first."""
    eff: list[tuple[int, float, Format | None]] = []
    for p in sorted(points, key=lambda p: (p[0], p[1])):  # bytes up: noise must go down
        if not eff or (p[0] > eff[-1][0] and p[1] < eff[-1][1]):
            eff.append(p)
    return eff[::-1]


def _hull(points: list[tuple[int, float, Format | None]]) -> list[tuple[int, float, Format | None]]:
    """The efficient lower convex hull of (bytes, noise), most bytes first.

    Keeping only convex points makes every next step cost more noise per byte than the
    one before, which is what lets one heap order the steps of all layers.
    """
    eff = _efficient(points)
    hull: list[tuple[int, float, Format | None]] = []
    for p in eff:
        while len(hull) >= 2:
            (b0, n0, _), (b1, n1, _) = hull[-2], hull[-1]
            # drop hull[-1] if it lies above the segment hull[-2] -> p
            if (n1 - n0) * (b0 - p[0]) >= (p[1] - n0) * (b0 - b1):
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def _greedy(ladders: Sequence[_Ladder]) -> list[str]:
    """Layer names in the order their next hull step is taken: least noise per byte first."""
    heap: list[tuple[float, int, str, int]] = []
    order = {lad.layer.name: i for i, lad in enumerate(ladders)}
    by_name = {lad.layer.name: lad for lad in ladders}

    def push(name: str, i: int) -> None:
        pts = by_name[name].points
        if i + 1 < len(pts):
            (b0, n0, _), (b1, n1, _) = pts[i], pts[i + 1]
            heapq.heappush(heap, ((n1 - n0) / max(1, b0 - b1), order[name], name, i))

    for lad in ladders:
        push(lad.layer.name, 0)
    moves: list[str] = []
    while heap:
        _, _, name, i = heapq.heappop(heap)
        moves.append(name)
        push(name, i + 1)
    return moves
