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
from bitlens.core.search.activations import activation_units
from bitlens.core.search.candidates import _fits_weight
from bitlens.core.search.measures import exported_size
from bitlens.core.search.state import SearchState
from bitlens.core.weights import weight_bytes_after


def measure_overheads(
    s: SearchState, wlayers: Sequence[Layer], wfmts: list[Format], base: Format | None
) -> Generator[Progress, None, list[Format]]:
    """What the export adds around a layer's weights in each format (unpacking nodes,
    scales, shape constants) and around an activation quantizer: the export of one small
    layer in that format against the float export. Formats that fail to export are
    dropped. Without the check, nothing is added."""
    s.size.w_overhead = {f: 0 for f in wfmts}
    s.size.a_overhead = 0
    s.size.k_overhead = {}
    if not (s.opts.check_export and s.opts.budget.by_size):
        return wfmts
    e0 = exported_size(s.engine, s.plan_for({}))
    s.size.fixed_bytes = e0 - s.size.float_weight_bytes
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
            e = exported_size(s.engine, s.plan_for({layer.name: LayerChoice(fmt)}))
        except BitlensError:
            continue
        first = max(0, e - e0 - weight_bytes_after(layer, fmt) + layer.nbytes)
        s.size.w_overhead[fmt] = first
        kept.append(fmt)
        if len(fits) > 1:
            # a second layer in the format costs only its own nodes and parameters: the
            # constants the exporter shares by value are paid once per file
            two = {la.name: LayerChoice(fmt) for la in fits[:2]}
            e2 = exported_size(s.engine, s.plan_for(two))
            second = e2 - e - weight_bytes_after(fits[1], fmt) + fits[1].nbytes
            if 0 <= second < first:
                s.size.learned.shared[fmt] = first - second
        yield s._tick(f"export cost of {fmt.name}")
    acts = [la for la in s.info.layers if la.activations and not la.graph_path]
    if base is None or not acts:
        return kept
    # every activation at the base: the quantizers' cost, on average
    all_base = {la.name: LayerChoice(None, base) for la in acts}
    e_a = exported_size(s.engine, s.plan_for(all_base))
    s.size.a_overhead = max(0, round((e_a - e0) / len(acts)))
    # 8-bit weights next to 8-bit activations become an integer-kernel group, which the
    # export writes differently (QDQ for ONNX Runtime to fuse): its own cost
    # (per op type: a MatMul group and a Conv group differ)
    int8 = parse_format("int8 sym ch")
    for layer in sorted(acts, key=lambda la: la.nbytes):
        if layer.op_type in s.size.k_overhead or int8 not in kept:
            continue
        plan = s.plan_for({**all_base, layer.name: LayerChoice(int8, base)})
        if layer.name not in integer_kernel_layers(s.info, plan):
            continue
        e = exported_size(s.engine, plan)
        delta = weight_bytes_after(layer, int8) - layer.nbytes
        s.size.k_overhead[layer.op_type] = e - e_a - delta - s.size.w_overhead[int8]
    return kept


def measure_wide_costs(s: SearchState) -> Generator[Progress, None, None]:
    """A wide activation changes the export around it (another quantizer, and the layer
    before it may leave its integer-kernel group): what the accounting above does not
    predict of that, measured with int8 weights, one export per wide layer."""
    if not (s.wide and s.opts.check_export and s.opts.budget.by_size):
        return
    narrow = {**s.act, **s.narrow}
    saved = s.act
    s.act = narrow
    ref_plan = s.plan_of(s.ctx_weights)
    e_ref = s.size.export(ref_plan)[0].file_bytes
    acc_ref = s.point(ref_plan).file_bytes
    # one export per decision: a shared weight's readers widen together, and share its cost
    for unit in activation_units(s, [s.info.layer(n) for n in s.wide]):
        s.act = {**narrow, **{n: saved[n] for n in unit}}
        plan = s.plan_of(s.ctx_weights)
        try:
            e = s.size.export(plan)[0].file_bytes
        except BitlensError:
            # a wide format the export cannot write for this model (e.g. int16 needs
            # opset 21, and upgrading the model changes its outputs): stay narrow
            saved = {**saved, **{n: s.narrow[n] for n in unit}}
            s.wide = [n for n in s.wide if n not in unit]
            continue
        extra = (e - e_ref) - (s.point(plan).file_bytes - acc_ref)
        for i, n in enumerate(unit):
            share = extra // len(unit) + (1 if i < extra % len(unit) else 0)
            s.size.act_extra[(n, saved[n])] = share
        yield s._tick(f"export cost of {unit[0]}'s wide activation")
    s.act = saved
    s._reaccount()
