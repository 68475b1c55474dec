"""The search's size accounting: what a plan's exported file weighs, from per-format
overheads corrected by real exports built in memory (core/search/sizes.py)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

import onnx

from bitlens.core.engine import Engine
from bitlens.core.errors import BitlensError
from bitlens.core.export.accounting import ExportSize, predict, size_of
from bitlens.core.export.exporter import (
    ExportOptions,
    Prepared,
    build,
    check_plan_export,
    convert_for,
    integer_kernel_candidate,
    integer_kernel_layers,
    needed_opset,
    preflight,
)
from bitlens.core.formats import Format, storage_bytes
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from bitlens.core.search.builtfiles import MIN_BYTES, MODEL_MULTIPLE, BuiltFiles
from bitlens.core.search.measures import file_bytes_of
from bitlens.core.search.passes import Shared
from bitlens.core.search.sizes import LearnedSizes
from bitlens.core.shared_weights import stored_by
from bitlens.core.weights import bind

# Plans the accounting puts this close to a size budget are measured by a real export: a
# few hundred bytes decide between a preset and the plan that beats it at its size.
NEAR_MIN_BYTES = 512
NEAR_FRACTION = 0.02  # the widest window, of the limit
NEAR_RECENT = 4  # the window follows the accounting's misses on the last exports


class FileSizes:
    """Accounted and real export sizes of plans for one engine's model."""

    def __init__(self, engine: Engine, shared: Shared | None = None):
        self.engine = engine
        # exports built in memory and opset conversions, per plan, kept across the search's
        # passes (core/search/passes.py)
        self.shared = shared if shared is not None else Shared()
        if self.shared.files is None:
            limit = max(MIN_BYTES, MODEL_MULTIPLE * engine.model.nbytes)
            self.shared.files = BuiltFiles(limit)
        self.files: BuiltFiles = self.shared.files
        self.info = engine.info
        self.fixed_bytes, self.float_weight_bytes = file_bytes_of(engine)
        # what the export writes around the weights, per format / quantizer / integer group
        self.w_overhead: dict[Format, int] = {}
        self.a_overhead = 0
        self.k_overhead: dict[tuple[str, Format], int] = {}  # (op type, weight format)
        self.act_extra: dict[tuple[str, Format | None], int] = {}  # wide activations
        # Size budgets: plans whose accounted size is within ``near`` bytes of ``limit`` are
        # exported in memory (cached per plan) and carry their real size; the accounting's
        # per-format overheads miss a few hundred bytes per file (scales that grow with a
        # layer's width, integer-kernel groups that change with neighbours), enough to hide
        # the plans that beat a preset at its own size.
        self.limit: int | None = None
        self.near = 0
        self._exported: dict[Plan, int] = {}
        self._prepared: dict[int, Prepared | BitlensError] = self.shared.prepared
        self.unexportable: dict[Plan, str] = {}  # plan -> why its export failed
        self.misses: list[int] = []  # how far the accounting was from each real export
        self.learned = LearnedSizes()
        # A weight several layers read (an unrolled LSTMCell's Gemms) is stored once, by the
        # export's first layer reading it: the others neither save nor add its bytes.
        self._stores = stored_by(self.info)
        # The one plan whose built export is kept (W8A8: the speed check times it,
        # core/search/speed.py) and that export, once built
        self.keep: Plan | None = None
        self.kept: onnx.ModelProto | None = None
        self._kernels: dict[Plan, frozenset[str]] = {}  # kernels(), per plan

    # -- real exports ------------------------------------------------------------------------
    def exported(self, plan: Plan) -> int | None:
        """The real size of ``plan``'s export (built in memory once per plan); what each
        layer costs in it is learnt for the accounting. None: the plan cannot be exported
        (e.g. it needs an opset the model cannot be upgraded to), and no size budget takes
        it (the reason is kept in ``unexportable``)."""
        if plan in self.unexportable:
            return None
        hit = self._exported.get(plan)
        if hit is None:
            try:
                size, opset = self.export(plan, keep_file=True)
            except BitlensError as exc:
                self.unexportable[plan] = str(exc)
                return None
            guess = self.file_bytes(plan)
            self.misses.append(abs(size.file_bytes - guess))
            base = self.fixed_bytes + self.float_weight_bytes
            kernels = self.kernels(plan)
            whole = {n for n, c in plan.choices.items() if self.whole(n, c, n in kernels)}
            self.learned.learn(
                plan, size, kernels, opset, self.choices(plan), base, self.estimate, whole
            )
            hit = self._exported[plan] = size.file_bytes
            self.update_near()
        return hit

    def export(self, plan: Plan, keep_file: bool = False) -> tuple[ExportSize, int]:
        """``plan``'s export built in memory, and the opset it is written at (nothing
        learnt; built once per search, its passes included). ``keep_file``: a real-size
        check: where the export fits the limit it is kept serialized (:meth:`built_file`)."""
        built = self.shared.built
        hit = built.get(plan)
        if hit is not None and not (plan == self.keep and self.kept is None):
            if isinstance(hit, BitlensError):
                raise hit
            return hit
        try:
            got = self._export(plan, keep_file)
        except BitlensError as exc:
            built[plan] = exc
            raise
        built[plan] = got
        return got

    def built_file(self, plan: Plan, prepared: Prepared) -> bytes | None:
        """What ``export(engine, plan, path, None, prepared)`` writes, where the search built
        that export in memory from the same preparation and still keeps it; else None."""
        return self.files.get(plan, prepared)

    def predicted(self, plan: Plan) -> ExportSize:
        """``plan``'s export built in memory through a preflight of its own, as
        ``bitlens export`` builds it (its own checks and opset conversion; once per search)."""
        hit = self.shared.predicted.get(plan)
        if hit is None:
            try:
                hit = drain(predict(self.engine, plan, None, self.prepared(plan)))
            except BitlensError as exc:
                hit = exc
            self.shared.predicted[plan] = hit
        if isinstance(hit, BitlensError):
            raise hit
        return hit

    def prepared(self, plan: Plan) -> Prepared:
        """``preflight(engine, plan)``, its opset conversion done once per opset."""
        check_plan_export(self.engine, plan)
        return self._converted(plan)

    def _converted(self, plan: Plan) -> Prepared:
        """What ``preflight`` gives ``plan`` but its own checks: the model at the opset the
        plan needs, converted once per opset (a model copy verified by two runs: on
        PP-OCRv5's recognizer, opset 11, 33 conversions took a tenth of a search's CPU). Where
        the conversion fell back to a lower opset (which the plan's 4-bit layers decide) it
        runs for the plan itself."""
        kernels = self.kernels(plan)
        needed = self.needed_opset(plan)
        known = self._prepared.get(needed)
        if isinstance(known, Prepared) and known.opset >= needed:
            return replace(known, kernels=frozenset(kernels))
        prepared = convert_for(self.engine, plan, ExportOptions(), kernels, needed)
        self._prepared.setdefault(needed, prepared)
        return prepared

    def _export(self, plan: Plan, keep_file: bool = False) -> tuple[ExportSize, int]:
        kernels = self.kernels(plan)
        needed = self.needed_opset(plan)
        # the opset conversion (a model copy, verified by two runs) once per opset, and
        # its failure too
        prepared = self._prepared.get(needed)
        if prepared is None:
            try:
                prepared = preflight(self.engine, plan)
            except BitlensError as exc:
                prepared = exc
            self._prepared[needed] = prepared
        if isinstance(prepared, BitlensError):
            raise prepared
        opset = prepared.opset
        prepared = replace(prepared, kernels=frozenset(kernels))
        built = drain(build(self.engine, plan, None, prepared))
        if plan == self.keep:
            self.kept = built.model
        size = size_of(built)
        # the plans the last choice runs as deployed fit the budget, as the one timed does
        fits = self.limit is None or size.file_bytes <= self.limit
        if (keep_file and fits) or plan == self.keep:
            self.files.put(plan, prepared, built.serialized)
        return size, opset

    def kept_export(self) -> onnx.ModelProto:
        """The export of ``keep`` built in memory: built once, its size learnt as
        :meth:`exported` learns it (raises the export's BitlensError)."""
        if self.kept is None and self.keep is not None:
            self.exported(self.keep)
            if self.kept is None:  # its size was known before it was to be kept
                self.export(self.keep)
        if self.kept is None:
            raise BitlensError("no export is kept")
        return self.kept

    def update_near(self) -> None:
        """How close to the limit a plan must be to be exported: twice the accounting's
        recent misses (it learns with every export), within fixed bounds."""
        if self.limit is None:
            return
        widest = round(NEAR_FRACTION * self.limit)
        recent = 2 * max(self.misses[-NEAR_RECENT:], default=widest)
        self.near = max(NEAR_MIN_BYTES, min(widest, recent))

    def real_if_near(self, plan: Plan, accounted: int) -> int | None:
        """The real size where ``plan`` was exported or is near the limit, else None."""
        if self.limit is None or abs(accounted - self.limit) > self.near:
            return self._exported.get(plan)
        return self.exported(plan)

    # -- accounting --------------------------------------------------------------------------
    def estimate(self, name: str, choice: LayerChoice, kernel: bool) -> int:
        """What the per-format overheads say ``name`` in ``choice`` adds to the file against
        its float weights (negative: it saves), less the constants its format's layers
        share (counted once per file)."""
        layer = self.info.layer(name)
        w, a = choice.weight, choice.activation
        net = 0
        stores = self._stores[name]
        if w is not None and stores:
            net += sum(storage_bytes(bind(w, s), s.shape) - s.nbytes for s in stores)
        if kernel and w is not None and (layer.op_type, w) in self.k_overhead:
            # an integer-kernel layer's own encoding, measured whole: none of the folded
            # format's nodes or shared constants (4-bit codes Cast, or packed below opset 21)
            net += self.k_overhead[(layer.op_type, w)] - self.learned.kernel_shared.get(w, 0)
        elif w is not None and stores:
            net += self.w_overhead.get(w, 0) - self.learned.shared.get(w, 0)
        if a is not None:
            net += self.a_overhead
        return net + self.act_extra.get((name, a), 0)

    def net(self, layer: Layer, choice: LayerChoice, kernel: bool) -> int:
        """The estimate, corrected by what real exports showed of this layer's choice."""
        return self.estimate(layer.name, choice, kernel) + self.learned.layer(
            layer.name, choice, kernel
        )

    def file_bytes(self, plan: Plan) -> int:
        """The exported file's size: weights plus what the export writes around them."""
        kernels = self.kernels(plan)
        total = self.fixed_bytes + self.float_weight_bytes
        total += self.learned.shared_bytes(*self.shared_formats(plan, kernels))
        for layer in self.info.layers:
            total += self.net(layer, plan[layer.name], layer.name in kernels)
        return total + self.learned.rest(self.opset(plan), self.choices(plan))

    def shared_formats(
        self, plan: Plan, kernels: Collection[str]
    ) -> tuple[set[Format | None], set[Format | None]]:
        """The weight formats whose shared constants ``plan``'s file holds: those of its
        layers not measured whole, and those of its layers measured whole (:meth:`whole`)."""
        whole = {n for n, c in plan.choices.items() if self.whole(n, c, n in kernels)}
        return (
            {c.weight for n, c in plan.choices.items() if n not in whole},
            {plan[n].weight for n in whole},
        )

    def whole(self, name: str, choice: LayerChoice, kernel: bool) -> bool:
        """Whether ``name``'s cost in ``choice`` is measured whole, its format's shared
        constants left out: an integer-kernel group whose cost ``k_overhead`` holds (its
        weights are a QDQ group, not the folded format's nodes)."""
        op = self.info.layer(name).op_type
        return kernel and choice.weight is not None and (op, choice.weight) in self.k_overhead

    def layer_bytes(self, layer: Layer, fmt: Format | None, act: Format | None) -> int:
        """A layer's bytes with weights in ``fmt`` (its float weights for None), everything
        the export adds for the choice included, next to input activation ``act``."""
        if fmt is None:
            return layer.nbytes
        choice = LayerChoice(fmt, act)
        flt = LayerChoice(None, act)
        net = self.net(layer, choice, integer_kernel_candidate(layer, choice))
        return layer.nbytes + net - self.net(layer, flt, integer_kernel_candidate(layer, flt))

    def choices(self, plan: Plan) -> tuple[LayerChoice, ...]:
        return tuple(plan[name] for name in self.info.layer_names)

    def kernels(self, plan: Plan) -> frozenset[str]:
        """``plan``'s integer-kernel layers, as its export writes them: a Conv is one where
        the target's placement requantizes its output (a quantizer the plan's layer inputs
        alone do not show: ONNX Runtime's requantizing ops)."""
        hit = self._kernels.get(plan)
        if hit is None:
            # per plan: the accounting asks it several times of every plan it sizes (file
            # bytes, opset, the export), and it depends on the plan alone
            hit = frozenset(integer_kernel_layers(self.info, plan, self.engine.placement(plan)))
            self._kernels[plan] = hit
        return hit

    def needed_opset(self, plan: Plan) -> int:
        """The opset the export needs for ``plan`` (it converts the model to at least that)."""
        kernels = self.kernels(plan)
        return needed_opset(self.engine, plan, ExportOptions(), kernels)

    def opset(self, plan: Plan) -> int:
        """The opset ``plan``'s export is written at: the one it needs, or, where the model
        cannot be converted to opset 21 that ONNX INT4 needs, a lower one with the 4-bit
        codes of integer-kernel layers stored packed (core/export/exporter.py ``preflight``;
        known once an export at that need was built: the overhead step builds one)."""
        needed = self.needed_opset(plan)
        prepared = self._prepared.get(needed)
        return prepared.opset if isinstance(prepared, Prepared) else needed
