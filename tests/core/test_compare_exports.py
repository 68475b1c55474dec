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


def test_fp16_weights_read_through_a_cast_are_compared(tmp_path: Path) -> None:
    """MiniLM's export compared in the window: its fp16 layers (an fp16 initializer, a Cast
    to float, the MatMul) were "only in this model", the loader finding no layer there.

    x -> MatMul(W) -> y        against        x -> MatMul(Cast(W16)) -> y
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from bitlens.core.model.loader import load_model

    w = np.random.default_rng(0).standard_normal((8, 6)).astype(np.float32)

    def net(weight: onnx.TensorProto, cast: bool) -> onnx.ModelProto:
        nodes = [helper.make_node("Cast", ["W16"], ["W"], to=TensorProto.FLOAT)] if cast else []
        nodes.append(helper.make_node("MatMul", ["x", "W"], ["y"], name="mm"))
        g = helper.make_graph(
            nodes, "net", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 6])], [weight],
        )  # fmt: skip
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])

    onnx.save(net(numpy_helper.from_array(w, "W"), False), tmp_path / "float.onnx")
    onnx.save(net(numpy_helper.from_array(w.astype(np.float16), "W16"), True), tmp_path / "h.onnx")
    c = drain(compare_with_file(tmp_path / "h.onnx", load_model(tmp_path / "float.onnx")))
    assert not c.only_a and not c.only_b
    (layer,) = c.layers
    expected = tensor_error_f64(w, w.astype(np.float16).astype(np.float32))
    assert layer.name == "mm" and abs(layer.diff.sqnr_db - expected.sqnr_db) < 1e-6
