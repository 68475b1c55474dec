"""Compare With Model (and ``eval --compare-model``) against an export.

An export keeps each weight as codes decoded by ``DequantizeLinear`` or by its packed-code
unpacking functions, so the loader found no float layer to match and the comparison listed
every layer as "only in the model". The other model is now compared by its dequantized
weights: every layer matches, and the difference is exactly the plan's rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bitlens.core.compare import compare_with_file
from bitlens.core.data import Dataset
from bitlens.core.engine import Engine, bind
from bitlens.core.export.exporter import export
from bitlens.core.formats.codec import fake_quantize
from bitlens.core.metrics import tensor_error_f64
from bitlens.core.model.loader import from_proto
from bitlens.core.plan import LayerChoice, Plan
from bitlens.core.results import drain
from tests.core.engine_models import small_cnn


def test_an_export_compares_layer_by_layer_by_its_dequantized_weights(tmp_path: Path) -> None:
    model = from_proto(small_cnn(), tmp_path / "float.onnx")
    engine = Engine(model, Dataset.random(model.info, n=4))
    names = model.info.layer_names
    formats = ("int8 sym ch", "int4 sym ch", "int5 asym ch")  # int8 codes and packed codes
    plan = Plan(model.info).with_choices(
        {n: LayerChoice.of(f, "uint8 asym") for n, f in zip(names, formats, strict=False)}
    )
    out = tmp_path / "export.onnx"
    drain(export(engine, plan, out))
    comparison = drain(compare_with_file(out, model))
    assert not comparison.only_a and not comparison.only_b
    assert [d.name for d in comparison.layers] == list(names)
    assert any("decoded to float" in n for n in comparison.notes_b)
    for d in comparison.layers:
        w = model.info.layer(d.name).weights[0]
        ref = model.weight(w)
        # independent of the export: the float weight against its fake-quantized copy
        q = fake_quantize(ref, bind(plan[d.name].weight, w), what=w.name)
        want = tensor_error_f64(np.ravel(ref).astype(np.float64), np.ravel(q).astype(np.float64))
        assert d.diff is not None and abs(d.diff.sqnr_db - want.sqnr_db) < 1e-6, d.name
