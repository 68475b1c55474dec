"""The search offers GPTQ only where the calibration has enough rows to fit it.

GPTQ picks every code of a weight to fit its calibration inputs' second moments: from fewer
feature rows than input features it lowers the error on those rows and raises it on others
(vietcombank-captcha's 512-feature digit heads, one row per image, took int4 + GPTQ from 4
calibration images and lost to W8A8 on images not seen). Checked here against float64 numpy
on the layer's own inputs.

    x[N,16] -> MatMul(Wa) -> Relu -> MatMul(Wb: 32 features) -> Relu -> MatMul(Wc) -> y
"""

from __future__ import annotations

import numpy as np

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.formats import parse_format
from bitlens.core.model.loader import from_proto
from bitlens.core.recovery import Recovery
from bitlens.core.results import drain
from bitlens.core.search import recovered, search
from bitlens.core.search.options import Budget, SearchOptions
from bitlens.core.search.recovered import MIN_ROWS_PER_FEATURE, choose
from tests.core.engine_models import mlp_with_fragile_layer


def _engine(calibrate: int) -> Engine:
    model = from_proto(mlp_with_fragile_layer())
    n = calibrate + 3
    data = Dataset.random(model.info, n=n, seed=3, calibration_fraction=calibrate / n)
    engine = Engine(model, data, device="cpu")
    for _ in engine.calibrate("minmax"):
        pass
    return engine


def test_gptq_from_too_few_rows_is_not_offered_and_would_lose_on_new_rows() -> None:
    engine = _engine(calibrate=3)  # 3 rows, 32 features: H of rank 3
    layer = engine.info.layer("mm_b")
    fmt = parse_format("int3 sym ch")
    assert choose(engine, layer, [fmt], (Recovery.GPTQ,)) == {}
    # why: in float64 numpy, GPTQ's weight beats plain rounding on the 3 rows it fit and
    # loses on 4000 others drawn the same way
    m = engine.model
    wa, wb = (np.asarray(m.weight(engine.info.layer(n).weights[0]), np.float64)
              for n in ("mm_a", "mm_b"))  # fmt: skip
    plain = np.asarray(engine.quantized(layer.weights[0], fmt).values, np.float64)
    rec = np.asarray(engine.recovery.result(layer, fmt, Recovery.GPTQ).weight, np.float64)
    seen = np.concatenate([engine.data.samples[i]["x"] for i in engine.data.calibration])
    new = np.random.default_rng(11).standard_normal((4000, 16))

    def err(x: np.ndarray, w: np.ndarray) -> float:
        return float(np.sum((np.maximum(x.astype(np.float64) @ wa, 0.0) @ (w - wb)) ** 2))

    assert err(seen, rec) < 0.5 * err(seen, plain)
    assert err(new, rec) > err(new, plain)


def test_gptq_is_offered_from_enough_rows() -> None:
    engine = _engine(calibrate=MIN_ROWS_PER_FEATURE * 32)
    layer = engine.info.layer("mm_b")
    fmt = parse_format("int3 sym ch")
    got = choose(engine, layer, [fmt], (Recovery.GPTQ,))
    assert got[fmt].method is Recovery.GPTQ and got[fmt].noise_factor < 0.9


def test_a_layer_over_the_feature_limit_reads_no_input_statistics(monkeypatch) -> None:
    """Past MAX_FEATURES input features no method is offered, and the layer's input
    statistics (a features x features matrix) are never computed: OpenCV Zoo's SFace ends in
    a Gemm of 50176 features, whose 20 GB matrix got the default search killed for memory
    before the limit was checked."""
    engine = _engine(calibrate=MIN_ROWS_PER_FEATURE * 32)
    layer = engine.info.layer("mm_b")  # 32 input features
    fmt = parse_format("int3 sym ch")

    def read(layer):
        raise AssertionError(f"statistics of {layer.name} computed")

    monkeypatch.setattr(recovered, "MAX_FEATURES", 31)
    monkeypatch.setattr(engine.recovery, "stats", read)
    assert choose(engine, layer, [fmt], (Recovery.GPTQ, Recovery.BIAS)) == {}


def test_the_search_reads_no_statistics_past_the_limit(monkeypatch) -> None:
    """Nor does the rest of the search: its bias-corrected twins of the best plans
    (core/search/deployed.py) exported bias correction on every integer layer, which built
    SFace's 20 GB matrix again (killed at 21.6 GB after the candidates were fixed)."""
    engine = _engine(calibrate=MIN_ROWS_PER_FEATURE * 32)
    monkeypatch.setattr(recovered, "MAX_FEATURES", 31)  # mm_b's 32 features are past it
    real = engine.recovery.stats

    def stats(layer):
        assert layer.name != "mm_b", "statistics of mm_b computed"
        return real(layer)

    monkeypatch.setattr(engine.recovery, "stats", stats)
    result = drain(search(engine, SearchOptions(Budget(size_ratio=0.5))))
    assert result.best.plan["mm_b"].recovery is None
