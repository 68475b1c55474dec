"""Activation choices: the base format everywhere, free 8-bit swaps, a few wide exceptions
where the measured gain is largest."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

from bitlens.core.formats import Family, Format, Granularity, parse_format
from bitlens.core.model.types import Layer
from bitlens.core.plan import Plan
from bitlens.core.results import Progress
from bitlens.core.search.candidates import _fits, _wider
from bitlens.core.search.options import FLOAT_NAME
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.search.state import SearchState


def choose_activations(
    s: SearchState, base: Format, formats: Sequence[Format | None], layers: Sequence[Layer]
) -> Generator[Progress | Point, None, None]:
    """Each layer's input activation in ``s.act``: the base, an 8-bit swap where it alone
    lowers the error, and at most ``wide_activations`` wider ones where they gain most
    (``s.wide``, with their narrow choice in ``s.narrow``)."""
    if not layers:
        return
    free = [
        f for f in formats
        if f is not None and f != base and f.family is Family.INT
        and f.granularity is Granularity.TENSOR and f.bits == base.bits
        and base.family is Family.INT
    ]  # fmt: skip
    wide = [f for f in formats if f is None or _wider(f, base)]
    # narrower activations save no file bytes and only add error: never chosen
    for layer in layers:
        s.act[layer.name] = base
    base_err = s.point(s.plan_of(s.ctx_weights), "search").error
    yield s._tick("activations at the base format")
    for layer in layers:
        best, best_err = base, base_err
        for fmt in free:
            if not _fits(layer, fmt):
                continue
            err, met = s._measure(_with_act(s, layer.name, fmt))
            s.sens.append(Sensitivity(layer.name, "activation", fmt.name, err, met, 0))
            if err < best_err:
                best, best_err = fmt, err
        s.act[layer.name] = best
        yield s._tick(f"sensitivity: {layer.name} activation 8-bit")
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
    k = max(1, round(0.1 * len(layers))) if k is None else k
    if k <= 0 or not wide:
        return
    # Wide candidates that keep the integer quantizer reuse the same session; the others
    # (float, fp16...) build one session per layer (memory the size of the model's), so
    # they are tried only on the two layers where the integer ones gain most.
    same = [f for f in wide if f is not None and f.family is Family.INT]
    other = [f for f in wide if f not in same]
    if None in other:
        # float has no error, so a float cast (fp16, bf16) can only tie with it: each is
        # a new session structure per layer, so only float is tried
        other = [None]
    gains: dict[str, tuple[float, Format | None]] = {}
    for layer in layers:
        for fmt in same:
            if not _fits(layer, fmt):
                continue
            err, met = s._measure(_with_act(s, layer.name, fmt))
            s.sens.append(Sensitivity(layer.name, "activation", fmt.name, err, met, 0))
            _keep_gain(gains, layer.name, ctx.error, err, fmt)
        yield s._tick(f"sensitivity: {layer.name} wide activation")
    ranked = _ranked(s, layers, gains)
    tops = ranked[:2] if same else ranked
    for name in tops:
        for fmt in other:
            err, met = s._measure(_with_act(s, name, fmt))
            label = FLOAT_NAME if fmt is None else fmt.name
            s.sens.append(Sensitivity(name, "activation", label, err, met, 0))
            _keep_gain(gains, name, ctx.error, err, fmt)
        yield s._tick(f"sensitivity: {name} float activation")
    chosen = [n for n in _ranked(s, layers, gains) if gains[n][0] > 0][:k]
    saved = dict(s.act)
    s.narrow = {name: s.act[name] for name in chosen}
    for name in chosen:
        s.act[name] = gains[name][1]
    if chosen and s.point(s.plan_of(s.ctx_weights), "search").error > ctx.error:
        s.act, chosen = saved, []  # together they do not help: keep the context
    s.wide = chosen


def _with_act(
    s: SearchState,
    name: str,
    fmt: Format | None,
    weights: Mapping[str, Format | None] | None = None,
) -> Plan:
    saved = s.act[name]
    s.act[name] = fmt
    try:
        return s.plan_of(s.ctx_weights if weights is None else weights)
    finally:
        s.act[name] = saved


def _keep_gain(gains, name: str, ctx_err: float, err: float, fmt: Format | None) -> None:
    gain = ctx_err * ctx_err - err * err
    if name not in gains or gain > gains[name][0]:
        gains[name] = (gain, fmt)


def _ranked(
    s: SearchState, layers: Sequence[Layer], gains: Mapping[str, tuple[float, Any]]
) -> list[str]:
    tie = {layer.name: float(s.rng.random()) for layer in layers}
    names = [layer.name for layer in layers if layer.name in gains]
    return sorted(names, key=lambda n: (-gains[n][0], tie[n]))
