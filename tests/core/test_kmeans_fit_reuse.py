"""k-means weights are fitted once per engine, weight and format.

The engine's weight cache keeps a plan's codes and values and drops the rest (its bound is
a plan's weights, core/engine/weightfeeds.py); a search that comes back to a k-means format
on a layer fitted the codebooks again (346 fits for 192 weight/format pairs on nudenet's
YOLOv8n). The engine now keeps the codebooks alone and recomputes the codes from them, with
the same numbers as the fit.
"""

from __future__ import annotations

import numpy as np
import pytest

from bitlens.core.engine import Engine
from bitlens.core.formats import codec, fitted, lut_rows, parse_format
from bitlens.core.model.loader import from_proto
from tests import builders
from tests.core.export_models import random_feeds


def _same(a: codec.QTensor, b: codec.QTensor) -> None:
    assert a.fmt == b.fmt
    assert a.codes.dtype == b.codes.dtype
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.codebook.shape == b.codebook.shape and a.codebook.dtype == b.codebook.dtype
    np.testing.assert_array_equal(a.codebook.view(np.uint32), b.codebook.view(np.uint32))


@pytest.mark.parametrize("name", ["km4 ch0", "km3 ch1", "km2 ch0", "km4", "km8"])
def test_codes_from_kept_codebooks_equal_the_fit(name: str) -> None:
    """Per channel and per tensor, with rows that are no float32 values (the one-row path)
    and ties (empty clusters): the same codes and codebooks, bit for bit."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((24, 40)) * rng.uniform(0.01, 5, (24, 1))).astype(np.float64)
    x[2] = x[2].astype(np.float32)  # a float32-exact row among float64 ones
    x[5] = np.round(x[5])  # few distinct values
    for values in (x, x.astype(np.float32)):
        q = codec.quantize(values, name)
        fit = fitted(q)
        assert fit is not None
        _same(codec.quantize(values, name, fit=fit), q)


def test_uniform_formats_keep_nothing() -> None:
    assert fitted(codec.quantize(np.linspace(-1, 1, 64, dtype=np.float32), "int4 sym")) is None


def test_engine_fits_each_kmeans_weight_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantized again after the weight cache dropped it (a sweep's uncached use, the
    search's memory bound), a k-means weight is the same without a second fit. On the old
    code every call fitted again."""
    model = from_proto(builders.conv_net())
    engine = Engine(model, random_feeds(model.info, 2), device="cpu")
    fits = []
    real = lut_rows.kmeans_rows

    def counting(groups, k):
        fits.append(k)
        return real(groups, k)

    monkeypatch.setattr(lut_rows, "kmeans_rows", counting)
    w = engine.info.layers[0].weights[0]
    first = {f: engine.quantized(w, parse_format(f), keep=False) for f in ("km4 ch", "km2")}
    assert len(fits) == 2
    again = {f: engine.quantized(w, parse_format(f), keep=False) for f in first}
    engine.drop_sessions()
    kept = {f: engine.quantized(w, parse_format(f)) for f in first}
    assert len(fits) == 2
    for f, q in first.items():
        for other in (again[f], kept[f]):
            _same(other.q, q.q)
            np.testing.assert_array_equal(other.values, q.values)
