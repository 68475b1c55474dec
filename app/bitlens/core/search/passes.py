"""What one search's passes share: results that depend on the plan and the engine only.

A size budget whose first plan is the same-size preset runs the search again with float
activations (core/search/runner.py), and a speed limit that leaves no plan within the
budget runs it again without the limit. Each pass is a search of its own (its accounting,
its path, its plans), but much of what it measures is the same as the pass before: the
float model and the reference presets, each layer's weights alone (every other layer float,
no activation quantizer), the in-memory exports that measure what each format adds to the
file, the opset conversion, and the plans of the last choice run as deployed (the preset,
the uniform plans of the same size). Those are measured once and looked up by plan here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from bitlens.core.errors import BitlensError
from bitlens.core.plan import Plan

if TYPE_CHECKING:
    from bitlens.core.export.accounting import ExportSize
    from bitlens.core.export.exporter import Prepared
    from bitlens.core.search.builtfiles import BuiltFiles
    from bitlens.core.search.deployed import DeployedErrors, Part


@dataclass
class Shared:
    """Per-plan results of one engine's search, kept across its passes."""

    # a plan's output error and task metric on the fitted evaluation feeds
    measured: dict[Plan, tuple[float, float | None]] = field(default_factory=dict)
    # a plan's export built in memory: its size and opset, or why it cannot be built
    built: dict[Plan, tuple[ExportSize, int] | BitlensError] = field(default_factory=dict)
    # the same through a preflight of its own (the plan's own checks, then its opset)
    predicted: dict[Plan, ExportSize | BitlensError] = field(default_factory=dict)
    # the opset conversion (a model copy verified by two runs), per opset needed
    prepared: dict[int, Prepared | BitlensError] = field(default_factory=dict)
    # exports run in a default session (core/search/deployed.py), made when first needed
    deployed: DeployedErrors | None = None
    # the exports that fit the budget, serialized, for those runs (core/search/builtfiles.py)
    files: BuiltFiles | None = None
    # the calibration rows the last choice also compares on (core/search/calib_check.py):
    # None until needed, False where there are none
    calib: Part | Literal[False] | None = None
    # what the result says where the calibration rows turned a plan down, in any pass
    calib_notes: list[str] = field(default_factory=list)
