"""Whole-plan refinement: probes along the path, the local search near a size budget (with
the check of the real exported size), bisection and shaving under an error or metric budget."""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from dataclasses import replace

from bitlens.core.errors import SearchError
from bitlens.core.formats import Format
from bitlens.core.results import Progress
from bitlens.core.search.deployed import DEPLOYED_CHOICES, deployed_choice
from bitlens.core.search.points import Point
from bitlens.core.search.weightpath import WeightPath

# Uniform plans exported to teach the accounting, per activation context: those nearest the
# budget (each export of a large model takes about as long as a few evaluations).
LEARN_UNIFORM = 3


class Refinement(WeightPath):
    def _probes(self) -> Generator[Progress | Point, None, dict[int, Point]]:
        n = len(self.moves)
        ks = sorted({round(i * n / max(1, self.opts.front_probes - 1))
                     for i in range(self.opts.front_probes)})  # fmt: skip
        out: dict[int, Point] = {}
        for k in ks:
            out[k] = self.point(self.plan_of(self._weights_at(k)))
            yield out[k]
            yield self._tick("front: evaluating plans along the path")
        return out

    def _byte_limit(self) -> int:
        """The size budget in bytes."""
        b = self.opts.budget
        if b.max_bytes is not None:
            return b.max_bytes
        return int(b.size_ratio * (self.size.fixed_bytes + self.size.float_weight_bytes))  # type: ignore[operator]

    def _by_size(self) -> Generator[Progress | Point, None, Point]:
        limit = self._byte_limit()
        try:
            return (yield from self._by_size_at(limit))
        except SearchError as exc:
            # The default budget (none given) stands for "about a uniform 8-bit export's
            # size"; on a small model the quantizers' scales and the graph's own nodes make
            # every plan larger than a quarter of the float file (OpenCV Zoo's YuNet, 232 KB:
            # nothing under 85.7 KB). A default that no plan meets searches at W8A8's size.
            w8a8 = next((r for r in self.references if r.label == "W8A8"), None)
            if not self.opts.budget.default or w8a8 is None:
                raise
            real = self.size.exported(w8a8.plan)  # the file, not the first accounting
            if real is None or real <= limit:
                raise
            self.notes.append(
                f"the default budget ({self.opts.budget.describe()}) fits no plan: {exc}; "
                f"searched at the W8A8 preset's size instead, {real} B "
                "(--size-ratio or --max-bytes sets another budget)"
            )
            return (yield from self._by_size_at(real))

    def _by_size_at(self, limit: int) -> Generator[Progress | Point, None, Point]:
        if self.opts.check_export:
            yield from self._learn_sizes(limit)
            self.size.limit = limit
            self.size.update_near()
            self._reaccount()
        k = self._first_within(limit)
        yield from self._probes()
        if k is not None:
            yield from self._measure_around(k)
            k = self._first_within(limit)
        # Starts: the path's plan at the budget and the uniform plans that fit (on a tiny
        # model the path's smallest plans can be larger than uniform 8-bit, whose
        # integer-kernel groups cost less graph than packed codes); the local search goes
        # on from the best of them for real.
        starts = []
        if k is not None:
            path = self.point(self.plan_of(self._weights_at(k)))
            yield path
            starts.append((path, dict(self.act)))
        starts += [u for u in self.uniform if u[0].file_bytes <= limit]
        starts += yield from self.shaved_uniform(limit)
        fits = [u for u in starts if self._fits(u[0], limit)]
        if not fits:
            if not starts:
                smallest = self._bytes_of(self._weights_at(len(self.moves)))
                raise SearchError(
                    f"no plan fits in {limit} bytes: the smallest the candidates reach is "
                    f"{smallest} bytes (pins and the file's other contents included)"
                    + self._speed_hint()
                    + self._unrun_hint()
                )
            fits = starts
        cur, self.act = min(fits, key=lambda u: u[0].error)
        weights = {name: cur.plan[name].weight for name in self.ladders}
        yield from self._refine_size(weights, cur, limit)
        if not self.opts.check_export:
            return self._best_within(limit)
        # The accounting includes the measured export overheads; check the real file, and
        # go down the ranking (then below the limit) while it does not fit.
        budget = limit
        over = 0
        for _ in range(4):
            overs = []
            fits = []
            for p in self._ranking(limit)[:4]:
                real = self.size.exported(p.plan)
                yield self._tick("checking the exported size")
                if real is None:
                    continue
                if real <= budget:
                    fits.append(replace(p, exported_bytes=real))
                    if len(fits) == DEPLOYED_CHOICES:
                        break
                else:
                    overs.append(real - p.file_bytes)
            if fits:
                return (yield from deployed_choice(self, fits, budget))
            # aim lower by the smallest shortfall of the accounting seen: the plans that
            # differ least from what was measured
            over = min(overs) if overs else 1
            limit -= max(over, 1)
            k = self._first_within(limit)
            if k is None:
                break
            # refine again at the lower limit, from the best plan under it
            fits = self._ranking(limit)
            if fits:
                p = fits[0]
                weights = {name: p.plan[name].weight for name in self.ladders}
                self.act = {name: p.plan[name].activation for name in self.act}
            else:
                weights = self._weights_at(k)
                p = self.point(self.plan_of(weights))
                yield p
            yield from self._refine_size(weights, p, limit)
        raise SearchError(
            f"no plan found whose exported file fits in {budget} bytes (the export adds "
            f"{over} bytes of graph to the last plan tried)" + self._speed_hint()
        )

    def _speed_hint(self) -> str:
        """Why fewer plans were open, where the latency limit locked layers."""
        if self.speed is None or not self.speed.locked:
            return ""
        return (
            f"; the speed limit keeps {len(self.speed.locked)} layer(s) on integer kernels "
            "(--max-latency none lifts it)"
        )

    def _unrun_hint(self) -> str:
        """Why fewer bytes were open, where layers the feeds never ran keep W8A8's choice."""
        if not self.unrun:
            return ""
        return (
            f"; {len(self.unrun)} layer(s) the feeds never ran keep W8A8's weights (feeds that "
            "take every branch let the search size them; --pin LAYER=FORMAT sets one)"
        )

    def _learn_sizes(self, limit: int) -> Generator[Progress, None, None]:
        """Export the uniform plans nearest ``limit`` in memory: each layer's real cost in
        their formats (and integer-kernel groups) corrects the per-format estimate, and the
        candidates and the path are rebuilt on it."""
        contexts: dict[str, list[Point]] = {}
        for p, acts in self.uniform:
            contexts.setdefault(repr(sorted(acts.items())), []).append(p)
        for points in contexts.values():
            for p in sorted(points, key=lambda p: abs(p.file_bytes - limit))[:LEARN_UNIFORM]:
                self.size.exported(p.plan)
                yield self._tick(f"export size of {p.summary()}")
        self.cands = {la.name: self._weight_candidates(la, self.wfmts) for la in self.wlayers}
        self._rebuild()

    def _fits(self, p: Point, limit: int) -> bool:
        return (
            p.file_bytes <= limit
            and p.plan not in self.size.unexportable
            and self.quick_enough(p.plan)
        )

    def _best_within(self, limit: int) -> Point:
        return self._ranking(limit)[0]

    def _ranking(self, limit: int) -> list[Point]:
        """Plans within ``limit``, best first: the task metric (no credit above the float
        model's: that is noise), then the lowest output error."""
        fits = [p for p in self.tried if self._fits(p, limit)]
        if self.metric is None:
            return sorted(fits, key=lambda p: (p.error, p.file_bytes))
        top = self.float_metric if self.float_metric is not None else math.inf
        return sorted(fits, key=lambda p: (-min(p.metric, top), p.error, p.file_bytes))  # type: ignore[type-var]

    def _refine_size(
        self, weights: dict[str, Format | None], cur: Point, limit: int
    ) -> Generator[Progress | Point, None, None]:
        """Swap bytes between layers, measured in the context of the current plan."""
        spent = 0
        budget = self.opts.refine_evaluations
        m = 3
        while spent + 2 * m + 1 <= budget:
            gain: dict[str, tuple[float, int, Format | None]] = {}
            cost: dict[str, tuple[float, int, Format | None]] = {}
            for up in (True, False):
                # the steps are fixed first: an export near the budget teaches the accounting,
                # which can change the neighbours of the layers not tried yet
                for name, fmt in self._candidates(weights, up)[:m]:
                    p = self.point(self.plan_of({**weights, name: fmt}))
                    spent += 1
                    if up:
                        gain[name] = (cur.error**2 - p.error**2, p.file_bytes - cur.file_bytes, fmt)
                    else:
                        cost[name] = (p.error**2 - cur.error**2, cur.file_bytes - p.file_bytes, fmt)
                    yield p
                    yield self._tick(f"refining: {name} one step {'up' if up else 'down'}")
            options: list[tuple[float, dict[str, Format | None]]] = []
            slack = limit - cur.file_bytes
            for u, (g, db, fu) in gain.items():
                if db <= slack and g > 0:
                    options.append((g, {**weights, u: fu}))
                for d, (c, saved, fd) in cost.items():
                    if d != u and db - saved <= slack and g - c > 0:
                        options.append((g - c, {**weights, u: fu, d: fd}))
            options.sort(key=lambda o: -o[0])
            improved = False
            for _, cand in options[:2]:
                p = self.point(self.plan_of(cand))
                spent += 1
                yield p
                yield self._tick("refining: trying a swap")
                if self._fits(p, limit) and p.error < cur.error:
                    weights, cur, improved = cand, p, True
                    break
            if not improved:
                # a single step may itself be a better plan within the budget
                fits = [p for p in self.tried if self._fits(p, limit) and p.error < cur.error]
                if not fits:
                    break
                cur = min(fits, key=lambda p: p.error)
                weights = {name: cur.plan[name].weight for name in self.ladders}

    def _candidates(
        self, weights: Mapping[str, Format | None], up: bool
    ) -> list[tuple[str, Format | None]]:
        """Layers to move one step, with the format of the step: up where the step buys
        back the most predicted noise per byte, down where it costs the least; the seed
        breaks near-ties."""
        scored = []
        for name, lad in self.ladders.items():
            fmt = self._neighbor(weights, name, up)
            if fmt is False:
                continue
            b0 = self._lb(lad.layer, weights[name])
            b1 = self._lb(lad.layer, fmt)  # type: ignore[arg-type]
            n0, n1 = self._noise(name, weights[name]), self._noise(name, fmt)  # type: ignore[arg-type]
            slope = abs(n1 - n0) / max(1, abs(b1 - b0))
            scored.append((-slope if up else slope, float(self.rng.random()), name, fmt))
        scored.sort(key=lambda t: t[:3])
        return [(name, fmt) for _, _, name, fmt in scored]

    def _by_quality(self) -> Generator[Progress | Point, None, Point]:
        b = self.opts.budget

        def ok(p: Point) -> bool:
            if not self.quick_enough(p.plan):
                return False
            if b.max_error is not None:
                return p.error <= b.max_error
            return p.metric is not None and p.metric >= b.min_metric  # type: ignore[operator]

        probed = yield from self._probes()
        start = self.point(self.plan_of(self._weights_at(0)))
        if not ok(start):
            raise SearchError(
                f"even with the widest weights the plan misses the budget ({b.describe()}): error "
                f"{start.error:.4g}"
                + ("" if start.metric is None else f", metric {start.metric:.4g}")
                + "; allow more wide activations or keep activations float"
                + self._speed_hint()
            )
        passed = max(k for k, p in [(0, start), *probed.items()] if ok(p))
        yield from self._measure_around(passed)
        # bisect the rebuilt path for the largest k that passes (the error grows roughly
        # along the path)
        lo, hi = 0, len(self.moves)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            p = self.point(self.plan_of(self._weights_at(mid)))
            yield p
            yield self._tick("bisecting the path for the budget")
            if ok(p):
                lo = mid
            else:
                hi = mid - 1
        weights = self._weights_at(lo)
        cur = self.point(self.plan_of(weights))
        spent = 0
        # then shave more bytes one step at a time where the real error allows it
        while spent < self.opts.refine_evaluations:
            moved = False
            for name, fmt in self._candidates(weights, up=False)[:4]:
                cand = {**weights, name: fmt}
                p = self.point(self.plan_of(cand))  # type: ignore[arg-type]
                spent += 1
                yield p
                yield self._tick(f"refining: {name} one step down")
                if ok(p) and p.file_bytes < cur.file_bytes:
                    weights, cur, moved = cand, p, True  # type: ignore[assignment]
                    break
                if spent >= self.opts.refine_evaluations:
                    break
            if not moved:
                break
        passing = [p for p in self.tried if ok(p)]
        return min(passing, key=lambda p: (p.file_bytes, p.error))
