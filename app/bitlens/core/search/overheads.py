"""What the export writes around the weights and activations, measured once per search by
exporting small plans in memory (unpacking nodes, scales, quantizers, integer-kernel groups)."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace

from bitlens.core.errors import BitlensError
from bitlens.core.formats import Format
from bitlens.core.model.half_activations import quantizable_activations
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice
from bitlens.core.results import Progress
from bitlens.core.search.activations import activation_units
from bitlens.core.search.candidates import _fits_weight
from bitlens.core.search.state import SearchState
from bitlens.core.targets import kernel_weight
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
    e0 = s.size.predicted(s.plan_for({})).file_bytes
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
        try:
            first, second = _one_and_two(s, fits[:2], fmt, e0)
        except BitlensError:
            continue
        s.size.w_overhead[fmt] = max(0, first)
        kept.append(fmt)
        # a second layer in the format costs only its own nodes and parameters: the
        # constants the exporter shares by value are paid once per file
        if second is not None and 0 <= second < first:
            s.size.learned.shared[fmt] = first - second
        yield s._tick(f"export cost of {fmt.name}")
    acts = [la for la in s.info.layers if quantizable_activations(s.info, la)]
    if base is None or not acts:
        return kept
    # every activation at the base: the quantizers' cost, on average
    all_base = {la.name: LayerChoice(None, base) for la in acts}
    e_a = s.size.predicted(s.plan_for(all_base)).file_bytes
    s.size.a_overhead = max(0, round((e_a - e0) / len(acts)))
    # 2- to 8-bit, ternary and binary weights next to 8-bit activations become an
    # integer-kernel group, which the export writes differently (QDQ for ONNX Runtime to
    # fuse; 4-bit codes Cast to int8, other widths, or 4 bits below opset 21, stored packed
    # and unpacked: core/export/weights.py): its cost per op type (a MatMul group and a Conv
    # group differ) and weight format, measured whole (the folded format's nodes and shared
    # constants are not written for such a layer)
    for fmt in kept:
        if kernel_weight(fmt):
            _kernel_costs(s, acts, fmt, LayerChoice(None, base), e_a)
    return kept


def _kernel_costs(
    s: SearchState, acts: Sequence[Layer], fmt: Format, flt: LayerChoice, e_a: int
) -> None:
    """``fmt``'s integer-kernel cost per op type: the smallest layer of each op type alone in
    a kernel group (every activation at ``flt``'s, whose export weighs ``e_a``), then the two
    smallest together, for what they share once per file (small constants the exporter
    shares by value, the packed codes' unpacking, an opset conversion). Through the
    accounting's own export, which also settles the opset the export really takes (below
    opset 21 where the model cannot be upgraded)."""
    all_base = {la.name: flt for la in acts}
    choice = replace(flt, weight=fmt)
    measured: list[Layer] = []
    for layer in sorted(acts, key=lambda la: la.nbytes):
        done = (layer.op_type, fmt) in s.size.k_overhead
        if done and len(measured) == 2:
            continue
        plan = s.plan_for({**all_base, layer.name: choice})
        if layer.name not in s.size.kernels(plan):
            continue
        if not done:
            try:
                e = s.size.export(plan)[0].file_bytes
            except BitlensError:
                return
            delta = weight_bytes_after(layer, fmt) - layer.nbytes
            s.size.k_overhead[(layer.op_type, fmt)] = e - e_a - delta
        if len(measured) < 2:
            measured.append(layer)
    if len(measured) < 2:
        return
    plan = s.plan_for({**all_base, **{la.name: choice for la in measured}})
    if not set(s.size.kernels(plan)) >= {la.name for la in measured}:
        return
    try:
        e = s.size.export(plan)[0].file_bytes
    except BitlensError:
        return
    alone = sum(
        weight_bytes_after(la, fmt) - la.nbytes + s.size.k_overhead[(la.op_type, fmt)]
        for la in measured
    )
    # Not clamped at 0: what the file pays once can be negative. Raising the opset to 21
    # for ONNX INT4 rewrites the model, and ONNX's version converter drops duplicated
    # value_info: isbnx's YOLO26n (PyTorch 2.12) lists 510 tensors 2595 times, and its file
    # shrank by 562 kB with any one int4 layer. Clamped, every int4 kernel layer was
    # counted -562 kB and the search's sizes went below zero (-52 MiB for W4A8).
    s.size.learned.kernel_shared[fmt] = alone - (e - e_a)


def _one_and_two(
    s: SearchState, layers: Sequence[Layer], fmt: Format, e0: int
) -> tuple[int, int | None]:
    """What the first layer in ``fmt`` adds to the file beyond its weights, shared
    constants included, and what a second one adds (None with one layer), from one export
    of both: the export reports each layer's own bytes, the first in model order paying the
    shared constants; the rest of the growth (the export record) is split evenly between
    them. On the 50-layer benchmark model this is within 12 bytes of exporting one layer,
    then two (an export of a large model costs seconds)."""
    if len(layers) == 1:
        layer = layers[0]
        e = s.size.predicted(s.plan_for({layer.name: LayerChoice(fmt)})).file_bytes
        return e - e0 - weight_bytes_after(layer, fmt) + layer.nbytes, None
    size = s.size.predicted(s.plan_for({la.name: LayerChoice(fmt) for la in layers}))
    own = {r.name: r.file_bytes for r in size.layers}
    order = {name: i for i, name in enumerate(s.info.layer_names)}
    payer, other = sorted(layers, key=lambda la: order[la.name])
    rest = size.file_bytes - e0 - own[payer.name] - own[other.name]
    first = own[payer.name] + rest // 2 - weight_bytes_after(payer, fmt) + payer.nbytes
    second = own[other.name] + rest - rest // 2 - weight_bytes_after(other, fmt) + other.nbytes
    return first, second


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
