"""The search's sizes when the opset an int4 layer needs makes the whole file smaller.

Raising the model to opset 21 (ONNX INT4) runs ONNX's version converter, which drops
duplicated ``value_info``: isbnx's YOLO26n (PyTorch 2.12) lists its 510 tensors 2595 times,
and any one int4 layer made its file 562 kB smaller. The search measured that as each int4
kernel layer's own cost, so every such layer counted -562 kB: its W4A8 reference read
-52.5 MiB and the plan it returned -41.6 MiB, for a 2.3 MiB file. Here small_cnn lists its
four activations 200 times each (24.6 kB the conversion drops).
"""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

from bitlens.core.engine import Engine
from tests.core.engine_models import small_cnn
from tests.core.test_search import _engine
from tests.core.test_search_int4_kernel_size import _check


@pytest.fixture(scope="module")
def cnn() -> Engine:
    m = small_cnn()
    for _ in range(200):
        for name, ch in (("c1", 8), ("r1", 8), ("c2", 16), ("r2", 16)):
            m.graph.value_info.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", ch, 8, 8])
            )
    return _engine(m)


def test_a_shrinking_opset_conversion_is_paid_once(cnn: Engine) -> None:
    _check(cnn, 21, {"int4 sym ch": 4})
