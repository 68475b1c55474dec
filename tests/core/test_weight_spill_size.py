"""Which float weights leave the process's memory at load (core/model/rawspill.py and
core/engine/weightspill.py): every weight of 64 KiB or more, as a deep stack of 256 KiB
MatMul weights has (a 1 MiB threshold kept two copies of those in memory, the parsed
protobuf's and the decoded one: 2x the model of a 200-layer stack), the small ones (biases)
decoded; the numbers are those of the decoded weights."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from bitlens.core.data import Dataset
from bitlens.core.engine import Engine
from bitlens.core.model.external import is_external, release_pages
from bitlens.core.model.loader import from_proto, load_model
from bitlens.core.plan import LayerChoice, Plan
from tests.core.test_engine_scale import deep_mlp


def test_weights_of_64_kib_and_more_are_mapped_at_load_and_change_no_number(tmp_path) -> None:
    proto = deep_mlp(depth=3, width=144)  # each W 144 x 144 float32: 81 KiB; each b 576 B
    path = tmp_path / "stack.onnx"
    onnx.save(proto, path)
    loaded = load_model(path)
    big = {"W0", "W1", "W2"}
    mapped = {name for (_, name), v in loaded._cache.items() if isinstance(v, np.memmap)}
    assert mapped == big
    # the parsed model keeps a reference to the file, not a second copy of the bytes
    inits = {t.name: t for t in loaded.graph_proto.graph.initializer}
    assert {n for n, t in inits.items() if is_external(t)} == big
    for t in proto.graph.initializer:
        value = loaded.weight(t.name)
        np.testing.assert_array_equal(value, numpy_helper.to_array(t))
        assert release_pages(value) == (t.name in big)

    decoded = from_proto(proto)
    data = Dataset.random(loaded.info, n=4, seed=2, dims={"N": 3})
    plans = [
        Plan.preset(info, "W8A8").with_choices({"mm1": LayerChoice.of("int4 sym ch")})
        for info in (loaded.info, decoded.info)
    ]
    mapped_engine = Engine(loaded, data, device="cpu")
    plain = Engine(decoded, data, device="cpu")
    plain.map_float_weights = False  # the straightforward way: decoded arrays fed
    assert mapped_engine.evaluate(plans[0]) == plain.evaluate(plans[1])
    assert list(mapped_engine.sweep(["int4 sym ch"], ["mm0", "mm2"])) == list(
        plain.sweep(["int4 sym ch"], ["mm0", "mm2"])
    )
