"""Exports the search built in memory, kept serialized for the plans it then runs as deployed.

The last choice of a size search (core/search/deployed.py) and the speed check of its plan
(core/search/speed.py) run plans' exports in a default ONNX Runtime session. Every one of
those plans had just been built in memory by the accounting (core/search/filesize.py: its
real size decides whether it fits), and each was then exported again, from the same
preparation, to a file: on nudenet's YOLOv8n 8 exports of a default search's 67, a tenth of
its CPU under cProfile. The builds that fit the budget are kept here as the bytes
:func:`bitlens.core.export.exporter.export` would write for them (the same build, serialized
once), least recently built dropped first past a byte bound, and written out as they are.
A kept file is used only when the export would start from the same preparation (opset and
converted model, integer-kernel layers); else the plan is exported as before.
"""

from __future__ import annotations

from collections import OrderedDict

from bitlens.core.export.records import Prepared
from bitlens.core.plan import Plan

# Bytes kept, as a multiple of the model file's size: the plans of the last choice (the
# best that fit, one without its activation swaps, the presets and uniform plans of the
# same size, bias-corrected twins: up to about 15 builds between the first built and the
# first run) each weigh about the budget, a quarter of the float file at W8A8's size.
MODEL_MULTIPLE = 4
MIN_BYTES = 32 << 20


class BuiltFiles:
    """Serialized exports per plan, with the preparation each was built from."""

    def __init__(self, limit: int):
        self.limit = limit
        self._files: OrderedDict[Plan, tuple[Prepared, bytes]] = OrderedDict()
        self._bytes = 0
        self.used = 0  # files handed out (what tests and benchmarks read)

    def put(self, plan: Plan, prepared: Prepared, data: bytes) -> None:
        """Keep ``data``, ``plan``'s export built from ``prepared``, dropping the oldest past
        the bound (a file over the bound alone is not kept)."""
        self._drop(plan)
        if len(data) > self.limit:
            return
        self._files[plan] = (prepared, data)
        self._bytes += len(data)
        while self._bytes > self.limit:
            self._drop(next(iter(self._files)))

    def get(self, plan: Plan, prepared: Prepared) -> bytes | None:
        """``plan``'s kept export when it was built from a preparation equal to ``prepared``
        (the same opset, converted model and integer-kernel layers), else None."""
        hit = self._files.get(plan)
        if hit is None or hit[0] != prepared:
            return None
        self.used += 1
        return hit[1]

    def _drop(self, plan: Plan) -> None:
        old = self._files.pop(plan, None)
        if old is not None:
            self._bytes -= len(old[1])
