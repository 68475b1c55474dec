"""The calibration rows as a second check of the last choice when few rows are held back.

With fewer than MIN_CHECK_ROWS held-back rows (guard.py) one or two rows decide the last
choice, and a plan can win them by chance. The calibration rows are the other rows no step
of the search ranked plans on (every plan is measured on the fitted evaluation rows), so
with few rows held back a plan must also be no worse than the same-size preset there. They
are not unseen data: the activation ranges come from them (no value is clipped there, for
any plan) and bias correction and GPTQ fit to them, so they can only confirm a plan, never
choose one. vietcombank-captcha (4 calibration, 3 fitted and 1 held-back image) returned a
plan of 9 int7 weights and an int16 input: 0.028 against W8A8's 0.091 on the held-back
image, 0.075 against 0.056 on the 4 calibration images, and 0.1425 against 0.1263 on 16
images the search never saw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bitlens.core.feed_arrays import batch_of
from bitlens.core.plan import Plan
from bitlens.core.search.deployed import Part, Scored
from bitlens.core.search.guard import labels_of
from bitlens.core.search.options import FLOAT_NAME
from bitlens.core.usermetric import concat_outputs

if TYPE_CHECKING:
    from bitlens.core.search.state import SearchState

# Calibration rows read at most (whole feeds, in order): enough to confirm, few runs more.
CALIB_ROWS = 16


def calibration_part(s: SearchState) -> Part | None:
    """The first calibration feeds, up to CALIB_ROWS rows, with the float model's outputs on
    them (as measured for the search: before a pick) and their label rows."""
    data = s.engine.data
    feeds: list[int] = []
    rows = 0
    for i in data.calibration:
        if rows >= CALIB_ROWS:
            break
        feeds.append(i)
        rows += batch_of(data.samples[i])
    if not feeds:
        return None
    ref = concat_outputs(s._outputs(Plan(s.info), feeds))
    return Part(tuple(feeds), ref, labels_of(data, feeds))


def no_worse_than_preset(
    cands: Sequence[tuple[int, Scored | None, bool]], top: float = math.inf
) -> list[bool]:
    """Which of ``cands`` (file bytes, (output error, task metric) on the calibration rows,
    whether a preset) pass: those no worse there than the largest preset scored, by the
    search's ranking (task metric up to ``top``, the float model's, then output error). A
    preset passes, and so does a candidate that could not be scored there; all pass when no
    preset was scored."""
    presets = [(b, sc) for b, sc, is_preset in cands if is_preset and sc is not None]
    if not presets:
        return [True] * len(cands)
    ref = max(presets, key=lambda t: t[0])[1]

    def key(sc: Scored) -> tuple[float, float]:
        err, met = sc
        return (0.0 if met is None else -min(met, top), err)

    return [is_preset or sc is None or key(sc) <= key(ref) for _b, sc, is_preset in cands]


def confirmed(
    s: SearchState, scored: list[tuple], deployed: bool, top: float, never: Plan | None = None
) -> list[tuple]:
    """The last choice's ``scored`` entries (rank key, deciding error, order, Point) that are
    no worse than the largest same-size preset on the calibration rows (as deployed where
    ``deployed``, else simulated); the result says so when that turned down the plan that
    did best on the held-back rows (among those it may return: not ``never``)."""
    part = s.shared.calib
    if not part:
        return scored
    labels = {r.plan: r.label for r in s.references if r.label != FLOAT_NAME}
    points = [t[3] for t in scored]
    scores = [
        s.deployed.calibration(p.plan) if deployed else s.simulated_on(p.plan, part)  # type: ignore[union-attr]
        for p in points
    ]
    keep = no_worse_than_preset(
        [(p.file_bytes, sc, p.plan in labels) for p, sc in zip(points, scores, strict=True)], top
    )
    kept = [t for t, k in zip(scored, keep, strict=True) if k]
    out = [(t, sc) for t, sc, k in zip(scored, scores, keep, strict=True) if not k]
    may = [t for t in kept if t[3].plan != never]
    if out and may and min(t for t, _sc in out) < min(may):
        (_k, err, _i, p), sc = min(out, key=lambda o: o[0])
        ref = max(
            ((q.file_bytes, q, c) for q, c in zip(points, scores, strict=True) if q.plan in labels and c),
            key=lambda t: t[0],
        )  # fmt: skip
        rows = sum(batch_of(s.engine.data.samples[i]) for i in part.feeds)
        s.shared.calib_notes.append(
            f"the plan that did best on the held-back feeds ({p.file_bytes} bytes, error "
            f"{err:.4g} there; {p.summary()}) had error {sc[0]:.4g} on {rows} calibration "
            f"row(s) against the {labels[ref[1].plan]} preset's {ref[2][0]:.4g}: with so few rows "
            "held back a plan must also be no worse than the preset there, the rows no step "
            "of the search ranked plans on, so it is not returned"
        )
        s.notes.append(s.shared.calib_notes[-1])
    return kept
