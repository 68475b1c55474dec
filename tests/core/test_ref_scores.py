"""The reference's class-score figures (arg-max, softmax, log-softmax) are kept by the engine
instead of recomputed at each evaluation (metrics.RefScores): the same top-1 and KL, bit for
bit, as computing them afresh, and as float64 numpy's straight formula."""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core import metrics
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, output_metrics
from bitlens.core.model.loader import from_proto
from tests.builders import lstm_recognizer
from tests.core.engine_models import small_cnn, w8a8_then_each_layer_int4


def _kl_straight(r: np.ndarray, g: np.ndarray, axis: int) -> float:
    """KL(softmax(r) || softmax(g)) averaged over positions, float64, written out."""
    p = np.exp(r - r.max(axis, keepdims=True))
    p /= p.sum(axis, keepdims=True)
    q = np.exp(g - g.max(axis, keepdims=True))
    q /= q.sum(axis, keepdims=True)
    return float(np.mean(np.sum(p * (np.log(p + 1e-12) - np.log(q + 1e-12)), axis)))


@pytest.mark.parametrize("shape,axis", [((16, 10), -1), ((5, 3, 40), 1), ((7, 2, 33), -1)])
def test_kept_reference_scores_give_the_same_top1_and_kl(shape, axis) -> None:
    rng = np.random.default_rng(len(shape) * 7 + axis)
    r = rng.normal(0, 3, shape).astype(np.float32)
    g = (r + rng.normal(0, 0.5, shape)).astype(np.float32)
    kept = metrics.RefScores.of(r, axis)
    assert metrics.mean_kl(r, g, axis, kept) == metrics.mean_kl(r, g, axis)
    assert metrics.top1_agreement(r, g, axis, kept) == metrics.top1_agreement(r, g, axis)
    assert metrics.mean_kl(r, g, axis, kept) == pytest.approx(_kl_straight(
        r.astype(np.float64), g.astype(np.float64), axis), rel=1e-12)  # fmt: skip
    ref, got = [r, r[:2]], [g, g[:2]]
    scores = [kept, metrics.RefScores.of(r[:2], axis)]
    assert metrics.positional_top1_kl(ref, got, axis, scores) == metrics.positional_top1_kl(
        ref, got, axis
    )


def _classifier():
    """small_cnn with its [N, 10] output named as class scores (output_kind's name rule)."""
    proto = small_cnn()
    proto.graph.node[-1].output[0] = proto.graph.output[0].name = "logits"
    return proto


@pytest.mark.parametrize("build,dims", [(lstm_recognizer, {}), (_classifier, {"N": 3})])
def test_the_engine_keeps_them_and_reports_the_same_outputs(build, dims, monkeypatch) -> None:
    loaded = from_proto(build())
    info = loaded.info
    data = Dataset.random(info, n=6, seed=4, dims=dims)
    plans = w8a8_then_each_layer_int4(info)
    kept = Engine(loaded, data, device="cpu")
    kept.overlap = False  # the figures are read on this thread below
    evaluations = [kept.evaluate(p) for p in plans]
    monkeypatch.setattr(output_metrics, "REF_SCORES_BYTES", 0)  # nothing kept: afresh
    fresh = Engine(loaded, data, device="cpu")
    assert [fresh.evaluate(p) for p in plans] == evaluations
    assert kept._scores and not fresh._scores
    assert any(o.kl is not None for o in evaluations[0].outputs.values())
