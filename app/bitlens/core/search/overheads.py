"""What the export writes around the weights and activations, measured once per search by
exporting small plans in memory (unpacking nodes, scales, quantizers, integer-kernel groups)."""

from __future__ import annotations

from collections.abc import Generator, Sequence

from bitlens.core.errors import BitlensError
from bitlens.core.export.exporter import integer_kernel_layers
from bitlens.core.formats import Format, parse_format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice
from bitlens.core.results import Progress
from bitlens.core.search.candidates import _fits_weight
from bitlens.core.search.measures import exported_size
from bitlens.core.search.state import SearchState
from bitlens.core.weights import weight_bytes_after


class Overheads(SearchState):
    def _measure_overheads(
        self, wlayers: Sequence[Layer], wfmts: list[Format], base: Format | None
    ) -> Generator[Progress, None, list[Format]]:
        """What the export adds around a layer's weights in each format (unpacking nodes,
        scales, shape constants) and around an activation quantizer: the export of one small
        layer in that format against the float export. Formats that fail to export are
        dropped. Without the check, nothing is added."""
        self.size.w_overhead = {f: 0 for f in wfmts}
        self.size.a_overhead = 0
        self.size.k_overhead = {}
        if not (self.opts.check_export and self.opts.budget.by_size):
            return wfmts
        e0 = exported_size(self.engine, self.plan_for({}))
        self.size.fixed_bytes = e0 - self.size.float_weight_bytes
        kept = []
        for fmt in wfmts:
            fits = [
                la for la in wlayers
                if _fits_weight(la, fmt) and weight_bytes_after(la, fmt) < la.nbytes
            ]  # fmt: skip
            if not fits:
                continue
            fits.sort(key=lambda la: la.nbytes)
            layer = fits[0]
            try:
                e = exported_size(self.engine, self.plan_for({layer.name: LayerChoice(fmt)}))
            except BitlensError:
                continue
            first = max(0, e - e0 - weight_bytes_after(layer, fmt) + layer.nbytes)
            self.size.w_overhead[fmt] = first
            kept.append(fmt)
            if len(fits) > 1:
                # a second layer in the format costs only its own nodes and parameters: the
                # constants the exporter shares by value are paid once per file
                two = {la.name: LayerChoice(fmt) for la in fits[:2]}
                e2 = exported_size(self.engine, self.plan_for(two))
                second = e2 - e - weight_bytes_after(fits[1], fmt) + fits[1].nbytes
                if 0 <= second < first:
                    self.size.learned.shared[fmt] = first - second
            yield self._tick(f"export cost of {fmt.name}")
        acts = [la for la in self.info.layers if la.activations and not la.graph_path]
        if base is None or not acts:
            return kept
        # every activation at the base: the quantizers' cost, on average
        all_base = {la.name: LayerChoice(None, base) for la in acts}
        e_a = exported_size(self.engine, self.plan_for(all_base))
        self.size.a_overhead = max(0, round((e_a - e0) / len(acts)))
        # 8-bit weights next to 8-bit activations become an integer-kernel group, which the
        # export writes differently (QDQ for ONNX Runtime to fuse): its own cost
        # (per op type: a MatMul group and a Conv group differ)
        int8 = parse_format("int8 sym ch")
        for layer in sorted(acts, key=lambda la: la.nbytes):
            if layer.op_type in self.size.k_overhead or int8 not in kept:
                continue
            plan = self.plan_for({**all_base, layer.name: LayerChoice(int8, base)})
            if layer.name not in integer_kernel_layers(self.info, plan):
                continue
            e = exported_size(self.engine, plan)
            delta = weight_bytes_after(layer, int8) - layer.nbytes
            self.size.k_overhead[layer.op_type] = e - e_a - delta - self.size.w_overhead[int8]
        return kept

    def _measure_wide_costs(self) -> Generator[Progress, None, None]:
        """A wide activation changes the export around it (another quantizer, and the layer
        before it may leave its integer-kernel group): what the accounting above does not
        predict of that, measured with int8 weights, one export per wide layer."""
        if not (self.wide and self.opts.check_export and self.opts.budget.by_size):
            return
        narrow = {**self.act, **self.narrow}
        saved = self.act
        self.act = narrow
        ref_plan = self.plan_of(self.ctx_weights)
        e_ref = self.size.export(ref_plan)[0].file_bytes
        acc_ref = self.point(ref_plan).file_bytes
        for name in list(self.wide):
            self.act = {**narrow, name: saved[name]}
            plan = self.plan_of(self.ctx_weights)
            try:
                e = self.size.export(plan)[0].file_bytes
            except BitlensError:
                # a wide format the export cannot write for this model (e.g. int16 needs
                # opset 21, and upgrading the model changes its outputs): stay narrow
                saved = {**saved, name: self.narrow[name]}
                self.wide.remove(name)
                continue
            extra = (e - e_ref) - (self.point(plan).file_bytes - acc_ref)
            self.size.act_extra[(name, saved[name])] = extra
            yield self._tick(f"export cost of {name}'s wide activation")
        self.act = saved
        self._reaccount()
