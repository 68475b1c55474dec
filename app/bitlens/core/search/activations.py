"""Activation choices: the base format everywhere, free 8-bit swaps, a few wide exceptions
where the measured gain is largest.

Readers of one shared weight (an unrolled LSTMCell's Gemms, one per time step) are one
decision, as their weights are: their inputs are one recurrence's states at successive
steps, so one measurement of the group (every reader switched together) stands for all,
and captcha-whisperer's CRNN (80 Gemms reading 4 weights) takes 29 decisions, not 105."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from bitlens.core import lstm_kernel
from bitlens.core.engine.calibration import CalibrationMethod
from bitlens.core.errors import BitlensError
from bitlens.core.formats import Family, Format, Granularity, parse_format
from bitlens.core.formats.uniform import params_from_range
from bitlens.core.model.types import Layer
from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search.candidates import _fits, _wider
from bitlens.core.search.options import FLOAT_NAME
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.search.state import SearchState
from bitlens.core.shared_weights import weight_groups

# Wide formats after the first are measured on this many times the layers that can keep one
# (the units the first ranks highest): the widest integer format's gain bounds the others'
# closely, so the rest only decide between formats where a wide one can be chosen at all.
WIDE_SHORTLIST = 2
# A per-channel activation range is the extreme of each channel's calibration values: a new
# value exceeds the largest of n exchangeable ones with probability 1/(n+1)
# (https://en.wikipedia.org/wiki/Order_statistic), so ranges resting on a few values clip
# new data. magika's last Dense reads [rows, 512]: 4 calibration rows give each channel 4
# values, and every new row escaped 60-99 of its 512 channel ranges (the clipped part 6-23%
# of the row's norm; its per-tensor range: 1 value in 32 rows), so the plan that chose
# int8 per channel there on the rows the search fits had 1.56x W8A8's error on 32 others.
# Per-channel activation formats are tried only on inputs whose channels hold this many.
MIN_CHANNEL_VALUES = 100


def activation_units(s: SearchState, layers: Sequence[Layer]) -> list[tuple[str, ...]]:
    """``layers`` grouped into decisions, in model order: the readers of one shared weight
    together, every other layer alone."""
    groups = weight_groups(s.info)
    names = {layer.name for layer in layers}
    units: list[tuple[str, ...]] = []
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            continue
        unit = tuple(n for n in groups.get(layer.name, (layer.name,)) if n in names)
        seen.update(unit)
        units.append(unit)
    return units


def choose_activations(
    s: SearchState, base: Format, formats: Sequence[Format | None], layers: Sequence[Layer]
) -> Generator[Progress | Point, None, None]:
    """Each layer's input activation in ``s.act``: the base, an 8-bit swap where it alone
    lowers the error, and wider ones on at most ``wide_activations`` decisions (a shared
    weight's readers are one) where they gain most (``s.wide``, with their narrow choice
    in ``s.narrow``)."""
    if not layers:
        return
    free = [
        f for f in formats
        if f is not None and f != base and f.family is Family.INT
        and f.granularity is Granularity.TENSOR and f.bits == base.bits
        and base.family is Family.INT
    ]  # fmt: skip
    wide = [f for f in formats if f is None or _wider(f, base)]
    units = activation_units(s, layers)
    by_name = {layer.name: layer for layer in layers}
    # narrower activations save no file bytes and only add error: never chosen
    for layer in layers:
        s.act[layer.name] = base
    base_err = s.point(s.plan_of(s.ctx_weights), "search").error
    yield s._tick("activations at the base format")
    for unit in units:
        best, best_err = base, base_err
        for fmt in free:
            if not all(_fits(by_name[n], fmt) for n in unit) or _never_better(s, unit, base, fmt):
                continue
            if any(s.locked(n) and not _keeps_fast_input(by_name[n], fmt) for n in unit):
                continue
            err, met = s._measure(_with_act(s, unit, fmt))
            s.sens.append(Sensitivity(unit[0], "activation", fmt.name, err, met, 0))
            if err < best_err:
                best, best_err = fmt, err
        for n in unit:
            s.act[n] = best
        yield s._tick(f"sensitivity: {unit[0]} activation 8-bit")
    ctx = s.point(s.plan_of(s.ctx_weights), "search")
    # Swaps each better alone can be worse together, or with coarser weights (int8 sym
    # after a Relu gives up a bit that int8 weights hide and int4 ones do not): keep
    # them only if they also help with per-channel int4 weights.
    int4 = parse_format("int4 sym ch")
    coarse = {
        name: int4 if any(f == int4 for _b, _w, f in c) else w
        for (name, c), w in zip(s.cands.items(), s.ctx_weights.values(), strict=True)
    }
    swapped = dict(s.act)
    with_swaps = s.point(s.plan_of(coarse), "search").error
    for layer in layers:
        s.act[layer.name] = base
    without = s.point(s.plan_of(coarse), "search").error
    if ctx.error < base_err and with_swaps < without:
        s.act = swapped
    else:
        ctx = s.point(s.plan_of(s.ctx_weights), "search")
    k = s.opts.wide_activations
    k = max(1, round(0.1 * len(units))) if k is None else k
    if k <= 0 or not wide:
        return
    # Wide candidates that keep the integer quantizer reuse the same session; the others
    # (float, fp16...) build one session per layer (memory the size of the model's), so
    # they are tried only on the two decisions where the integer ones gain most.
    same = sorted(
        (f for f in wide if f is not None and f.family is Family.INT), key=lambda f: -f.bits
    )
    other = [f for f in wide if f is None or f.family is not Family.INT]
    if None in other:
        # float has no error, so a float cast (fp16, bf16) can only tie with it: each is
        # a new session structure per layer, so only float is tried
        other = [None]
    gains: dict[tuple[str, ...], tuple[float, Format | None]] = {}
    # a wide activation loses the layer's integer kernel: none on layers that keep theirs
    # for speed (core/search/latency.py)
    units = [u for u in units if not any(s.locked(n) for n in u)]
    # the widest integer format on every decision, the others on the shortlist it ranks
    thin: dict[tuple[str, ...], bool] = {}  # per unit, read once (the store's tensors)

    def fitting(unit: tuple[str, ...]) -> list[Format]:
        out = []
        for f in same:
            if not all(_fits(by_name[n], f) for n in unit):
                continue
            if f.granularity is Granularity.CHANNEL:
                if unit not in thin:
                    thin[unit] = _thin_channels(s, unit)
                if thin[unit]:
                    continue
            out.append(f)
        return out

    for i in (0, 1):
        # (ties in model order: the seed's draws stay those of the two rankings below)
        todo = units if i == 0 else _ranked(s, units, gains, False)[: WIDE_SHORTLIST * k]
        for unit in todo:
            fmts = fitting(unit)[:1] if i == 0 else fitting(unit)[1:]
            if not fmts:
                continue
            for fmt in fmts:
                err, met = s._measure(_with_act(s, unit, fmt))
                s.sens.append(Sensitivity(unit[0], "activation", fmt.name, err, met, 0))
                _keep_gain(gains, unit, ctx.error, err, fmt)
            yield s._tick(f"sensitivity: {unit[0]} wide activation")
    ranked = _ranked(s, units, gains)
    tops = ranked[:2] if same else units
    for unit in tops:
        for fmt in other:
            err, met = s._measure(_with_act(s, unit, fmt))
            label = FLOAT_NAME if fmt is None else fmt.name
            s.sens.append(Sensitivity(unit[0], "activation", label, err, met, 0))
            _keep_gain(gains, unit, ctx.error, err, fmt)
        yield s._tick(f"sensitivity: {unit[0]} float activation")
    chosen = _within_speed(s, [u for u in _ranked(s, units, gains) if gains[u][0] > 0], gains, k)
    saved = dict(s.act)
    s.narrow = {n: s.act[n] for u in chosen for n in u}
    for unit in chosen:
        for n in unit:
            s.act[n] = gains[unit][1]
    if chosen and s.point(s.plan_of(s.ctx_weights), "search").error > ctx.error:
        s.act, chosen, s.narrow = saved, [], {}  # together they do not help: keep the context
    s.wide = [n for u in chosen for n in u]


def _within_speed(
    s: SearchState,
    ranked: Sequence[tuple[str, ...]],
    gains: Mapping[tuple[str, ...], tuple[float, Any]],
    k: int,
) -> list[tuple[str, ...]]:
    """The first ``k`` of ``ranked`` whose wide activations together keep the plan within
    the latency limit: a Conv keeps its integer kernel only while its output is requantized
    to 8 bits, so a wide input downstream of a locked Conv costs that Conv's kernel."""
    chosen: list[tuple[str, ...]] = []
    for unit in ranked:
        if len(chosen) >= k:
            break
        if s.speed is not None:
            saved = dict(s.act)
            for u in (*chosen, unit):
                for n in u:
                    s.act[n] = gains[u][1]
            fast = s.quick_enough(s.plan_of(s.ctx_weights))
            s.act = saved
            if not fast:
                continue
        chosen.append(unit)
    return chosen


def _keeps_fast_input(layer: Layer, fmt: Format) -> bool:
    """Whether a locked layer keeps its fast integer kernel with input ``fmt``: x86's kernels
    are fast on unsigned inputs (latency.py plan_kernels); an LSTM stays DynamicQuantizeLSTM
    only with the input quantizer that kernel computes (core/lstm_kernel.py)."""
    if layer.op_type == "LSTM":
        return fmt.name == lstm_kernel.KERNEL_ACTIVATION
    return not fmt.signed


def _thin_channels(s: SearchState, unit: Sequence[str]) -> bool:
    """Whether an input of ``unit`` has fewer than MIN_CHANNEL_VALUES calibration values per
    channel (False where the engine cannot tell: the layer keeps its candidates)."""
    try:
        return any(
            s.engine.channel_values(la, a) < MIN_CHANNEL_VALUES
            for la in (s.info.layer(n) for n in unit) for a in la.activations
        )  # fmt: skip
    except BitlensError:
        return False


def _never_better(s: SearchState, unit: Sequence[str], base: Format, fmt: Format) -> bool:
    """An 8-bit swap whose calibrated step is no finer than the base's on every input of
    ``unit``, where both grids cover every calibration value (min-max calibration): the same
    clipping (none) and as much rounding noise or more (step^2 / 12), so no lower expected
    error on any data. A symmetric swap for an asymmetric base is such a swap: its step is
    2 max(|lo|, |hi|) / (hi - lo) times the base's, twice on inputs that are never negative.
    The error it measured lower on the few rows the search fits was that rounding's chance:
    mtcnn-onet's plan took int8 sym on 5 of 8 inputs (0.029 against W8A8's 0.051 on the
    evaluation rows; W8A8's weights with the plan's activations, those swaps and one float
    input: 0.058 against W8A8's 0.052 on 16 images no step had seen).
    Other calibrations clip each grid differently, so there the swap is measured."""
    if s.engine.method is not CalibrationMethod.MINMAX:
        return _after_relu(s, unit, base, fmt)
    layers = [s.info.layer(n) for n in unit]
    try:
        for la in layers:
            for a in la.activations:
                lo, hi = s.engine.activation_range(a, base)
                mine = params_from_range(np.float64(lo), np.float64(hi), fmt)[0]
                theirs = params_from_range(np.float64(lo), np.float64(hi), base)[0]
                if float(mine) < float(theirs):
                    return False
    except (BitlensError, TypeError, ValueError):
        return False
    return True


def _after_relu(s: SearchState, unit: Sequence[str], base: Format, fmt: Format) -> bool:
    """A symmetric 8-bit swap for an asymmetric base on inputs that are never negative: the
    same range in half the steps, so more noise, never less (the calibrated base range
    starts at 0 exactly when the tensor has no negative value)."""
    if fmt.symmetric == base.symmetric or base.symmetric:
        return False
    layers = [s.info.layer(n) for n in unit]
    try:
        return all(
            float(s.engine.activation_range(a, base)[0]) >= 0
            for la in layers for a in la.activations
        )  # fmt: skip
    except (BitlensError, TypeError, ValueError):
        return False


def _with_act(
    s: SearchState,
    unit: Sequence[str],
    fmt: Format | None,
    weights: Mapping[str, Format | None] | None = None,
) -> Plan:
    saved = dict(s.act)
    for name in unit:
        s.act[name] = fmt
    try:
        return s.plan_of(s.ctx_weights if weights is None else weights)
    finally:
        s.act = saved


def _keep_gain(gains, name: tuple[str, ...], ctx_err: float, err: float, fmt: Format | None) -> None:
    gain = ctx_err * ctx_err - err * err
    if name not in gains or gain > gains[name][0]:
        gains[name] = (gain, fmt)


def _ranked(
    s: SearchState,
    units: Sequence[tuple[str, ...]],
    gains: Mapping[tuple[str, ...], tuple[float, Any]],
    seeded: bool = True,
) -> list[tuple[str, ...]]:
    tie = {unit: float(s.rng.random()) if seeded else i for i, unit in enumerate(units)}
    known = [unit for unit in units if unit in gains]
    return sorted(known, key=lambda u: (-gains[u][0], tie[u]))
