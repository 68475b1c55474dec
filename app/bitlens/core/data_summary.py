"""What calibrates and what evaluates, as the CLI prints it and the window shows it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from bitlens.core.feed_arrays import batch_of


@dataclass(frozen=True)
class PartSummary:
    """The feeds of one role (calibration or evaluation)."""

    feeds: int
    rows: int
    shapes: dict[str, tuple[tuple[tuple[int, ...], int], ...]]  # input -> ((shape, feeds), ...)

    def describe(self) -> str:
        parts = []
        for name, shapes in self.shapes.items():
            listed = ", ".join(
                f"{list(shape)}" + (f" x{k}" if k > 1 else "") for shape, k in shapes[:6]
            )
            more = f", and {len(shapes) - 6} other shapes" if len(shapes) > 6 else ""
            parts.append(f"{name} {listed}{more}")
        return f"{self.feeds} feeds, {self.rows} rows; " + "; ".join(parts)


@dataclass(frozen=True)
class DataSummary:
    """Which feeds did what, as the CLI prints it and the window shows it."""

    source: str
    split: str
    generated: bool  # evaluation runs on random inputs
    calibration: PartSummary
    evaluation: PartSummary

    @property
    def warning(self) -> str:
        if not self.generated:
            return ""
        return (
            "evaluation runs on random inputs: errors measured on noise can mislead; "
            "give real data for the model"
        )

    def lines(self) -> list[str]:
        out = [
            f"data: {self.source}",
            f"split: {self.split}" if self.split else "",
            f"calibration: {self.calibration.describe()}",
            f"evaluation: {self.evaluation.describe()}",
        ]
        if self.warning:
            out.append(f"warning: {self.warning}")
        return [line for line in out if line]


def part_summary(samples: Sequence[Mapping[str, np.ndarray]], indices: Sequence[int]) -> PartSummary:
    shapes: dict[str, Counter[tuple[int, ...]]] = {}
    for i in indices:
        for k, a in samples[i].items():
            shapes.setdefault(k, Counter())[tuple(int(d) for d in a.shape)] += 1
    return PartSummary(
        len(indices),
        sum(batch_of(samples[i]) for i in indices),
        {k: tuple(c.items()) for k, c in shapes.items()},
    )
