"""Weight sensitivities and the greedy path: candidates per layer, output noise measured at
anchors and predicted between them, hulls rebuilt as measurements arrive."""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping, Sequence

import numpy as np

from bitlens.core import lstm_kernel
from bitlens.core.errors import BitlensError
from bitlens.core.export.kernels import integer_kernel_candidate
from bitlens.core.formats import Format
from bitlens.core.model.types import Layer
from bitlens.core.plan import LayerChoice, stored_grid, validate_choice
from bitlens.core.results import Progress
from bitlens.core.search import recovered
from bitlens.core.search.candidates import _fits_weight
from bitlens.core.search.hull import _efficient, _greedy, _hull, _Ladder
from bitlens.core.search.points import Point, Sensitivity
from bitlens.core.search.state import SearchState
from bitlens.core.weights import saved_by


class WeightPath(SearchState):
    def _weight_candidates(
        self, layer: Layer, formats: Sequence[Format]
    ) -> list[tuple[int, float, Format]]:
        """Formats this layer can take that save bytes and are not beaten on both bytes and
        weight error by another (the weight error is a cheap numpy figure; a format whose
        recovery method lowers the layer's output error counts that much less error)."""
        if layer.name not in self.recov:
            self.recov[layer.name] = recovered.choose(
                self.engine, layer, formats, self.recovery_methods
            )
        recov = self.recov[layer.name]
        ok: list[tuple[int, float, Format]] = []
        for fmt in formats:
            if layer.name not in self.grid_layers.get(fmt, (layer.name,)):
                continue  # another layer's stored grid (grid_formats)
            try:
                validate_choice(layer, LayerChoice(fmt))
                nbytes = self._lb(layer, fmt)
                if fmt not in self.size.w_overhead or nbytes >= layer.nbytes:
                    continue
                rel = self.engine.weight_error(layer, fmt).rel_l2
            except BitlensError:
                continue
            if fmt in recov:
                rel *= recov[fmt].noise_factor
            if self.locked(layer.name) and not self._keeps_kernel(layer, fmt):
                continue
            ok.append((nbytes, rel * rel, fmt))
        return [
            (b, m, f) for b, m, f in ok
            if not any(b2 <= b and m2 <= m and (b2, m2) != (b, m) for b2, m2, _ in ok)
        ]  # fmt: skip

    def on_grid(self, name: str, fmt: Format) -> Format:
        """``fmt``, or for a signed 8-bit integer format the int8 format on the file's own
        grid where layer ``name``'s weights are stored as int8 codes on it (grid_formats)."""
        grid = stored_grid(self.info, name, fmt, self.opts.target)
        return grid if grid is not None and name in self.grid_layers.get(grid, ()) else fmt

    def _keeps_kernel(self, layer: Layer, fmt: Format | None) -> bool:
        """``fmt`` (with the recovery method the search gives it) keeps ``layer``'s integer
        kernel next to the base activation: the export's rule (an LSTM's: lstm_kernel)."""
        method = self._recovery_of(layer.name, fmt)
        choice = LayerChoice(fmt, self.base_act, recovery=method)
        # an LSTM's kernel is DynamicQuantizeLSTM: int8 symmetric weights, no recovery, its
        # input quantized per run (core/lstm_kernel.py), as plan_for marks it
        return integer_kernel_candidate(layer, choice) or lstm_kernel.runs_kernel(
            layer, lstm_kernel.kernel_choice(layer, choice), self.opts.target
        )

    def _float_point(self, layer: Layer) -> list[tuple[int, float, Format | None]]:
        """The float weights as a ladder point: not for a locked layer that has a format
        keeping its integer kernel (float weights would lose it)."""
        if self.locked(layer.name) and self.cands.get(layer.name):
            return []
        return [(layer.nbytes, 0.0, None)]

    def _measure_weight(self, layer: Layer, fmt: Format) -> None:
        if (layer.name, fmt) in self.measured:
            return
        method = self._recovery_of(layer.name, fmt)
        err, met = self._measure(self.plan_for({layer.name: LayerChoice(fmt, recovery=method)}))
        self.measured[(layer.name, fmt)] = (err * err, met)
        saved = saved_by(self.info, layer.name, fmt)  # its group's weights, each once
        rec = None if method is None else method.value
        self.sens.append(Sensitivity(layer.name, "weight", fmt.name, err, met, saved, rec))

    def _predict(self, name: str, rel_w: float, fmt: Format) -> float:
        """Output noise power of one layer's weights in ``fmt``: measured, or the measured
        output/weight noise ratio of the nearest measured formats times this weight noise
        (interpolated in log space; to first order output noise grows with weight noise)."""
        hit = self.measured.get((name, fmt))
        if hit is not None:
            return hit[0]
        measured = [
            (w, f) for _b, w, f in self.cands[name]
            if (name, f) in self.measured and w > 0 and self.measured[(name, f)][0] > 0
        ]  # fmt: skip
        # a recovered format's noise counts the layer-local gain of its method, which the
        # whole model need not show as much: plain formats are predicted from plain ones
        recov = self.recov.get(name, {})
        alike = [(w, f) for w, f in measured if (f in recov) == (fmt in recov)]
        known = sorted(
            (math.log(w), math.log(self.measured[(name, f)][0] / w)) for w, f in alike or measured
        )
        if not known or rel_w <= 0:
            return 0.0
        x = math.log(rel_w)
        xs = [k[0] for k in known]
        ys = [k[1] for k in known]
        return rel_w * math.exp(float(np.interp(x, xs, ys)))

    def _rebuild(self) -> None:
        """Hulls and the greedy path from what is measured and predicted now."""
        ladders = []
        for layer in self.wlayers:
            pts = self._float_point(layer)
            for nbytes, rel_w, fmt in self.cands[layer.name]:
                pts.append((nbytes, self._predict(layer.name, rel_w, fmt), fmt))
            ladders.append(_Ladder(layer, _hull(pts)))
        self.ladders = {lad.layer.name: lad for lad in ladders}
        self.moves = _greedy(ladders)

    def _measure_around(self, k: int) -> Generator[Progress, None, None]:
        """Measure the predicted formats each layer takes near step ``k`` of the path: where
        a step to or from them costs noise per byte within ``MARGIN`` times the path's at
        ``k`` (marginal analysis: a step far cheaper is taken, a step far dearer is not,
        whatever a prediction off by that much says)."""
        weights = self._weights_at(k)
        critical = self._slope_at(k)
        todo = []
        for name, lad in self.ladders.items():
            i = next(i for i, p in enumerate(lad.points) if p[2] == weights[name])
            for j in (i - 1, i, i + 1):
                if 0 <= j < len(lad.points) and lad.points[j][2] is not None:
                    fmt = lad.points[j][2]
                    if (name, fmt) not in self.measured and _near(lad.points, j, critical):
                        todo.append((name, fmt))
        self.total += len(todo)
        for name, fmt in todo:
            self._measure_weight(self.info.layer(name), fmt)
            yield self._tick(f"sensitivity: {name} weights {fmt.name}")
        self._rebuild()

    def _slope_at(self, k: int) -> float | None:
        """Noise per byte of the path's step ``k`` (the last one taken before it at the
        end; None on an empty path)."""
        if not self.moves:
            return None
        k = min(max(k, 1), len(self.moves)) - 1
        name = self.moves[k]
        i = sum(1 for n in self.moves[:k] if n == name)
        return _slope(self.ladders[name].points, i)

    def _weights_at(self, k: int) -> dict[str, Format | None]:
        """Each layer's weight format after the first ``k`` greedy moves (0 = all float)."""
        idx = {name: 0 for name in self.ladders}
        for name in self.moves[:k]:
            idx[name] += 1
        return {name: self.ladders[name].points[i][2] for name, i in idx.items()}

    def _first_within(self, limit: int) -> int | None:
        """The first step of the path whose plan the accounting fits in ``limit`` (bytes
        fall along the path: every step is one to fewer bytes, so bisect)."""
        lo, hi = 0, len(self.moves)
        if self._bytes_of(self._weights_at(hi)) > limit:
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if self._bytes_of(self._weights_at(mid)) <= limit:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def _uniform(self, fmt: Format) -> dict[str, Format | None]:
        """Every searched layer at ``fmt``, or where it cannot take it, at its nearest
        candidate no larger (else float; a locked layer: its smallest format that keeps the
        integer kernel)."""
        out: dict[str, Format | None] = {}
        wanted = fmt
        for name, lad in self.ladders.items():
            fmt = self.on_grid(name, wanted)
            allowed = not self.locked(name) or any(f == fmt for _b, _w, f in self.cands[name])
            allowed = allowed and name in self.grid_layers.get(fmt, (name,))
            if allowed and _fits_weight(lad.layer, fmt) and self._lb(lad.layer, fmt) < lad.layer.nbytes:
                out[name] = fmt
                continue
            target = self._lb(lad.layer, fmt) if _fits_weight(lad.layer, fmt) else 0
            below = [(b, f) for b, _w, f in self.cands[name] if b <= target]
            if not below and not self._float_point(lad.layer):
                below = [min((b, f) for b, _w, f in self.cands[name])]  # a locked layer
            out[name] = max(below, key=lambda x: x[0])[1] if below else None
        return out

    def shaved_uniform(
        self, limit: int
    ) -> Generator[Point, None, list[tuple[Point, dict[str, Format | None]]]]:
        """Per activation context, the smallest uniform plan over ``limit`` brought within
        it (``_shaved``), evaluated: starts for the local search. On arabic-name-romanizer's
        decoder, 8-bit weights with the wide activation were 282 bytes over W8A8's size;
        with one layer a step down they had 0.0052 error on 64 new rows where the path's
        plan had 0.0062 and W8A8 0.0162 (benchmarks/search_real.py)."""
        kept = self.act
        contexts: dict[str, list[tuple[Point, dict[str, Format | None]]]] = {}
        for p, acts in self.uniform:
            if p.file_bytes > limit:
                contexts.setdefault(repr(sorted(acts.items())), []).append((p, acts))
        out = []
        for over in contexts.values():
            p, acts = min(over, key=lambda u: u[0].file_bytes)
            self.act = acts
            weights = self._shaved({n: p.plan[n].weight for n in self.ladders}, limit)
            if weights is not None:
                q = self.point(self.plan_of(weights))
                yield q
                out.append((q, acts))
        self.act = kept
        return out

    def _shaved(
        self, weights: Mapping[str, Format | None], limit: int
    ) -> dict[str, Format | None] | None:
        """``weights`` brought within ``limit`` bytes by at most SHAVE_STEPS steps down
        (None: more are needed, or no step is left): while one step suffices, the one that
        adds the least predicted noise; before that, the cheapest per byte saved. A uniform
        plan a little over the budget (its 8-bit weights with the wide activations) is a
        start the path may not pass near: the path trades bytes between layers by predicted
        noise, which misses what the activations chosen afterwards do to the whole plan."""
        w = dict(weights)
        for taken in range(SHAVE_STEPS + 1):
            over = self._bytes_of(w) - limit
            if over <= 0:
                return w
            if taken == SHAVE_STEPS:
                break
            steps = []
            for name in self.ladders:
                fmt = self._neighbor(w, name, up=False)
                if fmt is False:
                    continue
                layer = self.ladders[name].layer
                saved = self._lb(layer, w[name]) - self._lb(layer, fmt)  # type: ignore[arg-type]
                noise = self._noise(name, fmt) - self._noise(name, w[name])  # type: ignore[arg-type]
                steps.append((saved >= over, noise, saved, name, fmt))
            if not steps:
                return None
            enough = [s for s in steps if s[0]]
            if enough:
                _, _, _, name, fmt = min(enough, key=lambda s: (s[1], -s[2], s[3]))
            else:
                _, _, _, name, fmt = min(steps, key=lambda s: (s[1] / max(1, s[2]), s[3]))
            w[name] = fmt  # type: ignore[assignment]
        return None

    def _noise(self, name: str, fmt: Format | None) -> float:
        if fmt is None:
            return 0.0
        rel = next((w for _b, w, f in self.cands[name] if f == fmt), None)
        return 0.0 if rel is None else self._predict(name, rel, fmt)

    def _neighbor(
        self, weights: Mapping[str, Format | None], name: str, up: bool
    ) -> Format | bool | None:
        """The next efficient format with more (up) or fewer bytes; False when none."""
        layer = self.ladders[name].layer
        cur = self._lb(layer, weights[name])
        # bytes in the current context (the integer-kernel cost depends on the activation
        # now chosen), so the current format is never its own neighbour
        pts = self._float_point(layer) + [
            (self._lb(layer, f), self._noise(name, f), f) for _b, _w, f in self.cands[name]
        ]
        eff = [p for p in _efficient(pts) if p[2] != weights[name]]
        if up:
            above = [p for p in eff if p[0] > cur]
            return min(above, key=lambda p: p[0])[2] if above else False
        below = [p for p in eff if p[0] < cur]
        return max(below, key=lambda p: p[0])[2] if below else False


# Steps down a uniform plan over a size budget may take to become a start of the local
# search: "a little over" (one or two layers), where the path's mixes do not pass; each
# shaved plan is one evaluation more.
SHAVE_STEPS = 2
# A step whose predicted noise per byte is within this factor of the path's at the budget
# is measured; one further off stays on its side of the budget unless its prediction (the
# output/weight noise ratio carried over from the measured anchors) is off by more.
MARGIN = 8.0


def _slope(points: Sequence[tuple[int, float, Format | None]], i: int) -> float:
    """Noise per byte saved of the ladder's step from point ``i`` to ``i + 1``."""
    (b0, n0, _), (b1, n1, _) = points[i], points[i + 1]
    return (n1 - n0) / max(1, b0 - b1)


def _near(points: Sequence[tuple[int, float, Format | None]], j: int, critical: float | None) -> bool:
    """Whether a step into or out of point ``j`` costs within ``MARGIN`` of ``critical``
    (a ladder of one point, whose format the prediction put at no noise, has no step and is
    measured)."""
    steps = [_slope(points, i) for i in (j - 1, j) if 0 <= i < len(points) - 1]
    if critical is None or critical <= 0 or not steps:
        return True
    return any(critical / MARGIN <= s <= critical * MARGIN for s in steps)
