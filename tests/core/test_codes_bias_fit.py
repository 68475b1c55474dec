"""The Codes tab shows what the export writes for a channel whose int32 bias made it raise the
weight scale (core/engine/bias_fit.py): the raised scale and the codes requantized at it.

Before, :func:`bitlens.core.codes.planned_code_slice` showed plain rounding: conv0's dead
channel (weights ~1e-35, bias 4) at a scale of 7.8e-38 with codes of -128 and 127, where the
exported file stores a scale of 6.8e-8 and codes of 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.codes import layer_code_slice, planned_code_slice
from bitlens.core.engine import Engine
from bitlens.core.export.exporter import export
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.core.export_models import random_feeds
from tests.core.test_bias_fit_weight_scale import DEAD, _dead_channel_chain


def _stored(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """conv0's weight codes and per-channel scale as the exported file holds them."""
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}
    (codes,) = [v for k, v in inits.items() if k.startswith("w0") and v.dtype == np.int8]
    (scale,) = [v for k, v in inits.items() if k.startswith("w0") and k.endswith("_scale")]
    assert codes.shape == shape and scale.shape == (shape[0],)
    return codes, scale


def test_codes_of_a_bias_fitted_channel_are_the_exported_ones(tmp_path: Path) -> None:
    model = from_proto(_dead_channel_chain())
    engine = Engine(model, random_feeds(model.info, 4), device="cpu")
    plan = Plan.preset(engine.info, "W8A8")
    layer = engine.info.layer("conv0")
    shape = layer.weights[0].shape
    out = tmp_path / "w8a8.onnx"
    drain(export(engine, plan, out))
    codes, scale = _stored(out, shape)
    n = int(np.prod(shape))
    s = planned_code_slice(engine, plan, layer, count=n)
    np.testing.assert_array_equal([r.code for r in s.rows], codes.reshape(-1))
    per_row = np.broadcast_to(scale.reshape(-1, 1, 1, 1), shape).reshape(-1)
    np.testing.assert_array_equal(np.float32([r.scale for r in s.rows]), per_row)
    np.testing.assert_array_equal(
        np.float32([r.dequantized for r in s.rows]),
        (codes.astype(np.float32) * scale.reshape(-1, 1, 1, 1)).reshape(-1),
    )
    assert f"channel(s) {DEAD} raised" in s.formula
    # plain rounding differs on the dead channel only: what the tab showed before
    plain = layer_code_slice(engine.model, layer, plan["conv0"].weight, count=n)
    per = n // shape[0]
    diff = {i // per for i, (a, b) in enumerate(zip(plain.rows, s.rows, strict=True))
            if a.code != b.code or a.scale != b.scale}  # fmt: skip
    assert diff == {DEAD}
    # the same layer kept off its integer kernel (a float input): no bias on the int32
    # grid, so plain rounding, as the export writes it
    off = plan.with_choices({"conv0": LayerChoice(plan["conv0"].weight, None)})
    again = planned_code_slice(engine, off, layer, count=n)
    assert [r.code for r in again.rows] == [r.code for r in plain.rows]
    assert "raised" not in again.formula
    engine.close()
