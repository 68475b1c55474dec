"""What each layer really adds to the exported file, learnt from whole exports built in memory.

The search's first accounting is per format: the graph one small layer gets in that format,
measured alone. In a whole file a layer's cost also depends on its width (per-channel scales
and zero points), on whether it joins an integer-kernel group (which its neighbours decide)
and on the constants the exporter shares by value between layers of one format (unpack
tables, shapes: ``GraphBuilder.const`` in core/export/graph.py). On the text sample that
put the uniform W8A8 file 749 bytes below its export and the step of one feed-forward layer
from int8 to int7 about 500 bytes on the wrong side, which hid every plan that beats W8A8 at
its own size. The export reports each layer's net bytes (``LayerBytes.file_bytes``), so
every real export the search builds teaches the exact cost of each (layer, choice,
integer-kernel group) it contains, and what the file holds besides the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass, field

from bitlens.core.export.accounting import ExportSize
from bitlens.core.formats import Format
from bitlens.core.plan import LayerChoice, Plan

Key = tuple[str, LayerChoice, bool]  # layer, its choice, in an integer-kernel group
Estimate = Callable[[str, LayerChoice, bool], int]


@dataclass
class LearnedSizes:
    """Corrections to the per-format estimate: per layer as seen in real exports, and for
    the rest of the file (quantizers on tensors that are no layer's input, metadata)."""

    # paid once per file by the first layer in a weight format: constants the exporter
    # shares by value between the layers of one format (measured with two small layers)
    shared: dict[Format, int] = field(default_factory=dict)
    # the same, paid by the first integer-kernel layer measured whole in a format (its QDQ
    # group's constants: core/search/overheads.py ``_kernel_costs``)
    kernel_shared: dict[Format, int] = field(default_factory=dict)
    layers: dict[Key, int] = field(default_factory=dict)  # real net bytes - estimate
    # What the file holds beyond the layers' and shared bytes (the export record, which
    # describes every layer, and the quantizers on tensors that are no layer's input), per
    # exported plan: (opset the export converts the model to, each layer's choice, bytes).
    # A plan is given the rest of the export at its opset that differs from it in the
    # fewest layers (near a budget the plans compared differ in a layer or two).
    rests: list[tuple[int, tuple[LayerChoice, ...], int]] = field(default_factory=list)

    def learn(
        self,
        plan: Plan,
        size: ExportSize,
        kernels: Set[str],
        opset: int,
        choices: tuple[LayerChoice, ...],
        base: int,
        estimate: Estimate,
        whole: Set[str] = frozenset(),
    ) -> None:
        """Learn from ``size``, the real export of ``plan``; ``base`` is what the accounting
        puts besides the layers (the float export) and ``estimate`` its per-layer guess;
        ``whole``: layers whose estimate leaves their format's shared constants out (their
        integer-kernel group's cost is measured whole), so they pay none of them."""
        seen: set[Format] = set()
        seen_whole: set[Format] = set()
        total = base
        for rec in size.layers:
            choice = plan[rec.name]
            nbytes = rec.file_bytes
            w = choice.weight
            # the exporter writes layers in plan order: the first of a format paid
            if w is not None and rec.name in whole and w not in seen_whole:
                seen_whole.add(w)
                nbytes -= self.kernel_shared.get(w, 0)
            elif w is not None and rec.name not in whole and w not in seen:
                seen.add(w)
                nbytes -= self.shared.get(w, 0)
            kernel = rec.name in kernels
            self.layers[(rec.name, choice, kernel)] = nbytes - estimate(rec.name, choice, kernel)
            total += nbytes
        total += self.shared_bytes(seen, seen_whole)
        self.rests.append((opset, choices, size.file_bytes - total))

    def layer(self, name: str, choice: LayerChoice, kernel: bool) -> int:
        return self.layers.get((name, choice, kernel), 0)

    def rest(self, opset: int, choices: tuple[LayerChoice, ...]) -> int:
        """The rest for a plan of these choices (one per layer) exported at ``opset``."""
        seen = [r for r in self.rests if r[0] == opset] or self.rests
        if not seen:
            return 0

        def differ(r: tuple[int, tuple[LayerChoice, ...], int]) -> int:
            return sum(1 for a, b in zip(r[1], choices, strict=True) if a != b)

        return min(seen, key=differ)[2]

    def shared_bytes(
        self, formats: Set[Format | None], whole: Set[Format | None] = frozenset()
    ) -> int:
        """What the layers in ``formats`` (and the kernel layers measured whole in
        ``whole``) share once per file."""
        return sum(self.shared.get(f, 0) for f in formats if f is not None) + sum(
            self.kernel_shared.get(f, 0) for f in whole if f is not None
        )
